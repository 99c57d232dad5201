"""Pair data: (unsafe image, safe SDEdit twin) pairs stored as a Hugging Face image folder.

Layout of a pair folder ``D``::

    D/unsafe/000012.png     the unsafe image of pair 12
    D/safe/000012.png       its safe twin
    D/metadata.jsonl        one row per image (``file_name`` + fields), two rows per pair
    D/manifest.json         what made the folder: command, concept spec, model, judge, acceptance rates
    D/preserve/000003.png   optional: an image of what must stay (the concept spec's ``preserve`` prompts)
    D/.pairs/000012.json    the record of each finished pair (hidden: image folder readers skip it)
    D/.pairs/preserve-000003.json   the record of each preserve image

``datasets.load_dataset("imagefolder", data_dir=D)`` yields one example per image with the columns
``pair_id`` and ``role`` (``unsafe`` / ``safe`` / ``preserve``); grouping by ``pair_id`` gives the
pairs. Both rows of a pair carry the pair's prompts, so either row alone says what the pair is.
A row's other settings are those used for its image: the SDEdit ``strength`` and ``negative_prompt``
are set on safe rows only (null on unsafe rows, which txt2img drew without them).
Preserve rows have no ``pair_id`` (null) but a ``preserve_id`` and their ``prompt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from t2i_unlearn.errors import UserError

METADATA = "metadata.jsonl"
RECORDS = ".pairs"
ROLES = ("unsafe", "safe")
# Pair-record fields of folders written before they were named ``safe_*``: settings of the SDEdit (safe) image only.
_SAFE_ONLY = ("negative_prompt", "strength")
PRESERVE = "preserve"
# ``.pairs/failed-NNNNNN.json`` / ``failed-preserve-NNNNNN.json``: an item no draw of which the judge accepted (skipped on resume)
FAILED = "failed"


@dataclass
class PairData:
    """Pairs loaded from a pair folder.

    ``unsafe`` and ``safe`` are ``uint8 [N, H, W, 3]``; row ``i`` of each is pair ``pair_ids[i]``;
    ``unsafe_prompts`` / ``safe_prompts`` are the pairs' prompts; ``data_hash`` is the SHA-256 of
    ``metadata.jsonl`` and every image (what a model card cites). ``preserve`` holds the folder's
    preserve images (``uint8 [M, H, W, 3]``, ``None`` when it has none) and ``preserve_prompts``
    their prompts.
    """

    unsafe: np.ndarray
    safe: np.ndarray
    pair_ids: list[int]
    unsafe_prompts: list[str]
    safe_prompts: list[str]
    data_hash: str
    root: Path
    preserve: np.ndarray | None = None
    preserve_prompts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pair_ids)


def image_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The two ``metadata.jsonl`` rows of one pair record.

    Fields named ``unsafe_x`` / ``safe_x`` become ``x`` in that role's row only (``prompt``, ``seed``,
    ``judge_score``, ``strength`` ...); the pair's two prompts are also kept whole in both rows.
    :func:`write_metadata` gives every row the same columns (null where a row has no value), as an
    image folder's schema requires.
    """
    record = {f"safe_{k}" if k in _SAFE_ONLY else k: v for k, v in record.items()}
    shared = {k: v for k, v in record.items() if not k.startswith(ROLES)}
    rows = []
    for role in ROLES:
        row = {"file_name": f"{role}/{record['pair_id']:06d}.png", "role": role, **shared}
        row.update({k[len(role) + 1 :]: v for k, v in record.items() if k.startswith(role + "_")})
        row["unsafe_prompt"], row["safe_prompt"] = record.get("unsafe_prompt"), record.get("safe_prompt")
        rows.append(row)
    return rows


def preserve_row(record: dict[str, Any]) -> dict[str, Any]:
    """The ``metadata.jsonl`` row of one preserve-image record (``preserve_id``, ``prompt``, ``seed`` ...)."""
    return {"file_name": f"{PRESERVE}/{record['preserve_id']:06d}.png", "role": PRESERVE, **record}


def write_metadata(root: Path) -> Path:
    """Rewrite ``metadata.jsonl`` (atomically) from the finished records under ``root/.pairs``.

    Every row gets the union of all rows' columns (missing ones null), as an image folder's schema requires.
    """
    from t2i_unlearn.utils.io import atomic_write_text

    records = [json.loads(p.read_text()) for p in sorted((root / RECORDS).glob("[0-9]*.json"))]
    rows = [row for rec in records for row in image_rows(rec)]
    rows += [preserve_row(json.loads(p.read_text())) for p in sorted((root / RECORDS).glob(f"{PRESERVE}-[0-9]*.json"))]
    columns = sorted({k for row in rows for k in row})
    lines = [json.dumps({k: row.get(k) for k in columns}, sort_keys=True) for row in rows]
    return atomic_write_text(root / METADATA, "".join(line + "\n" for line in lines))


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UserError(f"image {path} is unreadable ({type(exc).__name__})") from exc


def check_pairs_finished(root: Path) -> None:
    """:class:`UserError` if ``root`` is a ``data pairs`` folder whose run has not finished (no ``manifest.json`` yet).

    ``data pairs`` removes the manifest while it works and writes it last; folders written by other
    tools (no ``.pairs/settings.json``) are taken as they are.
    """
    if (root / RECORDS / "settings.json").is_file() and not (root / "manifest.json").is_file():
        done = len(list((root / RECORDS).glob("[0-9]*.json")))
        raise UserError(
            f"pair data {root} is unfinished ({done} pairs, no manifest.json: its 't2i-unlearn data pairs' run stopped); "
            "run the same 'data pairs' command again to finish it"
        )


def pair_folders(data: str | Path) -> list[Path]:
    """The pair folders in ``data``: ``[data]`` for one pair folder, else its sub-concept pair folders.

    Checks, without reading an image, that each exists, is a folder and is finished; raises
    :class:`UserError` (one line) otherwise. Cheap: the CLI calls it before loading a model.
    """
    root = Path(data).expanduser()
    if root.is_file():
        raise UserError(f"pair data {root} is a file, not a folder; pass the folder 't2i-unlearn data pairs' wrote")
    if not root.is_dir():
        raise UserError(f"pair data folder {root} does not exist")
    if (root / METADATA).exists() or (root / RECORDS).exists():
        folders = [root]
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and ((p / METADATA).exists() or (p / RECORDS).exists()))
        if not folders:
            raise UserError(f"{root} has no {METADATA}; make pair data with 't2i-unlearn data pairs'")
    for folder in folders:
        check_pairs_finished(folder)
    return folders


def load_pairs(root: str | Path) -> PairData:
    """Read a pair folder; :class:`UserError` (one line) for a missing metadata file, a pair missing an image,
    unreadable images, or images of different sizes (within a pair or across pairs)."""
    from t2i_unlearn.utils.io import sha256_file

    root = Path(root).expanduser()
    meta = root / METADATA
    if root.is_file():
        raise UserError(f"pair data {root} is a file, not a folder; pass the folder 't2i-unlearn data pairs' wrote")
    if not root.is_dir():
        raise UserError(f"pair data folder {root} does not exist")
    check_pairs_finished(root)
    if not meta.is_file():
        raise UserError(f"{root} has no {METADATA}; make pair data with 't2i-unlearn data pairs'")
    pairs: dict[int, dict[str, dict[str, Any]]] = {}
    preserve_rows: list[dict[str, Any]] = []
    for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if row.get("role") == PRESERVE and "file_name" in row:
                preserve_rows.append(row)
                continue
            pid, role, _ = int(row["pair_id"]), row["role"], row["file_name"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{meta} line {n}: not a pair row (needs file_name, pair_id, role)") from exc
        if role not in ROLES:
            raise UserError(f"{meta} line {n}: role must be unsafe, safe or preserve, got {role!r}")
        pairs.setdefault(pid, {})[role] = row
    if not pairs:
        raise UserError(f"{meta} lists no pairs")
    ids = sorted(pairs)
    unsafe, safe, up, sp = [], [], [], []
    digest = [sha256_file(meta)]
    size: tuple[int, ...] | None = None
    for pid in ids:
        missing = [r for r in ROLES if r not in pairs[pid]]
        if missing:
            raise UserError(f"pair {pid} in {meta} has no {missing[0]} image")
        images = {}
        for role in ROLES:
            path = root / pairs[pid][role]["file_name"]
            if not path.is_file():
                raise UserError(f"pair {pid}: image {path} does not exist")
            images[role] = _read_image(path)
            digest.append(sha256_file(path))
        if images["unsafe"].shape != images["safe"].shape:
            raise UserError(f"pair {pid}: unsafe and safe images differ in size ({images['unsafe'].shape[:2]} vs {images['safe'].shape[:2]})")
        if size is None:
            size = images["unsafe"].shape
        elif images["unsafe"].shape != size:
            raise UserError(f"pair {pid}: images are {images['unsafe'].shape[:2]} but earlier pairs are {size[:2]}; all pairs must share one size")
        unsafe.append(images["unsafe"])
        safe.append(images["safe"])
        row = pairs[pid]["unsafe"]
        up.append(row.get("unsafe_prompt") or row.get("prompt") or "")
        sp.append(pairs[pid]["safe"].get("safe_prompt") or pairs[pid]["safe"].get("prompt") or "")
    keep, keep_prompts = [], []
    for row in preserve_rows:
        path = root / row["file_name"]
        if not path.is_file():
            raise UserError(f"preserve image {path} does not exist")
        image = _read_image(path)
        if image.shape != size:
            raise UserError(f"preserve image {path} is {image.shape[:2]} but the pairs are {size[:2]}; all images must share one size")
        keep.append(image)
        keep_prompts.append(row.get("prompt") or "")
        digest.append(sha256_file(path))
    import hashlib

    data_hash = hashlib.sha256("".join(digest).encode()).hexdigest()
    return PairData(np.stack(unsafe), np.stack(safe), ids, up, sp, data_hash, root, np.stack(keep) if keep else None, keep_prompts)


def write_pair_folder(root: str | Path, unsafe: np.ndarray, safe: np.ndarray, unsafe_prompts: list[str], safe_prompts: list[str], **fields: Any) -> Path:
    """Write ready-made image pairs as a pair folder (for data made elsewhere, and for tests).

    ``unsafe`` / ``safe`` are ``uint8 [N, H, W, 3]``; ``fields`` are extra columns stored in every row.
    """
    from t2i_unlearn.utils.io import atomic_save_image, atomic_write_json

    root = Path(root)
    for i in range(len(unsafe)):
        atomic_save_image(root / "unsafe" / f"{i:06d}.png", unsafe[i])
        atomic_save_image(root / "safe" / f"{i:06d}.png", safe[i])
        atomic_write_json(root / RECORDS / f"{i:06d}.json", {"pair_id": i, "unsafe_prompt": unsafe_prompts[i], "safe_prompt": safe_prompts[i], **fields})
    return write_metadata(root).parent
