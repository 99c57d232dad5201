"""The image cache: one PNG per generated image, named by the hash of everything that made it.

Key = SHA-256 of (model weights hash, adapter hashes and weights, prompt, negative prompt, seed,
steps, guidance, size, attack-embedding hash). Re-running an evaluation, adding a metric, or
evaluating the base model again for another adapter reuses the images. PNG is lossless, so a
cached image is bit-identical to the one generated.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from t2i_unlearn.errors import UserError
from t2i_unlearn.utils.io import atomic_write_json, atomic_write_text, hash_files, sha256_file

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``<user cache>/images`` (``T2I_UNLEARN_CACHE`` moves the user cache)."""
    from t2i_unlearn.toy.world import cache_root

    return cache_root() / "images"


def _dir_signature(path: Path) -> str:
    entries = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            st = p.stat()
            entries.append(f"{rel.as_posix()} {st.st_size} {st.st_mtime_ns}")
    return hashlib.sha256(f"{path.resolve()}\n".encode() + "\n".join(entries).encode()).hexdigest()


def fingerprint(path: str | Path, memo_dir: Path | None = None) -> str:
    """SHA-256 over a file's bytes, or over every file of a directory (remembered by size and mtime in ``memo_dir``)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise UserError(f"{path} does not exist")
    memo = memo_dir / "fingerprints.json" if memo_dir else None
    sig = _dir_signature(path)
    known: dict[str, str] = {}
    if memo is not None and memo.exists():
        try:
            known = json.loads(memo.read_text())
        except (OSError, json.JSONDecodeError):
            known = {}
        if sig in known:
            return known[sig]
    files = hash_files(path)
    digest = hashlib.sha256("\n".join(f"{k} {v}" for k, v in sorted(files.items())).encode()).hexdigest()
    if memo is not None:
        known[sig] = digest
        try:
            atomic_write_json(memo, known)
        except OSError:  # a read-only cache still works, only slower
            pass
    return digest


def model_fingerprint(model: str, memo_dir: Path | None = None) -> dict[str, str]:
    """``{"source": path or hub id, "sha256": ...}`` of a model id (hub ids: the local snapshot if there is one)."""
    from t2i_unlearn.models import resolve_model

    source = resolve_model(model)
    path = Path(source)
    if not path.exists():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(source, local_files_only=True))
        except Exception:
            logger.warning("model %s has no local snapshot: its cache key uses the hub id only", source)
            return {"source": source, "sha256": f"hub:{source}"}
    return {"source": str(source), "sha256": fingerprint(path, memo_dir)}


def image_key(fields: dict[str, Any]) -> str:
    """The cache key of one image from its (JSON-serialisable) generation fields."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ImageCache:
    """PNG files under ``root/<key[:2]>/<key>.png`` with a JSON sidecar of the fields that made each."""

    def __init__(self, root: str | Path):
        from t2i_unlearn.utils.io import ensure_writable_dir

        self.root = ensure_writable_dir(root)

    def path(self, key: str) -> Path:
        """Where image ``key`` lives."""
        return self.root / key[:2] / f"{key}.png"

    def has(self, key: str) -> bool:
        """Whether image ``key`` is cached."""
        return self.path(key).exists()

    def get(self, key: str) -> np.ndarray:
        """Image ``key`` as ``uint8 [H, W, 3]``."""
        from PIL import Image

        if not self.has(key):
            raise UserError(f"cached image {self.path(key)} is missing (no process drew it); run the evaluation again to draw it")
        try:
            with Image.open(self.path(key)) as im:
                return np.asarray(im.convert("RGB"))
        except OSError as exc:
            raise UserError(f"cached image {self.path(key)} is unreadable; delete it to generate it again") from exc

    def put(self, key: str, image: np.ndarray, fields: dict[str, Any]) -> None:
        """Store an image with its fields; both are renamed into place whole, the image last (it is what :meth:`has` looks for)."""
        from t2i_unlearn.utils.io import atomic_save_image

        atomic_write_text(self.path(key).with_suffix(".json"), json.dumps(fields, sort_keys=True) + "\n")
        atomic_save_image(self.path(key), image)

    def __repr__(self) -> str:
        return f"ImageCache({os.fspath(self.root)})"
