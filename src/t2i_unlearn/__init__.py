"""t2i_unlearn: remove unsafe concepts from text-to-image diffusion models, attack and evaluate them.

The Python API mirrors the CLI; heavy modules are imported on first use, so ``import t2i_unlearn`` is cheap.

    from t2i_unlearn import build_world, load_pipeline, generate_images
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# diffusers imports onnxruntime whenever it loads a pipeline (it looks up ``OnnxRuntimeModel`` for each
# component), and nudenet runs on it. Since 1.32 onnxruntime's telemetry writes a device id under
# ~/.cache and sends events over the network as soon as it initialises, which is before any call could
# switch it off; this variable, set before that, keeps the process off the network. A user's own
# setting wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from t2i_unlearn import methods as _methods  # noqa: F401  (registers how non-LoRA method outputs are loaded; cheap)
from t2i_unlearn._version import __version__

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
