"""Where toy worlds live: the user cache directory, or the trained ``full`` world shipped with the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import platformdirs

from t2i_unlearn.errors import UserError


def cache_root() -> Path:
    """The user cache directory for t2i_unlearn (``T2I_UNLEARN_CACHE`` overrides it)."""
    import os

    env = os.environ.get("T2I_UNLEARN_CACHE")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("t2i_unlearn"))


def default_world_dir(preset: str, seed: int = 0) -> Path:
    """Where ``toy build`` puts a world by default."""
    from t2i_unlearn.toy.build import WORLD_FORMAT

    return cache_root() / "toy" / f"{preset}-seed{seed}-v{WORLD_FORMAT}"


def shipped_world(preset: str) -> Path | None:
    """The trained world shipped inside the package for ``preset``, if there is one."""
    path = Path(str(resources.files("t2i_unlearn.toy"))) / "assets" / preset
    return path if (path / "manifest.json").exists() else None


def find_world(preset: str = "full", seed: int = 0) -> Path:
    """A complete, verified world for ``preset``: the cached build if present, else the shipped one."""
    from t2i_unlearn.toy.build import get_preset, verify_world

    get_preset(preset)
    cached = default_world_dir(preset, seed)
    if (cached / "manifest.json").exists():
        verify_world(cached)
        return cached
    shipped = shipped_world(preset) if seed == 0 else None
    if shipped is not None:
        verify_world(shipped)
        return shipped
    raise UserError(f"no toy world for preset {preset!r} (seed {seed}); run 't2i-unlearn toy build --preset {preset}' first")
