"""Dark Miner's settings: one dataclass field per setting, with its type, default and help.

The CLI derives the flags of ``train darkminer`` from these fields; a config file or preset
(``methods/presets/darkminer_<name>.yaml``) sets any of them by field name. Where the paper gives
no number, the default is our choice; ``docs/darkminer.md`` says which is which and why.
Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods.config import load_method_config

INITS = ("prompt", "random")
MINED_DIR = "mined"
POOL_DIR = "pool"
# What a Dark Miner --out holds besides its result (manifest, LoRA, attack set) while it runs or after it stopped.
RUN_BOOKKEEPING = ("checkpoints", "logs.jsonl", "tensorboard", "darkminer_config.json", MINED_DIR, POOL_DIR)
CROSS_ATTENTION_KV = ["attn2.to_k", "attn2.to_v"]


@dataclass
class DarkMinerConfig:
    """Every Dark Miner setting: the loop, the three stages (mine, verify, circumvent) and the adapter."""

    # the loop
    rounds: int = field(default=10, metadata={"help": "Round budget: at most this many mine -> verify -> circumvent rounds."})
    patience: int = field(
        default=2,
        metadata={"help": "Stop early once this many consecutive rounds mine no embedding that passes verification."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of every draw (initial embeddings, LoRA init, noise, timesteps, verification seeds)."})

    # mining
    num_tokens: int = field(default=8, metadata={"help": "K: number of token embeddings in a mined conditioning c (between BOS and EOS)."})
    init: str = field(
        default="prompt",
        metadata={
            "help": (
                "Initial c: ``prompt`` (the token embeddings of one of the concept's unsafe prompts, cycled to K tokens; "
                "prompt r mod n in round r) or ``random``."
            )
        },
    )
    mine_steps: int = field(default=200, metadata={"help": "Adam steps on c per mining stage."})
    mine_lr: float = field(default=5e-3, metadata={"help": "Adam learning rate of the mined token embeddings."})
    mine_batch_size: int = field(default=4, metadata={"help": "Pool images per mining step."})
    pool_size: int = field(
        default=32,
        metadata={"help": "Images in the concept pool drawn with the base model when no --pool folder is given (judge-filtered)."},
    )

    # verifying
    threshold: float = field(default=0.3, metadata={"help": "Circumvent only when the verification score s(c) reaches this value."})
    verify_images: int = field(default=4, metadata={"help": "Images generated with c and with the reference prompt (same seeds) per verification."})
    reference_prompt: str | None = field(default=None, metadata={"help": "Reference prompt of x_r in s(c); None = the anchor prompt."})
    encoder: str = field(
        default="auto",
        metadata={
            "help": (
                "Image encoder E of s(c): ``toy`` (the toy world's feature network), a CLIP model directory or hub id, "
                "or ``auto`` (toy for toy concepts, else openai/clip-vit-large-patch14)."
            )
        },
    )

    # circumventing
    anchor_prompt: str = field(default="", metadata={"help": 'Anchor c0: eps(x_t | c) is pulled to the frozen model\'s eps0(x_t | c0). "" = the empty prompt.'})
    circumvent_steps: int = field(default=100, metadata={"help": "AdamW steps on the LoRA per circumventing stage (a fresh optimiser each stage)."})
    circumvent_lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate of the LoRA."})
    circumvent_batch_size: int = field(default=4, metadata={"help": "Noised pool images per circumventing step (each with one mined embedding of the set)."})
    anchor_weight: float = field(default=1.0, metadata={"help": "Weight of the preservation term on the anchor: ||eps(x_t|c0) - eps0(x_t|c0)||^2."})
    empty_weight: float = field(default=1.0, metadata={"help": 'Weight of the preservation term on the empty prompt: ||eps(x_t|"") - eps0(x_t|"")||^2.'})
    negative_weight: float = field(default=1.0, metadata={"help": "Weight of the preservation term on -c: ||eps(x_t|-c) - eps0(x_t|-c)||^2."})
    t_max: int = field(default=1000, metadata={"help": "Timesteps of mining and circumventing are drawn uniformly from [0, t_max)."})

    # adapter
    rank: int = field(default=8, metadata={"help": "LoRA rank."})
    alpha: float = field(default=8.0, metadata={"help": "LoRA alpha (scale alpha / rank)."})
    init_lora_weights: str = field(default="gaussian", metadata={"help": "peft init of the LoRA: ``gaussian`` or ``default``; either starts as the identity."})
    target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Module names to adapt, each matching the modules whose name ends with it (a single name in a config file is a one-item "
            "list); None = UNet cross-attention key and value projections (attn2.to_k, attn2.to_v).",
            "flag": "--target",
        },
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations in the backward pass (less memory, slower)."})

    # bookkeeping
    keep_checkpoints: int = field(default=2, metadata={"help": "How many of the latest stage checkpoints to keep."})
    report_to: list[str] = field(
        default_factory=lambda: ["jsonl", "tensorboard"],
        metadata={"help": "Where logs go: ``jsonl`` (always written), ``tensorboard`` (if installed).", "flag": "--report-to"},
    )
    stop_after_stage: int | None = field(
        default=None,
        metadata={"help": "Stop (as if interrupted) after this many stages, each stage checkpointed; for tests and staged runs. None = run to the end."},
    )

    def validate(self) -> None:
        """Raise :class:`UserError` for settings that cannot work."""
        checks = [
            (self.rounds >= 1, "rounds must be at least 1"),
            (self.patience >= 1, "patience must be at least 1"),
            (1 <= self.num_tokens <= 75, "num_tokens must be between 1 and 75"),
            (self.init in INITS, f"init must be one of {', '.join(INITS)}"),
            (self.mine_steps >= 1 and self.circumvent_steps >= 1, "mine_steps and circumvent_steps must be at least 1"),
            (self.mine_lr > 0 and self.circumvent_lr > 0, "mine_lr and circumvent_lr must be positive"),
            (self.mine_batch_size >= 1 and self.circumvent_batch_size >= 1, "batch sizes must be at least 1"),
            (self.pool_size >= 1, "pool_size must be at least 1"),
            (-1.0 <= self.threshold <= 1.0, "threshold must be between -1 and 1 (a mean cosine)"),
            (self.verify_images >= 1, "verify_images must be at least 1"),
            (min(self.anchor_weight, self.empty_weight, self.negative_weight) >= 0, "preservation weights must not be negative"),
            (self.t_max >= 1, "t_max must be at least 1"),
            (self.rank >= 1, "rank must be at least 1"),
            (self.alpha > 0, "alpha must be positive"),
            (self.init_lora_weights in ("gaussian", "default"), "init_lora_weights must be gaussian or default"),
            (not self.target_modules or all(m.strip() for m in self.target_modules), "target modules must not be empty names"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be at least 1"),
            (set(self.report_to) <= {"jsonl", "tensorboard"}, "report_to takes jsonl and tensorboard"),
            (self.stop_after_stage is None or self.stop_after_stage >= 1, "stop_after_stage must be at least 1"),
            (bool(self.encoder.strip()), "encoder must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"Dark Miner config: {message}")

    @property
    def targets(self) -> list[str]:
        """The LoRA target modules in use."""
        return list(self.target_modules or CROSS_ATTENTION_KV)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return dataclasses.asdict(self)


def load_config(path_or_preset: str | Path | None, overrides: dict[str, Any] | None = None) -> DarkMinerConfig:
    """Defaults, then a preset name (``toy``, ``nudity``) or YAML file, then ``overrides`` (None values ignored)."""
    return load_method_config(DarkMinerConfig, "darkminer", path_or_preset, overrides)
