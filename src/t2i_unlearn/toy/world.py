"""Where toy worlds live and what makes one complete: presets, the format version, the manifest check.

The cache directory or the trained ``full`` world shipped with the package. Building a world is
:mod:`t2i_unlearn.toy.build`, which imports this module (never the other way round).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import platformdirs

from t2i_unlearn.errors import UserError
from t2i_unlearn.utils.io import DONE, OTHER, PARTIAL

WORLD_FORMAT = 4  # bump when the layout or the recipe changes, so stale caches are rebuilt
_REBUILD = "'t2i-unlearn toy build --overwrite'"
WORLD_FILES = ("pipeline/**/*", "judges/*", "quality.json")  # what a world's manifest hashes


@dataclass(frozen=True)
class ToyPreset:
    """Sizes and budgets of a toy-world build. ``full`` is the bench; ``quick`` is the test fixture."""

    name: str
    n_images: int
    vae_steps: int
    unet_steps: int
    judge_steps: int
    eval_per_group: int
    vae_batch: int = 64
    vae_lr: float = 1e-3
    unet_batch: int = 64
    unet_lr: float = 6e-4
    unet_channels: tuple[int, ...] = (32, 64, 64)
    text_hidden: int = 64
    judge_batch: int = 128
    judge_lr: float = 2e-3
    judge_variants: int = 6000
    cfg_dropout: float = 0.1
    ema_decay: float = 0.999
    checkpoint_every: int = 200
    sample_steps: int = 25
    guidance: float = 4.0


PRESETS: dict[str, ToyPreset] = {
    "quick": ToyPreset(name="quick", n_images=4000, vae_steps=50, unet_steps=100, judge_steps=100, eval_per_group=16, judge_variants=600, checkpoint_every=50),
    "full": ToyPreset(name="full", n_images=40000, vae_steps=300, unet_steps=3600, judge_steps=2500, eval_per_group=200, unet_batch=32, unet_lr=2e-3),
}


def get_preset(name: str) -> ToyPreset:
    """The preset called ``name``; :class:`UserError` if there is none."""
    if name not in PRESETS:
        raise UserError(f"unknown toy preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def verify_world(world: str | Path) -> dict[str, Any]:
    """Check a world's files against its manifest; returns the manifest or raises :class:`UserError`."""
    from t2i_unlearn.utils.io import hash_files

    world = Path(world)
    manifest_path = world / "manifest.json"
    if not manifest_path.exists():
        raise UserError(f"{world} is not a complete toy world (no manifest.json); run 't2i-unlearn toy build'")
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = manifest["files"]
    except (ValueError, KeyError) as exc:
        raise UserError(f"toy world at {world} is corrupted (unreadable manifest.json); rebuild it with {_REBUILD}") from exc
    if manifest["settings"].get("format") != WORLD_FORMAT:
        raise UserError(f"toy world at {world} has format {manifest['settings'].get('format')}, this version needs {WORLD_FORMAT}; rebuild it with {_REBUILD}")
    actual = hash_files(world, WORLD_FILES)
    for rel, digest in expected.items():
        if rel not in actual:
            raise UserError(f"toy world at {world} is corrupted ({rel} is missing); rebuild it with {_REBUILD}")
        if actual[rel] != digest:
            raise UserError(f"toy world at {world} is corrupted ({rel} does not match its hash); rebuild it with {_REBUILD}")
    return manifest


def cache_root() -> Path:
    """The user cache directory for t2i_unlearn (``T2I_UNLEARN_CACHE`` overrides it)."""
    import os

    env = os.environ.get("T2I_UNLEARN_CACHE")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("t2i_unlearn"))


def default_world_dir(preset: str, seed: int = 0) -> Path:
    """Where ``toy build`` puts a world by default."""
    return cache_root() / "toy" / f"{preset}-seed{seed}-v{WORLD_FORMAT}"


def shipped_world(preset: str) -> Path | None:
    """The trained world shipped inside the package for ``preset``, if there is one."""
    path = Path(str(resources.files("t2i_unlearn.toy"))) / "assets" / preset
    return path if (path / "manifest.json").exists() else None


def find_world(preset: str = "full", seed: int = 0) -> Path:
    """A complete, verified world for ``preset``: the cached build if present, else the shipped one."""
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


def _is_world_manifest(manifest: Any) -> bool:
    if not isinstance(manifest, dict):
        return False
    settings = manifest.get("settings")
    return manifest.get("artifact") == "toy_world" or (
        str(manifest.get("command", "")).startswith("t2i-unlearn toy build") and isinstance(settings, dict) and "preset" in settings
    )


def is_world_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a toy world, finished (its manifest) or interrupted (its build state), whatever its settings."""
    path = Path(path)
    if (path / ".build" / "state.json").is_file():
        return True
    try:
        return _is_world_manifest(json.loads((path / "manifest.json").read_text()))
    except (OSError, ValueError):
        return False


def _world_recogniser(spec: ToyPreset, seed: int, command: str | None = None) -> Callable[[Path], tuple[str, str]]:
    """What an existing, non-empty ``--out`` of ``toy build`` holds: this world (done or unfinished), or something else.

    With ``command``, a finished world counts as this one only if its manifest names that command.
    """
    settings = json.loads(json.dumps({"preset": asdict(spec), "seed": seed, "format": WORLD_FORMAT}))

    def recognise(path: Path) -> tuple[str, str]:
        manifest_path = path / "manifest.json"
        if manifest_path.exists():
            try:
                manifest = json.loads(manifest_path.read_text())
            except ValueError:
                return OTHER, "is not a toy world (its manifest.json is unreadable)"
            if not _is_world_manifest(manifest):
                return OTHER, "is not a toy world"
            saved = manifest["settings"]
            if saved.get("preset") != settings["preset"] or saved.get("seed") != seed:
                return OTHER, "holds a toy world built with other settings"
            if command is not None and manifest.get("command") != command:
                return OTHER, "holds a toy world made another way"
            verify_world(path)  # a damaged world is one line naming --overwrite
            return DONE, ""
        state_path = path / ".build" / "state.json"
        if state_path.exists():
            try:
                state = json.loads(state_path.read_text())
            except ValueError:
                return OTHER, "holds an unfinished toy world build whose state is unreadable"
            if isinstance(state, dict) and state.get("settings") == settings:
                return PARTIAL, ""
            return OTHER, "holds an unfinished toy world build with other settings"
        return OTHER, "is not a toy world"

    return recognise


def claim_world(out: str | Path, spec: ToyPreset, seed: int, overwrite: bool, command: str | None = None) -> Any:
    """The output claim of ``toy build`` on ``out`` (see :func:`~t2i_unlearn.utils.io.claim_output`); no torch needed.

    :class:`UserError` when ``out`` holds something else than this world (finished or interrupted) and not ``overwrite``;
    ``command``: a finished world must also have been made by it.
    """
    from t2i_unlearn.utils.io import claim_output

    return claim_output(out, "a toy world", _world_recogniser(spec, seed, command), overwrite)
