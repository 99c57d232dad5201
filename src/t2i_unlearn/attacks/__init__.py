"""Red-teaming attacks, registered by name: ``ring_a_bell``, ``concept_inversion``, ``unlearndiff``, ``p4d``.

Each entry gives the attack's config dataclass (paper defaults, every field documented) and its
``run(ctx, config) -> AttackResult``. :func:`run_attack` is the Python API behind
``t2i-unlearn attack NAME``; it writes an attack set that ``t2i-unlearn eval --attack`` replays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from t2i_unlearn.attacks.check import AttackPlan, check_attack
from t2i_unlearn.attacks.configs import AttackBudget, attack_config
from t2i_unlearn.attacks.registry import ATTACKS, Attack, get_attack

if TYPE_CHECKING:
    from t2i_unlearn.attacks.base import AttackContext, AttackResult
    from t2i_unlearn.attacks.runner import run_attack


def __getattr__(name: str) -> Any:
    # The torch-using parts load on first use, so that checking settings stays light.
    if name in ("AttackContext", "AttackResult"):
        from t2i_unlearn.attacks import base

        return getattr(base, name)
    if name == "run_attack":
        from t2i_unlearn.attacks.runner import run_attack

        return run_attack
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ATTACKS", "Attack", "AttackBudget", "AttackContext", "AttackPlan", "AttackResult", "attack_config", "check_attack", "get_attack", "run_attack"]
