"""UCE's settings (Gandikota et al., WACV 2024): one dataclass field per setting, defaulted to the authors' script.

The CLI derives the flags of ``train uce`` from these fields. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods.config import load_method_config

TOKEN_MODES = ("last", "last_to_end")


@dataclass
class UCEConfig:
    """Every UCE setting, defaulted to the authors' current script (``uce_sd_erase.py``)."""

    erase_prompts: list[str] | None = field(
        default=None,
        metadata={
            "help": 'Concepts to erase; None = the concept spec\'s distinct unsafe prompts (the paper erases words, e.g. "nudity").',
            "flag": "--erase",
        },
    )
    guide_prompts: list[str] | None = field(
        default=None,
        metadata={
            "help": (
                'Guide per erased prompt, or one for all (``[""]``: towards the empty prompt, the authors\' default); None = '
                "each unsafe prompt's paired safe prompt."
            ),
            "flag": "--guide",
        },
    )
    preserve_prompts: list[str] | None = field(
        default=None,
        metadata={
            "help": "Concepts whose projections are kept; None = the concept spec's distinct safe prompts; ``[]`` = none.",
            "flag": "--preserve",
        },
    )
    erase_scale: float = field(default=1.0, metadata={"help": "s_e, weight of the erase terms."})
    preserve_scale: float = field(default=1.0, metadata={"help": "s_p, weight of the preserve terms."})
    lamb: float = field(default=0.5, metadata={"help": "lambda, weight of staying close to the original projection."})
    tokens: str = field(
        default="last",
        metadata={
            "help": "Token embeddings per prompt: ``last`` (last word token) or ``last_to_end`` (it and every later position).",
        },
    )
    edit_keys: bool = field(default=True, metadata={"help": "Edit ``to_k`` as well as ``to_v`` (authors: both)."})
    lora_max_rank: int | None = field(default=None, metadata={"help": "Cap on the exported LoRA's rank (None = exact)."})

    def validate(self) -> None:
        """Raise :class:`UserError` for settings that cannot work."""
        checks = [
            (self.tokens in TOKEN_MODES, f"tokens must be one of {', '.join(TOKEN_MODES)}"),
            (self.lamb >= 0 and self.erase_scale >= 0 and self.preserve_scale >= 0, "lamb, erase_scale and preserve_scale must be >= 0"),
            (self.lamb > 0 or self.erase_scale > 0, "lamb and erase_scale cannot both be 0"),
            (self.erase_prompts is None or len(self.erase_prompts) > 0, "erase_prompts must not be empty (leave it out to use the concept's)"),
            (self.guide_prompts is None or len(self.guide_prompts) > 0, "guide_prompts must not be empty"),
            (all(p.strip() for p in [*(self.erase_prompts or []), *(self.preserve_prompts or [])]), "erase and preserve prompts must not be blank"),
            (self.lora_max_rank is None or self.lora_max_rank >= 1, "lora_max_rank must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"UCE config: {message}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return dataclasses.asdict(self)


def load_config(path_or_preset: str | Path | None, overrides: dict[str, Any] | None = None) -> UCEConfig:
    """Defaults, then a preset name (``toy``) or YAML file, then ``overrides`` (None values ignored)."""
    return load_method_config(UCEConfig, "uce", path_or_preset, overrides)
