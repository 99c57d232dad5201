"""The attack registry: each attack by name, with its config class and ``run`` (loaded on first use)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from t2i_unlearn.attacks.configs import CONFIGS
from t2i_unlearn.errors import UserError

if TYPE_CHECKING:
    from t2i_unlearn.attacks.base import AttackResult


@dataclass(frozen=True)
class Attack:
    """A registered attack."""

    name: str
    config_class: type
    run: Callable[..., AttackResult]
    needs_base_model: bool
    description: str


def _ring_a_bell() -> Attack:
    from t2i_unlearn.attacks import ring_a_bell as m

    return Attack("ring_a_bell", CONFIGS["ring_a_bell"], m.run, False, "black-box: genetic search for hard prompts near prompt + eta * concept direction")


def _concept_inversion() -> Attack:
    from t2i_unlearn.attacks import concept_inversion as m

    return Attack("concept_inversion", CONFIGS["concept_inversion"], m.run, True, "white-box: textual inversion of a new token on base-model concept images")


def _unlearndiff() -> Attack:
    from t2i_unlearn.attacks import unlearndiff as m

    what = "white-box: k prefix tokens as relaxed one-hot so the model denoises like a concept image"
    return Attack("unlearndiff", CONFIGS["unlearndiff"], m.run, True, what)


def _p4d() -> Attack:
    from t2i_unlearn.attacks import p4d as m

    return Attack("p4d", CONFIGS["p4d"], m.run, True, "white-box: hard tokens whose noise prediction matches the base model's on the unsafe prompt")


# Entries are built lazily so that importing the registry stays cheap.
ATTACKS: dict[str, Callable[[], Attack]] = {
    "ring_a_bell": _ring_a_bell,
    "concept_inversion": _concept_inversion,
    "unlearndiff": _unlearndiff,
    "p4d": _p4d,
}


def get_attack(name: str) -> Attack:
    """The attack registered as ``name``; :class:`UserError` if there is none."""
    key = name.replace("-", "_").lower()
    if key not in ATTACKS:
        raise UserError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[key]()
