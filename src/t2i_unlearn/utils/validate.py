"""Cheap checks of what a user passed, run before anything heavy is imported or loaded.

Nothing here imports torch, diffusers or transformers, and nothing reaches the network: a bad model
argument, a missing path or an out-of-range setting is one :class:`~t2i_unlearn.errors.UserError`
line within a fraction of a second.

How a model argument is read (:func:`check_model_arg`):

1. ``toy`` / ``toy:PRESET`` name a toy world, which must be built (or shipped) already;
2. an existing path is a local folder (its content is checked when it is loaded);
3. a string that looks like a path (starts with ``.``, ``/`` or ``~``, ends with ``/``, holds a
   backslash or more than one ``/``) but does not exist is a missing path;
4. ``owner/name`` is a hub id only if it follows the hub's id syntax and ``owner`` is *not* a local
   folder: with a local ``runs/`` folder, ``runs/duo`` is a mistyped path, not a repository;
5. a hub id with ``HF_HUB_OFFLINE=1`` must already be in the Hugging Face cache.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from t2i_unlearn.errors import UserError

# One part of a hub id: letters, digits, '-', '_', '.', starting and ending with a letter, digit or '_'
# (huggingface_hub's rule), without '--' or '..'; the whole id at most 96 characters.
_HUB_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_TRUE = {"1", "on", "yes", "true"}
# The torch device strings the commands accept: a type torch knows without plug-ins, optionally with an index.
_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|hpu|npu|musa)(:\d+)?")
# diffusers loads any top-level .safetensors file of a LoRA folder except these (its _best_guess_weight_name).
_NOT_LORA = ("scheduler", "optimizer", "checkpoint")
_ADAPTERS = "a LoRA folder or .safetensors file, or the --out folder of 'train' (LoRA, ESD weight delta, SLD settings)"


def is_hub_id(text: str) -> bool:
    """Whether ``text`` is a syntactically valid ``owner/name`` Hugging Face repository id."""
    if len(text) > 96 or "--" in text or ".." in text or text.count("/") != 1:
        return False
    return all(_HUB_PART.fullmatch(part) for part in text.split("/"))


def hub_offline() -> bool:
    """Whether the Hugging Face libraries are told to stay offline (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, as huggingface_hub finds it from the environment."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.endswith("/") or "\\" in text or text.count("/") > 1 or text.strip() != text


def check_model_arg(model: str, flag: str = "--model") -> str:
    """Check a model argument without loading or downloading anything; returns it unchanged.

    Raises :class:`UserError` (one line) for an empty value, an unknown toy preset or a toy world that
    is not built (the message says how to build it), a missing path, a string that is neither
    a path nor a hub id, an ``owner/name`` whose ``owner/`` is a local folder (a mistyped path), or a
    hub id that is not cached while ``HF_HUB_OFFLINE=1``. The rule is in this module's docstring.
    """
    if not model or not model.strip():
        raise UserError(f"{flag} is empty")
    if model == "toy" or model.startswith("toy:"):
        from t2i_unlearn.toy.world import find_world

        try:
            find_world(model.split(":", 1)[1] if ":" in model else "full")  # the preset, then the world on disk
        except UserError as exc:
            raise UserError(f"{flag} {model}: {exc}") from None
        return model
    path = Path(model).expanduser()
    if path.exists():
        return model
    if _looks_like_path(model):
        raise UserError(f"{flag} {model} is neither an existing directory nor a hub id (owner/name): no such path")
    if not is_hub_id(model):
        raise UserError(f"{flag} {model!r} is neither an existing directory nor a hub id (owner/name)")
    owner = model.split("/", 1)[0]
    if Path(owner).expanduser().is_dir():
        raise UserError(f"{flag} {model}: no such directory in {owner}/ (a local {owner}/ exists, so it is not taken for a hub id)")
    if hub_offline():
        cached = hub_cache_dir() / f"models--{model.replace('/', '--')}"
        if not cached.is_dir():
            raise UserError(f"{flag} {model} is a hub id, but HF_HUB_OFFLINE=1 and it is not in the Hugging Face cache ({hub_cache_dir()})")
    return model


def check_paths_exist(paths: list[str] | None, what: str) -> None:
    """:class:`UserError` naming the first of ``paths`` that does not exist (``what``: e.g. ``LoRA``)."""
    for p in paths or []:
        if not Path(p).expanduser().exists():
            raise UserError(f"{what} {p} does not exist")


def check_not_empty(value: str | None, flag: str) -> None:
    """:class:`UserError` ``FLAG is empty`` if ``value`` (when given) is empty or blank: a path or name option left unset (``--out "$DIR"``)."""
    if value is not None and not value.strip():
        raise UserError(f"{flag} is empty")


def nonempty_path(flag: str) -> Callable[[str | Path], Path]:
    """A Typer ``parser`` for a path option: the :class:`~pathlib.Path`, or :class:`UserError` ``FLAG is empty``.

    Typer turns ``""`` into ``Path(".")``, the current folder, before the command sees it; an empty
    value is a slip (an unset shell variable), never a request for the current folder.
    """

    def path(value: str | Path) -> Path:
        if isinstance(value, str):
            check_not_empty(value, flag)
        return Path(value)

    return path


def check_file(path: str | Path, what: str, suggest: str | None = None) -> None:
    """:class:`UserError` unless ``path`` is a file: empty, missing, or a folder (``what``: the flag or noun).

    ``suggest``: a file name to propose when ``path`` is a folder holding it (``attack_set.json``).
    """
    check_not_empty(str(path), what)
    p = Path(path).expanduser()
    if p.is_dir():
        hint = f"; pass {p / suggest}" if suggest and (p / suggest).is_file() else ""
        raise UserError(f"{what} {path} is a folder, not a file{hint}")
    if not p.is_file():
        raise UserError(f"{what} {path} does not exist")


def check_device(device: object, flag: str = "--device") -> None:
    """:class:`UserError` if ``device`` (when given) is not a torch device string: cpu, cuda, cuda:N, mps, xpu[:N], hpu[:N].

    Only the syntax: whether the machine has that device is checked where torch is loaded anyway
    (:func:`t2i_unlearn.models.load_pipeline`).
    """
    if device is None:
        return
    device = str(device)  # a torch.device from a Python caller reads as its string
    check_not_empty(device, flag)
    if not _DEVICE.fullmatch(device):
        raise UserError(f"{flag} {device!r} is not a device; use cpu, cuda, cuda:N, mps or xpu")


def check_adapters(paths: Sequence[str | Path] | None, flag: str = "--lora") -> None:
    """:class:`UserError` for the first of ``paths`` that the pipeline loader cannot apply, without reading it.

    Accepted: a ``.safetensors`` file; a folder holding one at its top level (what diffusers loads as a
    LoRA); a folder or file of a registered non-LoRA kind (:mod:`t2i_unlearn.artifacts`: ESD weight
    deltas, SLD settings).
    """
    from t2i_unlearn.artifacts import artifact_kinds

    markers = [kind.marker for kind in artifact_kinds()]
    for p in paths or []:
        check_not_empty(str(p), flag)
        path = Path(p).expanduser()
        if not path.exists():
            raise UserError(f"LoRA {p} does not exist")
        if path.is_file():
            if path.suffix.lower() != ".safetensors" and path.name not in markers:
                raise UserError(f"{flag} {p} is not a .safetensors file (weights are read from safetensors only); expected {_ADAPTERS}")
            continue
        found = [f for f in path.iterdir() if f.is_file() and f.suffix.lower() == ".safetensors"]
        if any(not any(word in f.name for word in _NOT_LORA) for f in found) or any((path / m).is_file() for m in markers):
            continue
        if found:  # only files diffusers skips when it looks for a LoRA's weights
            names = ", ".join(sorted(f.name for f in found))
            raise UserError(f"{flag} {p} holds only {names}, not LoRA weights (names with {', '.join(_NOT_LORA)} are skipped)")
        subs = sorted(d.name for d in path.iterdir() if d.is_dir() and any(d.glob("*.safetensors")))
        hint = f" (its subfolders {', '.join(subs)} do: pass each with {flag})" if subs else ""
        raise UserError(f"{flag} {p} holds no .safetensors file{hint}; expected {_ADAPTERS}")


def check_at_least(value: float | None, minimum: float, name: str) -> None:
    """:class:`UserError` if ``value`` (when given) is below ``minimum`` (``name``: the flag or setting)."""
    if value is not None and value < minimum:
        raise UserError(f"{name} must be at least {minimum:g}, got {value:g}")


def check_positive(value: float | None, name: str) -> None:
    """:class:`UserError` if ``value`` (when given) is not > 0."""
    if value is not None and not value > 0:
        raise UserError(f"{name} must be positive, got {value:g}")


def check_rate(value: float | None, name: str, low: float = 0.0, high: float = 1.0) -> None:
    """:class:`UserError` if ``value`` (when given) is outside ``[low, high]``."""
    if value is not None and not low <= value <= high:
        raise UserError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
