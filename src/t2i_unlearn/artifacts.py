"""Method outputs that are not LoRAs, and how the pipeline loader applies them.

:func:`t2i_unlearn.models.load_pipeline` knows no method. A method whose output folder is not a LoRA
registers its kind here: the file that marks such a folder, and the function that applies it,
named ``"module:function"`` so that nothing is imported until a folder of that kind is loaded. The
methods package registers its kinds when it is imported, and the package ``t2i_unlearn`` imports it,
so the registry is filled before any loader runs.

This module imports nothing heavy: importing the methods registry must stay cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2i_unlearn.errors import UserError

LORA_FILE = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True)
class ArtifactKind:
    """How one kind of output folder is recognised and applied to a loaded pipeline."""

    name: str
    marker: str
    """The file that marks a folder of this kind (when the folder holds no LoRA file); also the file itself may be passed."""
    apply: str
    """``"module:function"``; the function takes ``(pipe, path, weight)`` and returns the pipeline to use."""
    order: int = 0
    """Appliers run after the LoRAs are loaded, lowest order first (one that wraps the pipeline comes last)."""


# Filled by register_artifact, in registration order (which is also the order kinds are recognised in).
_KINDS: dict[str, ArtifactKind] = {}


def register_artifact(name: str, marker: str, apply: str, order: int = 0) -> None:
    """Teach the pipeline loader an output kind: folders holding ``marker`` are applied by ``apply``."""
    if ":" not in apply:
        raise ValueError(f"apply must be 'module:function', got {apply!r}")
    _KINDS[name] = ArtifactKind(name, marker, apply, order)


def artifact_kinds() -> list[ArtifactKind]:
    """The registered kinds, in registration order."""
    return list(_KINDS.values())


def artifact_kind(path: str | Path) -> str:
    """``lora`` or a registered kind's name for an output folder (or file); anything unrecognised is a LoRA."""
    p = Path(path)
    for kind in _KINDS.values():
        if p.is_dir():
            if (p / kind.marker).exists() and not (p / LORA_FILE).exists():
                return kind.name
        elif p.name == kind.marker:
            return kind.name
    return "lora"


def _applier(kind: ArtifactKind) -> Callable[..., Any]:
    module, _, function = kind.apply.partition(":")
    return getattr(importlib.import_module(module), function)


def split_artifacts(paths: Sequence[str], weights: Sequence[float] | None) -> tuple[list[str], list[float] | None, list[Callable[[Any], Any]]]:
    """Separate LoRAs from other method outputs for :func:`t2i_unlearn.models.load_pipeline`.

    Returns ``(loras, their weights, appliers)``; each applier takes the pipeline (with its LoRAs
    loaded) and returns the pipeline to use; they come in the kinds' ``order``, then in the order
    given. With no other outputs, ``paths`` and ``weights`` come back unchanged.
    """
    kinds = [artifact_kind(p) for p in paths]
    if all(k == "lora" for k in kinds):
        return list(paths), (list(weights) if weights else None), []
    ws = list(weights) if weights else [1.0] * len(paths)
    if len(ws) != len(paths):
        raise UserError(f"{len(paths)} LoRAs but {len(ws)} LoRA weights")
    keep = [(p, w) for p, w, k in zip(paths, ws, kinds, strict=True) if k == "lora"]
    others = sorted(((p, w, _KINDS[k]) for p, w, k in zip(paths, ws, kinds, strict=True) if k != "lora"), key=lambda item: item[2].order)
    appliers: list[Callable[[Any], Any]] = [lambda pipe, p=p, w=w, kind=kind: _applier(kind)(pipe, p, w) for p, w, kind in others]
    return [p for p, _ in keep], ([w for _, w in keep] if keep else None), appliers


__all__ = ["ArtifactKind", "artifact_kind", "artifact_kinds", "register_artifact", "split_artifacts"]
