"""Red-teaming attacks, registered by name: ``ring_a_bell``, ``concept_inversion``, ``unlearndiff``, ``p4d``.

Each entry gives the attack's config dataclass (paper defaults, every field documented) and its
``run(ctx, config) -> AttackResult``. :func:`run_attack` is the Python API behind
``t2i-unlearn attack NAME``; it writes an attack set that ``t2i-unlearn eval --attack`` replays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2i_unlearn.attacks.configs import CONFIGS, AttackBudget, attack_config
from t2i_unlearn.errors import UserError

if TYPE_CHECKING:
    from t2i_unlearn.attacks.base import AttackResult
    from t2i_unlearn.utils.io import OutputClaim


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


@dataclass
class AttackPlan:
    """A checked attack request (see :func:`check_attack`): its config, concept, source prompts and output claim."""

    name: str
    config: Any
    concept: Any  # ConceptSpec
    sources: list[str]
    claim: OutputClaim
    request: dict[str, Any]


def check_attack(
    name: str,
    model: str,
    concept: str | Path | Any,
    out: str | Path,
    lora: Sequence[str] | None = None,
    budget: AttackBudget | None = None,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
    prompts: Sequence[str] | None = None,
    images_per_prompt: int = 1,
    base_model: str | None = None,
    overwrite: bool = False,
) -> AttackPlan:
    """Check every input of an attack run without importing torch or loading a model; :class:`UserError` if one is bad.

    Checks the attack name, its settings, the budget, the concept (a leaf with prompts and a judge),
    the source prompts, the model arguments, the LoRA paths and ``out`` (the output rule of
    :func:`~t2i_unlearn.utils.io.claim_output`: an attack set made with the same request is reused).
    """
    from t2i_unlearn.concepts import ConceptSpec, load_concept
    from t2i_unlearn.utils.io import claim_output, manifest_recogniser
    from t2i_unlearn.utils.validate import check_model_arg, check_paths_exist

    key = name.replace("-", "_").lower()
    cfg = attack_config(key, settings)
    budget = budget or AttackBudget()
    if images_per_prompt < 1:
        raise UserError("images per prompt must be at least 1")
    spec = concept if isinstance(concept, ConceptSpec) else load_concept(concept)
    if spec.sub_concepts:
        first = next(iter(spec.sub_concepts))
        raise UserError(f"concept {spec.name} has sub-concepts ({', '.join(spec.sub_concepts)}); attack one of them, e.g. {spec.name}/{first}")
    if not spec.prompts or spec.judge is None:
        raise UserError(f"concept {spec.name} has no prompts (or no judge); an attack needs both")
    sources = list(prompts) if prompts else [p.safe for p in spec.prompts]
    if any(not s.strip() for s in sources):
        raise UserError("source prompts must not be empty")
    check_model_arg(model)
    if base_model is not None:
        check_model_arg(base_model, "--base-model")
    loras = list(lora or [])
    check_paths_exist(loras, "LoRA")
    request = {
        "attack": key,
        "model": model,
        "lora": [str(Path(p).expanduser().resolve()) for p in loras],
        "base_model": base_model,
        "concept": spec.model_dump(mode="json"),
        "source_prompts": sources,
        "settings": {**dataclasses.asdict(cfg), "budget": dataclasses.asdict(budget), "seed": seed, "images_per_prompt": images_per_prompt},
    }
    claim = claim_output(out, "an attack set", manifest_recogniser("attack_set", request, "an attack set"), overwrite)
    return AttackPlan(key, cfg, spec, sources, claim, request)


def __getattr__(name: str) -> Any:
    # The torch-using parts load on first use, so that checking settings stays light.
    if name in ("AttackContext", "AttackResult", "run_attack"):
        from t2i_unlearn.attacks import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ATTACKS", "Attack", "AttackBudget", "AttackContext", "AttackPlan", "AttackResult", "attack_config", "check_attack", "get_attack", "run_attack"]
