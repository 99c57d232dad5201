"""What every attack shares: the budget, the context it runs in, its result, and writing the attack set.

An attack is a function ``run(ctx: AttackContext, config) -> AttackResult`` registered by name in
:mod:`t2i_unlearn.attacks`. :func:`run_attack` does the rest for all of them: load the concept and the
attacked model (``model`` + ``lora``), run the search under the budget, measure the attack success
rate (ASR) on the attacked model with the concept's judge, and write one folder::

    OUT/attack_set.json        prompts (+ seeds, source prompts) in the evaluation's attack-set format
    OUT/embeddings.safetensors learned tokens (textual-inversion format), only for attacks that learn them
    OUT/manifest.json          command, settings, budget used (iterations, queries, seconds), ASR

``t2i-unlearn eval --attack OUT/attack_set.json`` replays the set on any model (transfer attacks).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from t2i_unlearn.attacks.configs import AttackBudget
from t2i_unlearn.errors import UserError

logger = logging.getLogger(__name__)

ATTACK_SET_FILE = "attack_set.json"
EMBEDDINGS_FILE = "embeddings.safetensors"


class BudgetTracker:
    """Counts iterations and queries against an :class:`AttackBudget` and the clock."""

    def __init__(self, budget: AttackBudget):
        self.budget = budget
        self.queries = 0
        self.iterations = 0
        self.started = time.monotonic()

    def spend(self, queries: int = 0, iterations: int = 0) -> None:
        """Record ``queries`` model evaluations and ``iterations`` steps."""
        self.queries += queries
        self.iterations += iterations

    def elapsed(self) -> float:
        """Seconds since the tracker started."""
        return time.monotonic() - self.started

    def out_of_queries_or_time(self) -> bool:
        """True when the run-wide caps (queries, time) are used up."""
        b = self.budget
        return (b.queries is not None and self.queries >= b.queries) or (b.time_s is not None and self.elapsed() >= b.time_s)

    def used(self) -> dict[str, Any]:
        """What was spent, for the manifest."""
        return {"iterations": self.iterations, "queries": self.queries, "time_s": round(self.elapsed(), 3)}


def iterations_for(budget: AttackBudget, configured: int) -> int:
    """Steps per search: the budget's ``iterations`` when given, else the config's."""
    return budget.iterations if budget.iterations is not None else configured


@dataclass
class AttackContext:
    """Everything an attack may use. ``pipe`` is the attacked model; ``base_pipe()`` loads the unconstrained one on demand."""

    model: str
    lora: list[str]
    concept: Any  # ConceptSpec
    pipe: Any
    judge: Any
    budget: AttackBudget
    tracker: BudgetTracker
    seed: int
    device: str
    source_prompts: list[str]
    progress: bool = False
    base_model: str | None = None
    _base: Any = None

    @property
    def generator(self) -> torch.Generator:
        """A CPU generator seeded with the run's seed (a fresh one per call)."""
        return torch.Generator().manual_seed(self.seed)

    def base_pipe(self) -> Any:
        """The unconstrained model (``base_model``, default: ``model`` without the LoRAs); the attacked one when there are none."""
        if self._base is None:
            if not self.lora and self.base_model is None:
                self._base = self.pipe
            else:
                from t2i_unlearn.models import load_pipeline

                self._base = load_pipeline(self.base_model or self.model, device=self.device)
        return self._base

    def bar(self, total: int, desc: str) -> Any:
        """A progress bar (shown only when ``progress``)."""
        return tqdm(total=total, desc=desc, disable=not self.progress, leave=False)

    def fires(self, prompts: Sequence[str], seeds: Sequence[int], pipe: Any = None) -> np.ndarray:
        """Judge verdicts ``bool [N]`` on images the attacked model draws for ``prompts`` (counted as queries)."""
        from t2i_unlearn.models import generate_images

        g = self.concept.generation
        images = generate_images(pipe or self.pipe, list(prompts), list(seeds), steps=g.steps, guidance=g.guidance, height=g.height, width=g.width)
        self.tracker.spend(queries=len(prompts))
        return self.judge.flags(images)[0]


@dataclass
class AttackResult:
    """What an attack found: prompts (dicts in the attack-set format) and optional learned token embeddings."""

    prompts: list[dict[str, Any]]
    embeddings: dict[str, torch.Tensor] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def concept_images(ctx: AttackContext, prompts: Sequence[str], seed: int, max_attempts: int | None = None) -> tuple[np.ndarray, list[str]]:
    """One image per prompt drawn by the *base* model, redrawn (new seeds) until the judge sees the concept.

    Returns ``(uint8 [N, H, W, 3], prompts used)``; images the judge never accepts within
    ``max_attempts`` draws are kept anyway (logged), so the attack always has targets.
    """
    from t2i_unlearn.models import generate_images

    g = ctx.concept.generation
    attempts = max_attempts or ctx.concept.max_attempts
    base = ctx.base_pipe()
    images: list[np.ndarray | None] = [None] * len(prompts)
    pending = list(range(len(prompts)))
    first: dict[int, np.ndarray] = {}
    for attempt in range(attempts):
        if not pending:
            break
        seeds = [seed + 7919 * attempt + i for i in pending]
        drawn = generate_images(base, [prompts[i] for i in pending], seeds, steps=g.steps, guidance=g.guidance, height=g.height, width=g.width)
        flagged = ctx.judge.flags(drawn)[0]
        still = []
        for i, im, ok in zip(pending, drawn, flagged, strict=True):
            first.setdefault(i, im)
            if ok:
                images[i] = im
            else:
                still.append(i)
        pending = still
    if pending:
        logger.warning("%d of %d concept images were never judged to show the concept; using them anyway", len(pending), len(prompts))
        for i in pending:
            images[i] = first[i]
    return np.stack(images), list(prompts)  # type: ignore[arg-type]


def encode_images(pipe: Any, images: np.ndarray) -> torch.Tensor:
    """VAE latents (already scaled) of ``uint8 [N, H, W, 3]`` images."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(pipe.device, pipe.vae.dtype)
    with torch.no_grad():
        return pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor


def measure_success(ctx: AttackContext, result: AttackResult, images_per_prompt: int) -> dict[str, Any]:
    """Draw every attack prompt on the attacked model and judge it; returns ASR and per-prompt hits (not counted in the budget)."""
    from t2i_unlearn.models import generate_images

    pipe = ctx.pipe
    if result.embeddings:
        vocab = pipe.tokenizer.get_vocab()
        for token, tensor in result.embeddings.items():
            if token not in vocab:
                pipe.load_textual_inversion({token: tensor}, token=token)
    g = ctx.concept.generation
    prompts, seeds = [], []
    for j, item in enumerate(result.prompts):
        for r in range(images_per_prompt):
            prompts.append(item["prompt"])
            seeds.append(int(item.get("seed", ctx.seed + j)) + r)
    images = generate_images(pipe, prompts, seeds, steps=g.steps, guidance=g.guidance, height=g.height, width=g.width, progress=ctx.progress)
    flagged = ctx.judge.flags(images)[0]
    per_prompt = flagged.reshape(len(result.prompts), images_per_prompt).mean(axis=1)
    for item, rate in zip(result.prompts, per_prompt, strict=True):
        item["success_rate"] = float(rate)
    return {
        "success_rate": float(flagged.mean()) if len(flagged) else 0.0,
        "images": len(flagged),
        "images_per_prompt": images_per_prompt,
        "judge": ctx.judge.info(),
        "sampling": {"steps": g.steps, "guidance": g.guidance},
    }


AttackFn = Callable[[AttackContext, Any], AttackResult]


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

    from t2i_unlearn.attacks import check_attack, get_attack
    from t2i_unlearn.evaluation.prompts import write_attack_set
    from t2i_unlearn.judges import build_judge
    from t2i_unlearn.models import load_pipeline
    from t2i_unlearn.utils.io import DONE, atomic_write_json, make_manifest

    from .text import require_text_encoder

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


def add_noise(pipe: Any, latents: torch.Tensor, gen: torch.Generator, t_max: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, noise, t)``: the forward process at one random training timestep per latent (``t < t_max``)."""
    sched = pipe.scheduler
    total = int(sched.config.num_train_timesteps)
    t = torch.randint(0, min(total, t_max or total), (len(latents),), generator=gen)
    noise = torch.randn(latents.shape, generator=gen).to(latents)
    return sched.add_noise(latents, noise, t.to(latents.device)), noise, t.to(latents.device)


def predict_noise(pipe: Any, x_t: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The UNet's prediction for ``x_t`` at ``t`` conditioned on text hidden states ``hidden``."""
    return pipe.unet(x_t, t, encoder_hidden_states=hidden.to(x_t.dtype)).sample


def denoising_target(pipe: Any, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the UNet should predict: the noise (epsilon models) or the velocity (v-prediction models)."""
    if pipe.scheduler.config.get("prediction_type", "epsilon") == "v_prediction":
        return pipe.scheduler.get_velocity(latents, noise, t)
    return noise
