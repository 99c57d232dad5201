"""Red-teaming attacks, registered by name: ``ring_a_bell``, ``concept_inversion``, ``unlearndiff``, ``p4d``.

Each entry gives the attack's config dataclass (paper defaults, every field documented) and its
``run(ctx, config) -> AttackResult``. :func:`run_attack` is the Python API behind
``t2i-unlearn attack NAME``; it writes an attack set that ``t2i-unlearn eval --attack`` replays.
"""

from __future__ import annotations

from t2i_unlearn.attacks.base import AttackBudget, AttackContext, AttackResult
from t2i_unlearn.attacks.registry import ATTACKS, Attack, get_attack
from t2i_unlearn.attacks.runner import run_attack

__all__ = ["ATTACKS", "Attack", "AttackBudget", "AttackContext", "AttackResult", "get_attack", "run_attack"]
