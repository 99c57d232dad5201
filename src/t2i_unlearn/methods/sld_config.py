"""SLD's settings (Schramowski et al., CVPR 2023): a diffusers preset, optional overrides of its values, the safety concept.

The CLI derives the flags of ``train sld`` from these fields. Nothing here imports torch (diffusers only
when a preset's values are read).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods.config import load_method_config

PRESETS = ("WEAK", "MEDIUM", "STRONG", "MAX")
SLD_KEYS = ("sld_guidance_scale", "sld_warmup_steps", "sld_threshold", "sld_momentum_scale", "sld_mom_beta")


def preset_values(preset: str) -> dict[str, float]:
    """diffusers' ``SafetyConfig.<preset>`` settings (``WEAK``, ``MEDIUM``, ``STRONG``, ``MAX``)."""
    try:  # diffusers >= 0.3x keeps SLD among its deprecated pipelines
        from diffusers.pipelines.deprecated.stable_diffusion_safe import SafetyConfig
    except ImportError:  # pragma: no cover - older diffusers
        from diffusers.pipelines.stable_diffusion_safe import SafetyConfig

    name = preset.upper()
    if name not in PRESETS:
        raise UserError(f"unknown SLD preset {preset!r}; presets: {', '.join(PRESETS)}")
    return dict(getattr(SafetyConfig, name))


@dataclass
class SLDConfig:
    """SLD settings: a diffusers preset, optional overrides of its five values, and the safety concept text."""

    preset: str = field(default="MEDIUM", metadata={"help": "``WEAK``, ``MEDIUM`` (the paper's default), ``STRONG`` or ``MAX`` (diffusers' ``SafetyConfig``)."})
    safety_concept: str | None = field(
        default=None,
        metadata={
            "help": "Text to steer away from; None = diffusers' default (the I2P categories: hate, ..., nudity, ..., cruelty).",
        },
    )
    sld_guidance_scale: float | None = field(default=None, metadata={"help": "Override of the preset's safety guidance scale (< 1 disables SLD)."})
    sld_warmup_steps: int | None = field(default=None, metadata={"help": "Override: sampling steps before safety guidance starts."})
    sld_threshold: float | None = field(default=None, metadata={"help": "Override: threshold of the element-wise mask, in [0, 1]."})
    sld_momentum_scale: float | None = field(default=None, metadata={"help": "Override: scale of the safety momentum."})
    sld_mom_beta: float | None = field(default=None, metadata={"help": "Override: how much of the previous momentum is kept, in [0, 1)."})

    def validate(self) -> None:
        """Raise :class:`UserError` for settings that cannot work."""
        if self.preset.upper() not in PRESETS:
            raise UserError(f"SLD config: preset must be one of {', '.join(PRESETS)}")
        if self.safety_concept is not None and not self.safety_concept.strip():
            raise UserError("SLD config: safety_concept must not be empty")
        # the ranges SLD's terms make sense in (diffusers' StableDiffusionPipelineSafe): a guidance scale, warm-up and
        # momentum scale that are not negative, a momentum kept from step to step (beta 1 would never update it); the
        # threshold is compared with the signed difference eps_p - eps_S, so any finite value is meaningful
        checks = [
            (self.sld_guidance_scale is None or self.sld_guidance_scale >= 0, "sld_guidance_scale must be >= 0"),
            (self.sld_warmup_steps is None or self.sld_warmup_steps >= 0, "sld_warmup_steps must be >= 0"),
            (self.sld_momentum_scale is None or self.sld_momentum_scale >= 0, "sld_momentum_scale must be >= 0"),
            (self.sld_mom_beta is None or 0 <= self.sld_mom_beta < 1, "sld_mom_beta must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"SLD config: {message}")

    def resolved(self) -> dict[str, float]:
        """The five ``sld_*`` call arguments: the preset's, with overrides applied."""
        values = preset_values(self.preset)
        for key in SLD_KEYS:
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        return values

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return dataclasses.asdict(self)


def load_config(path_or_preset: str | Path | None, overrides: dict[str, Any] | None = None) -> SLDConfig:
    """Defaults, then a preset name (``toy``) or YAML file, then ``overrides`` (None values ignored)."""
    return load_method_config(SLDConfig, "sld", path_or_preset, overrides)
