"""ESD's settings (Gandikota et al., ICCV 2023): one dataclass field per setting, defaulted to the authors' script.

The CLI derives the flags of ``train esd`` from these fields. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods.config import load_method_config

TRAIN_METHODS = ("xattn", "noxattn", "selfattn", "full")


@dataclass
class ESDConfig:
    """Every ESD setting, defaulted to the authors' diffusers script (``esd_diffusers.py``)."""

    train_method: str = field(
        default="noxattn",
        metadata={
            "help": ("Parameter group: ``noxattn`` (ESD-u, the paper's choice for nudity and objects), ``xattn`` (ESD-x, styles), ``selfattn``, ``full``."),
        },
    )
    iterations: int = field(default=200, metadata={"help": "Optimiser steps (one sampled x_t each)."})
    lr: float = field(default=2e-5, metadata={"help": "Adam learning rate (the authors use plain Adam, no weight decay, constant rate)."})
    negative_guidance: float = field(default=1.0, metadata={"help": 'eta in the target eps0("") - eta (eps0(c) - eps0("")).'})
    ddim_steps: int = field(
        default=50,
        metadata={
            "help": "Length of the DDIM schedule that x_t is sampled on; k is drawn from [1, ddim_steps - 2] per iteration.",
        },
    )
    sample_guidance: float = field(default=3.0, metadata={"help": "Classifier-free guidance while sampling x_t (authors: 3)."})
    prompts: list[str] | None = field(
        default=None,
        metadata={
            "help": (
                'Concept prompts c, one drawn per iteration; None = the concept spec\'s distinct unsafe prompts (the paper erases one word, e.g. "nudity").'
            ),
            "flag": "--prompt",
        },
    )
    batch_size: int = field(default=1, metadata={"help": "x_t samples per iteration (authors: 1)."})
    height: int | None = field(default=None, metadata={"help": "Sampling height in pixels; None = the model's default."})
    width: int | None = field(default=None, metadata={"help": "Sampling width in pixels; None = the model's default."})
    seed: int = field(default=0, metadata={"help": "Seed of every draw (k, the prompt, the initial noise)."})
    train_biases: bool = field(
        default=True,
        metadata={
            "help": "Train the biases of the group too (authors: yes). False makes xattn/selfattn edits exact LoRAs.",
        },
    )
    lora_max_rank: int | None = field(
        default=None,
        metadata={
            "help": "For ``xattn``/``selfattn``: cap on the exported LoRA's rank (None = exact, the rank of each weight change).",
        },
    )
    log_every: int = field(default=10, metadata={"help": "Write a log line every this many iterations."})

    def validate(self) -> None:
        """Raise :class:`UserError` for settings that cannot work."""
        checks = [
            (self.train_method in TRAIN_METHODS, f"train_method must be one of {', '.join(TRAIN_METHODS)}"),
            (self.iterations >= 1, "iterations must be at least 1"),
            (self.lr > 0, "lr must be positive"),
            (self.ddim_steps >= 3, "ddim_steps must be at least 3"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.prompts is None or len(self.prompts) > 0, "prompts must not be empty (leave it out to use the concept's)"),
            (all(p.strip() for p in self.prompts or []), "prompts must not be blank"),
            (self.lora_max_rank is None or self.lora_max_rank >= 1, "lora_max_rank must be at least 1"),
            (self.log_every >= 1, "log_every must be at least 1"),
            (math.isfinite(self.negative_guidance), "negative_guidance must be a finite number"),
            (self.sample_guidance >= 0, "sample_guidance must not be negative"),
            (all(v is None or v >= 8 for v in (self.height, self.width)), "height and width must be at least 8 pixels"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"ESD config: {message}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return dataclasses.asdict(self)


def load_config(path_or_preset: str | Path | None, overrides: dict[str, Any] | None = None) -> ESDConfig:
    """Defaults, then a preset name (``toy``, ``nudity``) or YAML file, then ``overrides`` (None values ignored)."""
    return load_method_config(ESDConfig, "esd", path_or_preset, overrides)
