"""Every input of an attack run checked without importing torch or loading a model."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2i_unlearn.attacks.configs import AttackBudget, attack_config
from t2i_unlearn.errors import UserError

if TYPE_CHECKING:
    from t2i_unlearn.utils.io import OutputClaim


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
    from t2i_unlearn.utils.validate import check_adapters, check_model_arg, check_not_empty

    key = name.replace("-", "_").lower()
    cfg = attack_config(key, settings)
    budget = budget or AttackBudget()
    if images_per_prompt < 1:
        raise UserError("images per prompt must be at least 1")
    if isinstance(concept, str):
        check_not_empty(concept, "--concept")
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
    check_adapters(loras)
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
