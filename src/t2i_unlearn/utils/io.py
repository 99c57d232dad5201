"""Atomic file writes, hashing and run manifests.

Every artifact is written to a temporary name beside its destination and renamed into place, so an
interrupted job never leaves a file or folder that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from t2i_unlearn.errors import UserError


def _tmp_path(path: Path) -> Path:
    # pid and a random part: two processes, or two threads of one, never share a temporary name
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux ``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def ordinary_modes(path: str | Path) -> Path:
    """Give ``path`` (and, for a folder, everything in it) the modes a plain ``open`` would: 0666/0777 less the umask.

    Writers that go through a private temporary file (``tempfile.mkstemp``, safetensors' ``save_file``,
    ``save_pretrained``) leave mode 0600 behind; results are renamed into place only after this.
    """
    path = Path(path)
    mask = current_umask()
    entries = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in entries:
        if p.is_symlink():
            continue
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)
    return path


def publish(tmp: str | Path, final: str | Path) -> Path:
    """Rename the finished file or folder ``tmp`` to ``final`` (atomic on one file system), with ordinary modes."""
    ordinary_modes(tmp)
    os.replace(tmp, final)
    return Path(final)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return publish(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    """``torch.save`` atomically (for training checkpoints of tensors and plain values)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    torch.save(obj, tmp)
    return publish(tmp, path)


def atomic_save_safetensors(path: str | Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` as a safetensors file at ``path`` through a temporary name and a rename (ordinary mode, not 0600)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        return publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def safe_torch_load(path: str | Path) -> Any:
    """Load a checkpoint written by :func:`atomic_torch_save` (``weights_only=True``)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it to start over") from exc


def temp_dir_beside(final: str | Path) -> Path:
    """A fresh, ordinary (umask-permission) temporary folder next to ``final``, for :func:`replace_dir`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    return ordinary_modes(tmp)  # mkdtemp makes it private; the result is an ordinary folder


def replace_dir(tmp: str | Path, final: str | Path) -> Path:
    """Rename the finished folder ``tmp`` to ``final``, replacing an existing ``final``; its files get ordinary modes."""
    tmp, final = Path(tmp), Path(final)
    ordinary_modes(tmp)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final


@contextlib.contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``final`` only if the block succeeds.

    An existing ``final`` is replaced. On failure the temporary directory is removed.
    """
    tmp = temp_dir_beside(final)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final)


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and check that files can be written in it; raise :class:`UserError` if not."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output directory {path} is not writable ({exc.strerror or exc})") from exc
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_files(root: str | Path, patterns: tuple[str, ...] = ("**/*",)) -> dict[str, str]:
    """SHA-256 of every regular, non-hidden file under ``root`` matching ``patterns``, keyed by relative path."""
    root = Path(root)
    out: dict[str, str] = {}
    for pattern in patterns:
        for p in sorted(root.glob(pattern)):
            rel = p.relative_to(root)
            if p.is_file() and not any(part.startswith(".") for part in rel.parts):
                out[rel.as_posix()] = sha256_file(p)
    return out


def package_versions(names: tuple[str, ...] = ("torch", "diffusers", "transformers", "peft", "accelerate")) -> dict[str, str]:
    """Versions of the packages that shape results: t2i-unlearn (the code that runs) and the installed ``names``."""
    from t2i_unlearn import __version__

    out = {"t2i-unlearn": __version__}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def command_line() -> str:
    """This process's command line, shell-quoted (``python -m t2i_unlearn.cli ...`` rather than the path of ``__main__.py``)."""
    argv = list(sys.argv)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if argv and spec is not None and spec.name.endswith(".__main__"):
        argv[:1] = [sys.executable, "-m", spec.name.removesuffix(".__main__")]
    return shlex.join(argv)


def make_manifest(command: str, settings: dict[str, Any], inputs: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """A ``manifest.json`` body: what made an artifact (command and full command line), with which settings, inputs and package versions."""
    return {
        "command": command,
        "command_line": command_line(),
        "settings": settings,
        "inputs": inputs or {},
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }


def atomic_save_image(path: str | Path, array: Any) -> Path:
    """Save an ``uint8 [H, W, 3]`` array as PNG/JPEG/WebP (by suffix) atomically."""
    import io

    from PIL import Image

    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return atomic_write_bytes(path, buf.getvalue())
