"""DUO's settings: one dataclass field per setting, with its type, default (the authors' nudity run) and help.

The CLI derives the flags of ``train duo`` from these fields (``--beta``, ``--max-steps`` ...); a
config file or preset (``methods/presets/duo_<name>.yaml``) sets any of them by field name. This
module imports nothing heavy, so that settings are checked before torch is loaded.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods.config import config_from_dict as method_config_from_dict


@dataclass
class DUOConfig:
    """Every DUO training setting, defaulted to the authors' SD 1.4 nudity run.

    Effective values: ``lr = base_lr * 100 / beta`` and ``prior_weight = base_lambda * beta / 100``
    (the authors' parameterisation), unless ``lr`` / ``prior_weight`` are set directly.
    """

    # objective
    beta: float = field(default=500.0, metadata={"help": "Preference strength beta of -log sigmoid(-beta * Delta). Authors: 500 (nudity), 1000 (violence)."})
    base_lr: float = field(
        default=3e-4,
        metadata={
            "help": "Learning rate before the beta parameterisation; effective lr = base_lr * 100 / beta (6e-5 at beta 500).",
        },
    )
    base_lambda: float = field(
        default=1e6,
        metadata={
            "help": "Prior weight before the parameterisation; effective lambda = base_lambda * beta / 100 (5e6 at beta 500).",
        },
    )
    lr: float | None = field(default=None, metadata={"help": "Effective learning rate; overrides base_lr when set."})
    prior_weight: float | None = field(default=None, metadata={"help": "Effective lambda; overrides base_lambda when set."})
    t_max: int = field(default=750, metadata={"help": "Timesteps are drawn uniformly from [0, t_max) (SD 1.x/2.x, SDXL)."})
    independent_timesteps: bool = field(
        default=True,
        metadata={
            "help": "Draw t+ and t- independently (authors); False shares one timestep per pair (Diffusion-DPO).",
            "flag": "--independent-timesteps/--shared-timesteps",
        },
    )
    prior_timestep: int | None = field(
        default=None,
        metadata={
            "help": "Timestep of the output-preserving input; None = the last one (999 for 1000-step schedules).",
        },
    )
    conditioning: str = field(
        default="empty",
        metadata={
            "help": '``empty``: every image is conditioned on "" (authors); ``prompt``: on its pair\'s unsafe prompt.',
        },
    )
    flow_u_min: float = field(
        default=0.001,
        metadata={
            "help": "SD3 (rectified flow): noise levels u ~ U[flow_u_min, flow_u_max] per image; the prior term uses u = 1.",
        },
    )
    flow_u_max: float = field(default=0.75, metadata={"help": "See flow_u_min."})
    preserve_weight: float = field(
        default=0.0,
        metadata={
            "help": (
                "Weight of the optional preservation term (our extension; 0 = the authors' objective): mean squared difference "
                "between policy and reference predictions on the pair folder's preserve images (the concept spec's ``preserve``"
                " prompts, e.g. a close concept), noised at t ~ U[0, t_max) and conditioned like the pairs (empty prompt, or "
                "the image's own prompt with ``conditioning: prompt``)."
            ),
        },
    )
    sample_latents: bool = field(
        default=True,
        metadata={
            "help": "Draw z from the VAE's latent distribution at every step (authors: a fresh VAE sample); False uses its mean.",
            "flag": "--sample-latents/--mean-latents",
        },
    )

    # mined pairs (our extension, issue 12; off by default): see methods/duo_mining.py and docs/duo.md
    mine_rounds: int = field(
        default=0,
        metadata={
            "help": (
                "Rounds of mined pairs (0 = off): every mine_every steps, Dark Miner's mining stage finds an embedding that makes "
                "the current model (base + this LoRA) denoise the pair folder's unsafe images; images drawn from it become new "
                "pairs (SDEdit twins as 'data pairs' makes them). Rounds that would fall at or after max_steps are not run."
            ),
        },
    )
    mine_every: int = field(default=100, metadata={"help": "Training steps between mining rounds: round r (1, 2 ...) runs after step r * mine_every."})
    mined_pairs_per_round: int = field(
        default=8,
        metadata={
            "help": (
                "Images drawn from each round's mined embedding by the current model (the concept's sampler settings); each one "
                "kept (see mine_judge_filter) whose SDEdit twin the judge clears becomes a pair."
            ),
        },
    )
    mine_judge_filter: bool = field(
        default=True,
        metadata={
            "help": "Keep only the mined embedding's images that the concept judge flags (off: keep them all).",
            "flag": "--mine-judge-filter/--no-mine-judge-filter",
        },
    )
    mine_num_tokens: int = field(default=8, metadata={"help": "K: token embeddings of a mined conditioning (per text encoder), as Dark Miner's num_tokens."})
    mine_steps: int = field(default=100, metadata={"help": "Adam steps of each mining stage (only the mined embedding is trained)."})
    mine_lr: float = field(default=5e-3, metadata={"help": "Adam learning rate of the mined token embeddings."})
    mine_batch_size: int = field(default=4, metadata={"help": "Pool images (the pair folder's unsafe images) per mining step."})

    # adapter
    rank: int = field(default=32, metadata={"help": "LoRA rank."})
    alpha: float = field(default=32.0, metadata={"help": "LoRA alpha (scale alpha / rank = 1)."})
    init_lora_weights: str = field(
        default="gaussian",
        metadata={
            "help": (
                "peft init of the LoRA: ``gaussian`` (authors): A ~ N(0, 1/rank), B = 0; ``default``: peft's Kaiming-uniform A,"
                " B = 0. Either starts as the identity, so the frozen base is the reference."
            ),
        },
    )
    target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": (
                "Module names to adapt, each matching the modules whose name ends with it (peft's list form, not a regex; a single name"
                " in a config file is a one-item list); None = the family's default (UNet self-attention q/k/v/out; every SD3 attention"
                " projection)."
            ),
            "flag": "--target",
        },
    )

    # optimisation
    max_steps: int = field(default=1000, metadata={"help": "Optimiser steps. Authors: 1000 (nudity), 500 (violence)."})
    batch_size: int = field(default=4, metadata={"help": "Global batch in pairs per step, split over processes. Authors: 4 (1 per GPU x 4 GPUs)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clip."})
    lr_scheduler: str = field(default="constant", metadata={"help": "Only ``constant`` (the authors' choice)."})
    seed: int = field(default=42, metadata={"help": "Seed of the LoRA init, the pair order and every noise/timestep draw."})

    # speed and bookkeeping
    mixed_precision: str = field(default="fp16", metadata={"help": "``fp16`` (authors), ``bf16`` or ``no``; applies on GPU only (CPU always trains in fp32)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations in the backward pass (less memory, ~30% slower)."})
    checkpoint_every: int = field(default=100, metadata={"help": "Write a resumable checkpoint every this many steps (and at the end)."})
    keep_checkpoints: int = field(default=2, metadata={"help": "How many of the latest checkpoints to keep."})
    log_every: int = field(default=1, metadata={"help": "Write a log line every this many steps."})
    report_to: list[str] = field(
        default_factory=lambda: ["jsonl", "tensorboard"],
        metadata={
            "help": ("Where logs go: ``jsonl`` (always written), ``tensorboard`` (if installed), ``wandb`` (if installed; never required)."),
            "flag": "--report-to",
        },
    )

    @property
    def effective_lr(self) -> float:
        """The learning rate the optimiser uses."""
        return self.lr if self.lr is not None else self.base_lr * 100.0 / self.beta

    @property
    def effective_lambda(self) -> float:
        """The weight of the output-preserving term."""
        return self.prior_weight if self.prior_weight is not None else self.base_lambda * self.beta / 100.0

    def validate(self) -> None:
        """Raise :class:`UserError` for settings that cannot work."""
        if not self.beta > 0:
            raise UserError("DUO config: beta must be positive")
        checks = [
            (self.max_steps >= 1, "max_steps must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.rank >= 1, "rank must be at least 1"),
            (self.t_max >= 1, "t_max must be at least 1"),
            (0 < self.flow_u_min < self.flow_u_max <= 1, "need 0 < flow_u_min < flow_u_max <= 1"),
            (self.conditioning in ("empty", "prompt"), "conditioning must be empty or prompt"),
            (self.lr_scheduler == "constant", "only the constant lr_scheduler is implemented"),
            (self.init_lora_weights in ("gaussian", "default"), "init_lora_weights must be gaussian or default"),
            (self.mixed_precision in ("no", "fp16", "bf16"), "mixed_precision must be no, fp16 or bf16"),
            (self.checkpoint_every >= 1 and self.log_every >= 1, "checkpoint_every and log_every must be at least 1"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be at least 1"),
            (self.effective_lr > 0, "the learning rate must be positive"),
            (math.isfinite(self.effective_lr) and math.isfinite(self.effective_lambda), "the learning rate and prior weight must be finite"),
            (self.preserve_weight >= 0, "preserve_weight must not be negative"),
            (self.alpha > 0, "alpha must be positive"),
            (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "adam_beta1 and adam_beta2 must be in [0, 1)"),
            (self.adam_epsilon > 0, "adam_epsilon must be positive"),
            (self.weight_decay >= 0, "weight_decay must not be negative"),
            (self.max_grad_norm > 0, "max_grad_norm must be positive"),
            (self.effective_lambda >= 0, "the prior weight must not be negative"),
            (self.prior_timestep is None or self.prior_timestep >= 0, "prior_timestep must not be negative"),
            (self.mine_rounds >= 0, "mine_rounds must not be negative"),
            (self.mine_every >= 1 and self.mined_pairs_per_round >= 1, "mine_every and mined_pairs_per_round must be at least 1"),
            (1 <= self.mine_num_tokens <= 75, "mine_num_tokens must be between 1 and 75"),
            (self.mine_steps >= 1 and self.mine_batch_size >= 1, "mine_steps and mine_batch_size must be at least 1"),
            (self.mine_lr > 0, "mine_lr must be positive"),
            (not self.target_modules or all(m.strip() for m in self.target_modules), "target modules must not be empty names"),
            (set(self.report_to) <= {"jsonl", "tensorboard", "wandb"}, "report_to takes jsonl, tensorboard and wandb"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"DUO config: {message}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (YAML/JSON-serialisable)."""
        return dataclasses.asdict(self)

    def mining_steps(self) -> list[int]:
        """The steps after which a mining round runs: ``r * mine_every`` for r = 1 .. mine_rounds, below ``max_steps``."""
        return [r * self.mine_every for r in range(1, self.mine_rounds + 1) if r * self.mine_every < self.max_steps]


def config_from_dict(values: dict[str, Any], source: str = "config") -> DUOConfig:
    """A :class:`DUOConfig` from a mapping; unknown keys or bad types give :class:`UserError` (see :func:`methods.config.config_from_dict`)."""
    known = {f.name for f in dataclasses.fields(DUOConfig)}
    unknown = [k for k in values if k not in known]  # not sorted: YAML keys may mix types
    if unknown:
        raise UserError(f"{source}: unknown DUO setting {unknown[0]!r}")
    if values.get("mixed_precision") is False:  # YAML 1.1 reads an unquoted ``no`` as false
        values = {**values, "mixed_precision": "no"}
    return method_config_from_dict(DUOConfig, values, source)


def load_config(path_or_preset: str | Path | None, overrides: dict[str, Any] | None = None) -> DUOConfig:
    """Defaults, then a preset name (``nudity``, ``violence``, ``toy``) or YAML file, then ``overrides`` (None values ignored)."""
    from t2i_unlearn.methods.config import read_config_values

    values = read_config_values("duo", path_or_preset, overrides)
    return config_from_dict(values, str(path_or_preset or "settings"))
