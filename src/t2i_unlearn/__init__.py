"""t2i_unlearn: remove unsafe concepts from text-to-image diffusion models, attack and evaluate them.

The Python API mirrors the CLI; heavy modules are imported on first use, so ``import t2i_unlearn`` is cheap.

    from t2i_unlearn import build_world, load_pipeline, generate_images
"""

from __future__ import annotations

import importlib
from typing import Any

from t2i_unlearn import methods as _methods  # noqa: F401  (registers how non-LoRA method outputs are loaded; cheap)

__version__ = "0.1.0"

_API = {
    "UserError": "t2i_unlearn.errors",
    "build_world": "t2i_unlearn.toy.build",
    "verify_world": "t2i_unlearn.toy.world",
    "find_world": "t2i_unlearn.toy.world",
    "measure_quality": "t2i_unlearn.toy.quality",
    "show_world": "t2i_unlearn.toy.show",
    "load_pipeline": "t2i_unlearn.models",
    "generate_images": "t2i_unlearn.models",
    "resolve_model": "t2i_unlearn.models",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 't2i_unlearn' has no attribute {name!r}")
