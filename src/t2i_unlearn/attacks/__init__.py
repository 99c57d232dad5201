"""Red-teaming attacks, registered by name: ``ring_a_bell``, ``concept_inversion``, ``unlearndiff``, ``p4d``.

Each entry gives the attack's config dataclass (paper defaults, every field documented) and its
``run(ctx, config) -> AttackResult``. :func:`run_attack` is the Python API behind
``t2i-unlearn attack NAME``; it writes an attack set that ``t2i-unlearn eval --attack`` replays.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from t2i_unlearn.attacks.registry import ATTACKS, Attack, get_attack

if TYPE_CHECKING:
    from t2i_unlearn.attacks.base import AttackBudget, AttackContext, AttackResult
    from t2i_unlearn.attacks.runner import run_attack

# attacks.base and attacks.runner import torch: loaded on first use, so that checking an attack's name stays cheap
_BASE, _RUNNER = "t2i_unlearn.attacks.base", "t2i_unlearn.attacks.runner"
_LAZY = {"AttackBudget": _BASE, "AttackContext": _BASE, "AttackResult": _BASE, "run_attack": _RUNNER}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 't2i_unlearn.attacks' has no attribute {name!r}")


__all__ = ["ATTACKS", "Attack", "AttackBudget", "AttackContext", "AttackResult", "get_attack", "run_attack"]
