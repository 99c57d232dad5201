"""Cheap checks of what a user passed, run before anything heavy is imported or loaded.

Nothing here imports torch, diffusers or transformers, and nothing reaches the network: a bad model
argument, a missing path or an out-of-range setting is one :class:`~t2i_unlearn.errors.UserError`
line within a fraction of a second.

How a model argument is read (:func:`check_model_arg`):

1. ``toy`` / ``toy:PRESET`` name a toy world;
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
from pathlib import Path

from t2i_unlearn.errors import UserError

# One part of a hub id: letters, digits, '-', '_', '.', starting and ending with a letter, digit or '_'
# (huggingface_hub's rule), without '--' or '..'; the whole id at most 96 characters.
_HUB_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_TRUE = {"1", "on", "yes", "true"}


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

    Raises :class:`UserError` (one line) for an empty value, a missing path, a string that is neither
    a path nor a hub id, an ``owner/name`` whose ``owner/`` is a local folder (a mistyped path), or a
    hub id that is not cached while ``HF_HUB_OFFLINE=1``. The rule is in this module's docstring.
    """
    if not model or not model.strip():
        raise UserError(f"{flag} is empty")
    if model == "toy" or model.startswith("toy:"):
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
