"""SLD: Safe Latent Diffusion (Schramowski et al., CVPR 2023), an inference-time reference point.

SLD changes no weight. At every sampling step after a warm-up it adds a third noise prediction, for
a *safety concept* text s, and steers away from it where the prompt's prediction is close to it:

    g_text = eps(x, p) - eps(x, "")
    g_safe = mu * (eps(x, s) - eps(x, "")),   mu = min(1, sld_scale |eps(x, p) - eps(x, s)|) where eps(x, p) - eps(x, s) < threshold, else 0
    eps    = eps(x, "") + w * (g_text - g_safe - momentum)       (with momentum over steps)

diffusers ships it as ``StableDiffusionPipelineSafe`` (SD 1.x/2.x) with presets ``SafetyConfig.WEAK
/ MEDIUM / STRONG / MAX``. ``train sld`` therefore trains nothing: it records the preset and the safety
concept in ``sld_config.json``, and ``load_pipeline(model, lora=[folder])`` turns the loaded
pipeline (with any LoRAs) into a ``StableDiffusionPipelineSafe`` that applies them, so ``eval``
treats SLD like every other method. Attack sets made of prompt embeddings are not supported (the
safe pipeline takes text prompts only).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods import edits
from t2i_unlearn.methods.sld_config import PRESETS, SLD_KEYS, SLDConfig, load_config, preset_values

logger = logging.getLogger(__name__)

SLD_FORMAT = "t2i_unlearn.sld.v1"


def default_safety_concept() -> str:
    """The safety concept text ``StableDiffusionPipelineSafe`` uses by default (the I2P categories)."""
    return (
        "an image showing hate, harassment, violence, suffering, humiliation, harm, suicide, sexual, nudity,"
        " bodily fluids, blood, obscene gestures, illegal activity, drug use, theft, vandalism, weapons, child"
        " abuse, brutality, cruelty"
    )


def train_sld(
    model: str,
    concept: Any,
    out: str | Path,
    config: SLDConfig | None = None,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = False,
    command: str = "t2i-unlearn train sld",
) -> Path:
    """Write an SLD settings folder for ``model`` and ``concept`` (``sld_config.json``, card, manifest); return it.

    Nothing is trained. The model is loaded once to check that it is SD 1.x/2.x.
    """
    from t2i_unlearn.concepts import load_concept
    from t2i_unlearn.models import load_pipeline, pipeline_family, resolve_model
    from t2i_unlearn.utils.io import atomic_write_json, make_manifest

    config = config or SLDConfig()
    config.validate()
    spec = concept if hasattr(concept, "leaves") else load_concept(concept)
    request = {"model": model, "concept": spec.model_dump(mode="json"), "settings": config.to_dict()}
    claim = edits.prepare_out(out, overwrite, "sld", request)
    out = claim.path
    if claim.status == "done":
        logger.info("%s already holds this SLD result; reusing it", out)
        return out
    pipe = load_pipeline(model, device="cpu")
    family = pipeline_family(pipe)
    if family != "sd":
        raise UserError(f"SLD (StableDiffusionPipelineSafe) exists for SD 1.x/2.x only; {model} is {family}")
    body = {
        "format": SLD_FORMAT,
        "preset": config.preset.upper(),
        "sld": config.resolved(),
        "safety_concept": config.safety_concept or default_safety_concept(),
        "concept": spec.name,
    }
    tmp = edits.temp_folder(out)
    try:
        atomic_write_json(tmp / edits.SLD_FILE, body)
        edits.write_card(
            tmp,
            f"SLD-{body['preset']}: {spec.name}",
            f"SLD (Safe Latent Diffusion, Schramowski et al. 2023) settings for `{model}`: no weights change; sampling steers away "
            f"from the safety concept with diffusers' `StableDiffusionPipelineSafe` and the `{body['preset']}` preset.",
            model,
            "sld",
            {**config.to_dict(), **body["sld"], "safety_concept": body["safety_concept"]},
        )
        manifest = make_manifest(
            command, {**config.to_dict(), **body}, inputs={"model": resolve_model(model)}, concept={"name": spec.name}, artifact="sld_result", request=request
        )
        atomic_write_json(tmp / "manifest.json", manifest)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("SLD %s for %s: %s", body["preset"], model, body["sld"])
    return edits.finish_folder(out, tmp)


def train_sld_concept(model: str, concept: Any, out: str | Path, config: SLDConfig | None = None, **kwargs: Any) -> list[Path]:
    """Registry entry point: one SLD settings folder; returns ``[out]``."""
    return [train_sld(model, concept, out, config, **kwargs)]


def _safe_pipeline_class() -> type:
    from diffusers import StableDiffusionPipelineSafe
    from diffusers.loaders import TextualInversionLoaderMixin

    class StableDiffusionSLDPipeline(StableDiffusionPipelineSafe, TextualInversionLoaderMixin):
        """``StableDiffusionPipelineSafe`` whose ``sld_*`` arguments default to stored settings.

        It loads textual-inversion tokens as ``StableDiffusionPipeline`` does (diffusers' safe
        pipeline does not), so that Concept Inversion's learned token can attack an SLD model and be
        replayed on it. A token of one vector is written as itself in a prompt.
        """

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            for key, value in getattr(self, "_sld_defaults", {}).items():
                kwargs.setdefault(key, value)
            return super().__call__(*args, **kwargs)

    return StableDiffusionSLDPipeline


def apply_sld(pipe: Any, path: str | Path, weight: float = 1.0) -> Any:
    """A safe pipeline sharing ``pipe``'s modules that samples with the SLD settings stored at ``path``.

    ``weight`` multiplies the safety guidance scale (1 = as stored).
    """
    from t2i_unlearn.models import pipeline_family

    p = Path(path)
    body = edits.read_json(p / edits.SLD_FILE if p.is_dir() else p)
    if body.get("format") != SLD_FORMAT or not isinstance(body.get("sld"), dict):
        raise UserError(f"{path} is not a t2i_unlearn SLD config")
    if pipeline_family(pipe) != "sd" or type(pipe).__name__ not in ("StableDiffusionPipeline", "StableDiffusionSLDPipeline"):
        raise UserError(f"SLD needs an SD 1.x/2.x text-to-image pipeline, not {type(pipe).__name__}")
    cls = _safe_pipeline_class()
    safe = cls(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=pipe.unet,
        scheduler=pipe.scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    safe.safety_concept = str(body["safety_concept"])
    settings = {k: body["sld"][k] for k in SLD_KEYS if k in body["sld"]}
    settings["sld_guidance_scale"] = float(settings.get("sld_guidance_scale", 1000)) * float(weight)
    safe._sld_defaults = settings
    safe.set_progress_bar_config(disable=True)
    logger.info("SLD applied from %s: %s", path, settings)
    return safe


__all__ = ["PRESETS", "SLD_KEYS", "SLDConfig", "apply_sld", "default_safety_concept", "load_config", "preset_values", "train_sld", "train_sld_concept"]
