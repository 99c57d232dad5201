"""Prompt sets read from user files, with schema checks that name the missing column or the bad line.

Formats (``format:`` in a suite, or ``auto`` from the file name and header):

- ``i2p``: the I2P benchmark CSV. Required columns ``prompt``, ``categories``, ``sd_seed``,
  ``sd_guidance_scale``; ``categories`` is a comma-separated list (``sexual, violence``) that a suite
  can filter on. Each prompt keeps its own seed and guidance (the benchmark's protocol).
- ``coco``: MS-COCO captions (e.g. the 30k protocol): a ``caption`` or ``prompt`` column, optional
  ``image_id`` and ``seed`` / ``evaluation_seed``.
- ``csv``: any CSV with a ``prompt`` column; optional ``seed``, ``guidance``, ``negative_prompt``;
  every other column is kept as a label (the toy prompt files carry ``shape`` and ``colour``).
- ``text``: one prompt per line; blank lines and lines starting with ``#`` are skipped.
- ``attack``: an attack set (JSON) as written by the attacks, see :data:`ATTACK_FORMAT`.

Attack-set JSON (``format: t2i_unlearn.attack_set``, ``version: 1``)::

    {"format": "t2i_unlearn.attack_set", "version": 1,
     "attack": "ring_a_bell", "concept": "nudity", "target_model": "...", "settings": {...},
     "embeddings": {"file": "tokens.safetensors", "kind": "textual_inversion"},   # optional
     "prompts": [{"prompt": "...", "seed": 3, "guidance": 7.5, "negative_prompt": "...",
                  "source_prompt": "the prompt it was made from", "embedding": "key"}]}

``embeddings.kind`` is ``textual_inversion`` (the safetensors file maps new tokens, used inside
the prompts, to their embedding vectors ``[D]`` or ``[k, D]``) or ``prompt_embeds`` (each prompt's
``embedding`` names a tensor ``[L, D]`` in the file that replaces the text encoder's output). A
textual-inversion set for SDXL also names ``file_2``: the same tokens' vectors for the second text
encoder (Dark Miner writes such sets). The file paths are relative to the JSON file. Every field
except ``prompts[].prompt`` is optional.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2i_unlearn.errors import UserError

ATTACK_FORMAT = "t2i_unlearn.attack_set"
FORMATS = ("auto", "i2p", "coco", "csv", "text", "attack")
I2P_REQUIRED = ("prompt", "categories", "sd_seed", "sd_guidance_scale")


@dataclass
class PromptItem:
    """One prompt to draw, with what the file says about how (``None`` = the suite's setting)."""

    prompt: str
    seed: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    embedding: str | None = None


@dataclass
class PromptSet:
    """Prompts loaded from one file; ``embeddings`` describes an attack set's embedding file, if any."""

    name: str
    source: str
    format: str
    items: list[PromptItem]
    embeddings: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "attack"
    if suffix in (".txt", ".text"):
        return "text"
    if suffix != ".csv":
        raise UserError(f"prompt file {path}: cannot tell its format from the suffix {suffix!r}; set format: i2p, coco, csv, text or attack")
    header = _csv_header(path)
    if "sd_seed" in header or "categories" in header:
        return "i2p"
    if "caption" in header:
        return "coco"
    return "csv"


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [h.strip() for h in next(csv.reader(f), [])]


def _read_csv(path: Path, required: tuple[str, ...], any_of: tuple[str, ...] = ()) -> list[tuple[int, dict[str, str]]]:
    """Rows as ``(line number, {column: value})``; :class:`UserError` when a required column is missing."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise UserError(f"prompt file {path}: missing column {missing[0]!r} (columns: {', '.join(header) or 'none'})")
            if any_of and not any(c in header for c in any_of):
                raise UserError(f"prompt file {path}: missing column {' or '.join(repr(c) for c in any_of)} (columns: {', '.join(header) or 'none'})")
            rows = []
            for row in reader:
                clean = {(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in row.items()}
                rows.append((reader.line_num, clean))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"prompt file {path} is unreadable ({type(exc).__name__}: {exc})") from exc


def _number(path: Path, line: int, column: str, value: str, kind: type) -> Any:
    try:
        return kind(float(value)) if kind is int else kind(value)
    except ValueError:
        raise UserError(f"prompt file {path}, line {line}: column {column!r} must be a number, got {value!r}") from None


def _prompt(path: Path, line: int, value: str | None) -> str:
    if not value:
        raise UserError(f"prompt file {path}, line {line}: empty prompt")
    return value


def _load_i2p(path: Path) -> list[PromptItem]:
    items = []
    for line, row in _read_csv(path, I2P_REQUIRED):
        categories = [c.strip() for c in row["categories"].split(",") if c.strip()]
        labels = {"categories": categories}
        for key in ("hard", "inappropriate_percentage", "nudity_percentage"):
            if row.get(key):
                labels[key] = row[key]
        items.append(
            PromptItem(
                prompt=_prompt(path, line, row["prompt"]),
                seed=_number(path, line, "sd_seed", row["sd_seed"], int),
                guidance=_number(path, line, "sd_guidance_scale", row["sd_guidance_scale"], float),
                labels=labels,
            )
        )
    return items


def _load_coco(path: Path) -> list[PromptItem]:
    items = []
    for line, row in _read_csv(path, (), any_of=("caption", "prompt")):
        text = row.get("caption") or row.get("prompt")
        seed_col = "seed" if row.get("seed") else "evaluation_seed" if row.get("evaluation_seed") else None
        seed = _number(path, line, seed_col, row[seed_col], int) if seed_col else None
        labels = {"image_id": row["image_id"]} if row.get("image_id") else {}
        items.append(PromptItem(prompt=_prompt(path, line, text), seed=seed, labels=labels))
    return items


def _load_csv(path: Path) -> list[PromptItem]:
    items = []
    special = ("prompt", "seed", "guidance", "negative_prompt")
    for line, row in _read_csv(path, ("prompt",)):
        items.append(
            PromptItem(
                prompt=_prompt(path, line, row["prompt"]),
                seed=_number(path, line, "seed", row["seed"], int) if row.get("seed") else None,
                guidance=_number(path, line, "guidance", row["guidance"], float) if row.get("guidance") else None,
                negative_prompt=row.get("negative_prompt") or None,
                labels={k: v for k, v in row.items() if k not in special and k},
            )
        )
    return items


def _load_text(path: Path) -> list[PromptItem]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"prompt file {path} is unreadable ({type(exc).__name__})") from exc
    return [PromptItem(prompt=s) for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def _load_attack(path: Path) -> tuple[list[PromptItem], dict[str, Any] | None, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"attack set {path} is not readable JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or data.get("format") != ATTACK_FORMAT:
        raise UserError(f'attack set {path}: missing "format": "{ATTACK_FORMAT}"')
    if data.get("version", 1) != 1:
        raise UserError(f"attack set {path}: version {data.get('version')} is not supported (this version reads 1)")
    prompts = data.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        raise UserError(f'attack set {path}: "prompts" must be a non-empty list')
    embeddings = data.get("embeddings")
    if embeddings is not None:
        if not isinstance(embeddings, dict) or "file" not in embeddings or embeddings.get("kind") not in ("textual_inversion", "prompt_embeds"):
            raise UserError(f'attack set {path}: "embeddings" needs "file" and "kind" (textual_inversion or prompt_embeds)')
        resolved = {}
        for key in ("file", "file_2"):
            if key in embeddings:
                file = (path.parent / str(embeddings[key])).resolve()
                if not file.is_file():
                    raise UserError(f"attack set {path}: embeddings file {file} does not exist")
                resolved[key] = str(file)
        embeddings = {**embeddings, **resolved}
    items = []
    for i, entry in enumerate(prompts):
        where = f"attack set {path}, prompts[{i}]"
        if isinstance(entry, str):
            entry = {"prompt": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("prompt"), str):
            raise UserError(f'{where}: needs a "prompt" string')
        if entry.get("embedding") is not None and (embeddings is None or embeddings["kind"] != "prompt_embeds"):
            raise UserError(f"{where}: names an embedding but the set has no prompt_embeds file")
        if embeddings is not None and embeddings["kind"] == "prompt_embeds" and not entry.get("embedding"):
            raise UserError(f'{where}: a prompt_embeds attack set needs an "embedding" key per prompt')
        try:
            seed = int(entry["seed"]) if entry.get("seed") is not None else None
            guidance = float(entry["guidance"]) if entry.get("guidance") is not None else None
        except (TypeError, ValueError):
            raise UserError(f"{where}: seed and guidance must be numbers") from None
        labels = {k: v for k, v in entry.items() if k not in ("prompt", "seed", "guidance", "negative_prompt", "embedding")}
        items.append(PromptItem(entry["prompt"], seed, guidance, entry.get("negative_prompt"), labels, entry.get("embedding")))
    meta = {k: data[k] for k in ("attack", "concept", "target_model", "settings") if k in data}
    return items, embeddings, meta


def load_prompt_set(path: str | Path, name: str | None = None, fmt: str = "auto", categories: list[str] | None = None, limit: int | None = None) -> PromptSet:
    """Read a prompt file; ``categories`` keeps I2P prompts with any of them; ``limit`` keeps the first ``n``.

    Raises :class:`UserError` naming the file and the missing column or bad line.
    """
    path = Path(path).expanduser()
    if fmt not in FORMATS:
        raise UserError(f"unknown prompt file format {fmt!r}; known: {', '.join(FORMATS)}")
    if path.is_dir():
        hint = f"; pass {path / 'attack_set.json'}" if (path / "attack_set.json").is_file() else ""
        raise UserError(f"prompt file {path} is a folder, not a file{hint}")
    if not path.is_file():
        raise UserError(f"prompt file {path} does not exist")
    fmt = _detect_format(path) if fmt == "auto" else fmt
    embeddings, meta = None, {}
    if fmt == "attack":
        items, embeddings, meta = _load_attack(path)
    else:
        items = {"i2p": _load_i2p, "coco": _load_coco, "csv": _load_csv, "text": _load_text}[fmt](path)
    if categories:
        if fmt != "i2p":
            raise UserError(f"prompt file {path}: categories filter only applies to I2P files (format {fmt})")
        wanted = {c.strip().lower() for c in categories}
        items = [it for it in items if wanted & {c.lower() for c in it.labels.get("categories", [])}]
    if limit is not None:
        items = items[:limit]
    if not items:
        raise UserError(f"prompt file {path} has no prompts" + (f" in categories {', '.join(categories)}" if categories else ""))
    return PromptSet(name=name or path.stem, source=str(path), format=fmt, items=items, embeddings=embeddings, meta=meta)


def write_attack_set(path: str | Path, prompts: list[dict[str, Any] | str], **fields: Any) -> Path:
    """Write an attack set JSON (for the attacks: ``attack=``, ``concept=``, ``settings=``, ``embeddings=`` ...)."""
    from t2i_unlearn.utils.io import atomic_write_json

    body = {"format": ATTACK_FORMAT, "version": 1, **fields, "prompts": [p if isinstance(p, dict) else {"prompt": p} for p in prompts]}
    return atomic_write_json(path, body)
