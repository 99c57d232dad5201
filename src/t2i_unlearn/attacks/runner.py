"""``run_attack``: the Python API behind ``t2i-unlearn attack NAME`` (see :mod:`t2i_unlearn.attacks.base`).

It sits above the registry and the attacks (it looks the attack up by name), so that no attack
module and no shared helper in ``base`` has to import the registry back.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from t2i_unlearn.attacks.base import (
    ATTACK_SET_FILE,
    EMBEDDINGS_FILE,
    AttackBudget,
    AttackContext,
    BudgetTracker,
    measure_success,
)
from t2i_unlearn.attacks.check import check_attack
from t2i_unlearn.attacks.registry import get_attack
from t2i_unlearn.attacks.text import require_text_encoder
from t2i_unlearn.errors import UserError

logger = logging.getLogger(__name__)


def run_attack(
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
    device: str = "cpu",
    progress: bool = False,
    command: str = "python API",
    overwrite: bool = False,
) -> Path:
    """Run attack ``name`` against ``model`` (+ ``lora``) for ``concept`` and write the attack-set folder ``out``.

    ``prompts`` are the source prompts to start from (default: the concept's safe prompts, which never
    name it). ``settings`` override the attack's config fields. Returns ``out/attack_set.json``.
    Every input is checked first (:func:`~t2i_unlearn.attacks.check_attack`); ``out`` follows the
    output rule: an attack set made with the same request is reused, anything else non-empty is
    refused unless ``overwrite``; the folder appears only when the set is complete.
    Raises :class:`UserError` for a bad concept, a zero budget, or a model without a text encoder.
    """
    from safetensors.torch import save_file

    from t2i_unlearn.evaluation.prompts import write_attack_set
    from t2i_unlearn.judges import build_judge
    from t2i_unlearn.models import load_pipeline
    from t2i_unlearn.utils.io import DONE, atomic_write_json, make_manifest

    budget = budget or AttackBudget()
    plan = check_attack(name, model, concept, out, lora, budget, seed, settings, prompts, images_per_prompt, base_model, overwrite)
    out = plan.claim.path
    if plan.claim.status == DONE:
        logger.info("%s already holds this attack set; reusing it", out)
        return out / ATTACK_SET_FILE
    attack, cfg, spec, sources = get_attack(name), plan.config, plan.concept, plan.sources
    loras = list(lora or [])
    torch.manual_seed(seed)
    pipe = load_pipeline(model, lora=loras or None, device=device)
    require_text_encoder(pipe, name)
    for module in (pipe.unet, pipe.text_encoder, pipe.vae):
        module.requires_grad_(False)
    judge = build_judge(spec.judge, model)
    tracker = BudgetTracker(budget)
    ctx = AttackContext(model, loras, spec, pipe, judge, budget, tracker, seed, device, sources, progress, base_model)
    logger.info("attack %s on %s (lora %s), concept %s, %d source prompts", name, model, loras, spec.name, len(sources))
    result = attack.run(ctx, cfg)
    used = tracker.used()
    if not result.prompts:
        raise UserError(f"{name} produced no prompts within the budget {dataclasses.asdict(budget)}; raise it")
    success = measure_success(ctx, result, images_per_prompt)
    settings_out = plan.request["settings"]
    with plan.claim.staged() as tmp:
        fields: dict[str, Any] = {"attack": attack.name, "concept": spec.name, "target_model": model, "target_lora": loras, "settings": settings_out}
        if result.embeddings:
            save_file({k: v.detach().cpu().contiguous().reshape(1, -1) for k, v in result.embeddings.items()}, str(tmp / EMBEDDINGS_FILE))
            fields["embeddings"] = {"file": EMBEDDINGS_FILE, "kind": "textual_inversion"}
        write_attack_set(tmp / ATTACK_SET_FILE, result.prompts, **fields)
        manifest = make_manifest(
            command,
            settings_out,
            inputs={"model": model, "lora": ", ".join(loras), "concept": spec.name, "base_model": base_model or ""},
            attack=name,
            budget_used=used,
            attack_success_rate=success["success_rate"],
            success=success,
            source_prompts=sources,
            info=result.info,
            artifact="attack_set",
            request=plan.request,
        )
        atomic_write_json(tmp / "manifest.json", manifest)
    logger.info("attack %s: ASR %.3f, used %s", name, success["success_rate"], used)
    return out / ATTACK_SET_FILE
