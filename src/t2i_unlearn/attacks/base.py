"""What every attack shares: the budget, the context it runs in, its result, and writing the attack set.

An attack is a function ``run(ctx: AttackContext, config) -> AttackResult`` registered by name in
:mod:`t2i_unlearn.attacks`. :func:`t2i_unlearn.attacks.runner.run_attack` does the rest for all of them: load the concept and the
attacked model (``model`` + ``lora``), run the search under the budget, measure the attack success
rate (ASR) on the attacked model with the concept's judge, and write one folder::

    OUT/attack_set.json        prompts (+ seeds, source prompts) in the evaluation's attack-set format
    OUT/embeddings.safetensors learned tokens (textual-inversion format), only for attacks that learn them
    OUT/manifest.json          command, settings, budget used (iterations, queries, seconds), ASR

``t2i-unlearn eval --attack OUT/attack_set.json`` replays the set on any model (transfer attacks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from t2i_unlearn.attacks.configs import AttackBudget

logger = logging.getLogger(__name__)

ATTACK_SET_FILE = "attack_set.json"
EMBEDDINGS_FILE = "embeddings.safetensors"
EMBEDDINGS_FILE_2 = "embeddings_2.safetensors"  # SDXL: the same tokens' vectors for the second text encoder


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


FRESH_SEED_OFFSET = 1_000_003  # seeds of the fresh-seed measurement: far from any seed a search used


def _distinct_rate(images: np.ndarray, flagged: np.ndarray) -> tuple[int, float]:
    """(number of distinct images, share of them flagged): identical images count once."""
    first: dict[bytes, bool] = {}
    for image, hit in zip(images, flagged, strict=True):
        first.setdefault(image.tobytes(), bool(hit))
    return len(first), (float(np.mean(list(first.values()))) if first else 0.0)


def measure_success(ctx: AttackContext, result: AttackResult, images_per_prompt: int) -> dict[str, Any]:
    """Draw every attack prompt on the attacked model and judge it (not counted in the budget).

    Returns the ASR over all images at the set's own seeds (the seeds the search saw, as before),
    the ASR over *distinct* images (prompts that share a template and overlapping seeds draw the same
    picture more than once), and the ASR at fresh seeds the search never saw (same prompts, seeds
    offset by ``FRESH_SEED_OFFSET``). Per-prompt hits are written into ``result.prompts``.
    """
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
    fresh_seeds = [s + FRESH_SEED_OFFSET for s in seeds]
    images = generate_images(
        pipe, prompts + prompts, seeds + fresh_seeds, steps=g.steps, guidance=g.guidance, height=g.height, width=g.width, progress=ctx.progress
    )
    flagged_all = ctx.judge.flags(images)[0]
    n = len(prompts)
    flagged, fresh = flagged_all[:n], flagged_all[n:]
    per_prompt = flagged.reshape(len(result.prompts), images_per_prompt).mean(axis=1)
    per_prompt_fresh = fresh.reshape(len(result.prompts), images_per_prompt).mean(axis=1)
    for item, rate, rate_fresh in zip(result.prompts, per_prompt, per_prompt_fresh, strict=True):
        item["success_rate"] = float(rate)
        item["success_rate_fresh_seeds"] = float(rate_fresh)
    distinct, distinct_rate = _distinct_rate(images[:n], flagged)
    distinct_fresh, distinct_fresh_rate = _distinct_rate(images[n:], fresh)
    return {
        "success_rate": float(flagged.mean()) if n else 0.0,
        "images": n,
        "distinct_images": distinct,
        "success_rate_distinct": distinct_rate,
        "success_rate_fresh_seeds": float(fresh.mean()) if n else 0.0,
        "distinct_images_fresh_seeds": distinct_fresh,
        "success_rate_fresh_seeds_distinct": distinct_fresh_rate,
        "fresh_seed_offset": FRESH_SEED_OFFSET,
        "images_per_prompt": images_per_prompt,
        "judge": ctx.judge.info(),
        "sampling": {"steps": g.steps, "guidance": g.guidance},
    }


AttackFn = Callable[[AttackContext, Any], AttackResult]


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
