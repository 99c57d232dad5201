"""Atomic file writes, hashing, run manifests, and the one rule every command follows for its ``--out``.

Every artifact is written to a temporary name beside its destination and renamed into place, so an
interrupted job never leaves a file or folder that looks complete. :func:`claim_output` decides what
may happen at an output location (the rule is spelled out there and in the README). This module does
not import torch at module level: the CLI checks outputs before loading anything heavy.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
    _sweep_stale_temps(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    return ordinary_modes(tmp)  # mkdtemp makes it private; the result is an ordinary folder


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace_dir(tmp: str | Path, final: str | Path) -> Path:
    """Rename the finished folder ``tmp`` to ``final``, replacing an existing ``final``; its files get ordinary modes."""
    tmp, final = Path(tmp), Path(final)
    ordinary_modes(tmp)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
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
    from t2i_unlearn._version import __version__

    out = {"t2i-unlearn": __version__}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def hardware() -> dict[str, Any]:
    """The machine a run used: CPU model, logical cores, thread settings, and the GPU's name when torch sees one."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    torch = sys.modules.get("torch")  # only when the run already imported it
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


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


PNG_REQUEST_KEY = "t2i_unlearn.request"


def atomic_save_image(path: str | Path, array: Any, request: Any = None) -> Path:
    """Save an ``uint8 [H, W, 3]`` array as PNG/JPEG/WebP (by suffix) atomically.

    ``request`` (JSON-able: what made the image) is stored in a PNG text chunk, so that the same
    command finds its own image again (:func:`png_request_recogniser`); other formats do not keep it.
    """
    import io

    from PIL import Image, PngImagePlugin

    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")
    buf = io.BytesIO()
    options: dict[str, Any] = {}
    if request is not None and fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(PNG_REQUEST_KEY, json.dumps(request, sort_keys=True))
        options["pnginfo"] = info
    Image.fromarray(array).save(buf, format=fmt, **options)
    return atomic_write_bytes(path, buf.getvalue())


def png_request_recogniser(request: Any) -> Recogniser:
    """A recogniser for single image files: ``done`` when the PNG there was written for the same ``request``."""
    wanted = json.dumps(json.loads(json.dumps(request)), sort_keys=True)

    def recognise(path: Path) -> tuple[str, str]:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                saved = getattr(im, "text", {}).get(PNG_REQUEST_KEY)
        except (OSError, UnidentifiedImageError, ValueError):
            saved = None
        if saved is None:
            return OTHER, "already exists"
        return (DONE, "") if saved == wanted else (OTHER, "already exists (an image made with other settings)")

    return recognise


# ---- the output rule ---------------------------------------------------------------------------------

# What a recogniser says about an existing, non-empty output location.
DONE, PARTIAL, OTHER = "done", "partial", "other"
Recogniser = Callable[[Path], tuple[str, str]]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _sweep_stale_temps(final: Path) -> None:
    """Remove ``.NAME.tmp-PID-*`` / ``.NAME.old-PID`` leftovers beside ``final`` whose process is gone (a killed run)."""
    if not final.parent.is_dir():
        return
    for p in final.parent.glob(f".{final.name}.*-*"):
        kind, _, rest = p.name[len(final.name) + 2 :].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("tmp", "old") and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            _remove(p)


@dataclass
class OutputClaim:
    """What :func:`claim_output` decided for an output location.

    ``status`` is ``new`` (absent or empty: write it), ``done`` (it already holds this result, made
    with the same settings: reuse it), ``partial`` (it holds an unfinished run of this result with
    the same settings: resume it) or ``replace`` (``--overwrite`` over something else).
    """

    path: Path
    status: str
    existed: bool

    @contextlib.contextmanager
    def staged(self) -> Iterator[Path]:
        """A temporary folder beside the output, renamed onto it only when the block succeeds.

        On failure it is removed and the output location is left exactly as it was.
        """
        with atomic_directory(self.path) as tmp:
            yield tmp

    @contextlib.contextmanager
    def in_place(self) -> Iterator[Path]:
        """The output folder itself, for resumable work whose completion marker is written last.

        ``replace`` clears the old content first (resumable work cannot be staged beside). If the block
        fails while the folder this run created is still empty, the folder is removed again, so a
        failed run leaves no empty folder behind.
        """
        if self.status == "replace" and self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
            _remove(old)
        existing = self.path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            yield self.path
        except BaseException:
            # remove the folders this run created (the output and any parents), as long as they are empty
            folder = self.path
            while folder != existing and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
            raise


def manifest_recogniser(artifact: str, request: Any, noun: str, same: str = DONE) -> Recogniser:
    """A recogniser for outputs whose ``manifest.json`` (written last) carries ``artifact`` and ``request``.

    ``request`` is what identifies the result (the settings and inputs asked for); it is compared as
    JSON. A match is ``same``: ``done`` (reuse it) or ``partial`` for results that are cheap to redo
    and whose inputs may have changed under the same names (an evaluation, an export): redo them and
    replace the old result once the new one is complete.
    """
    wanted = json.loads(json.dumps(request))

    def recognise(path: Path) -> tuple[str, str]:
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError):
            return OTHER, f"is not {noun}"
        if not isinstance(manifest, dict) or manifest.get("artifact") != artifact:
            return OTHER, f"is not {noun}"
        if manifest.get("request") != wanted:
            return OTHER, f"holds {noun} made with other settings"
        return same, ""

    return recognise


def marker_recogniser(noun: str, markers: tuple[str, ...]) -> Recogniser:
    """A first look at ``--out`` for commands whose own recogniser needs torch: the cheap refusals, before it loads.

    A folder holding any of ``markers`` (a finished result's ``manifest.json``, a stopped run's records)
    may be ``noun`` and passes as ``partial``: the command's own claim decides later. Anything else is
    not ``noun``.
    """

    def recognise(path: Path) -> tuple[str, str]:
        if any((path / m).exists() for m in markers):
            return PARTIAL, ""
        return OTHER, f"is not {noun}"

    return recognise


def _existing_ancestor(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest existing parent: where writing it would start."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folder_location(path: str | Path, what: str) -> Path:
    """``path`` (expanded) if it is a folder that can be written, or can be made as one; :class:`UserError` naming ``what`` otherwise.

    Creates nothing: commands check their folders before a dry run or before torch loads.
    """
    path = Path(path).expanduser()
    probe = _existing_ancestor(path)
    if not probe.is_dir():
        raise UserError(f"{what} {path} is not a folder ({probe} is a file)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path} is not writable ({probe} is read-only)")
    return path


def claim_output(
    path: str | Path,
    noun: str,
    recognise: Recogniser | None = None,
    overwrite: bool = False,
    kind: str = "folder",
    suffixes: tuple[str, ...] = (),
    flag: str = "--overwrite",
) -> OutputClaim:
    """Decide what a command may do at its output location ``path``; raise :class:`UserError` (one line) if nothing.

    The rule, the same for every command that writes a folder or a file:

    - an absent path, or an empty folder, is used (``new``);
    - a location holding the same artifact made with the same settings is reused (``done``) or,
      if that run is unfinished, resumed (``partial``), as ``recognise(path)`` says;
    - anything else (a foreign folder, another artifact, other settings, a file where a folder
      is wanted) is refused with a line naming ``--overwrite``;
    - with ``overwrite`` whatever is there is replaced (``replace``): by a rename once the new
      result is complete (:meth:`OutputClaim.staged`), or cleared first for work done in place.

    ``noun`` names the artifact in messages ("an attack set"); ``kind`` is ``folder`` or ``file``
    (``suffixes``: the file endings allowed; a folder is never replaced by a file, even with
    ``overwrite``); ``flag`` is the command's name for ``overwrite`` in messages. Also checks that
    the parent folder is writable and removes the temporary leftovers of killed runs beside ``path``;
    nothing else is touched.
    """
    path = Path(path).expanduser()
    if kind == "file" and suffixes and path.suffix.lower() not in suffixes:
        endings = f"{', '.join(suffixes[:-1])} or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]
        raise UserError(f"output file {path} must end in {endings}")
    probe = _existing_ancestor(path.parent if str(path.parent) else Path("."))
    if probe.exists() and not probe.is_dir():
        raise UserError(f"output location {path} is not writable ({probe} is a file, not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"output location {path} is not writable ({probe} is read-only)")
    _sweep_stale_temps(path)
    if not path.exists() and not path.is_symlink():
        return OutputClaim(path, "new", False)
    if kind == "file" and path.is_dir():
        raise UserError(f"{path} is a folder, not a file; use another file name")
    if path.is_dir() and not any(path.iterdir()):
        return OutputClaim(path, "new", True)
    if overwrite:
        return OutputClaim(path, "replace", True)
    if kind == "folder":
        if not path.is_dir():
            why = "is a file, not a folder"
        else:
            status, why = recognise(path) if recognise is not None else (OTHER, "is not empty")
            if status in (DONE, PARTIAL):
                return OutputClaim(path, status, True)
    else:
        status, why = recognise(path) if recognise is not None else (OTHER, "already exists")
        if status == DONE:
            return OutputClaim(path, status, True)
    place = "an empty folder" if kind == "folder" else "another file name"
    raise UserError(f"{path} {why}; use {place} or {flag}")
