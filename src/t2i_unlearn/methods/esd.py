"""ESD: Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023).

ESD fine-tunes one group of the denoiser's weights so that, for the concept prompt c, the model
predicts what the frozen model would predict with *negative* guidance away from c:

    x_t        = k DDIM steps (of a 50-step schedule, k drawn per iteration) from noise, sampled by
                 the model being fine-tuned with classifier-free guidance on c
    target     = eps0(x_t, "", t) - eta * (eps0(x_t, c, t) - eps0(x_t, "", t))     (frozen model eps0)
    L          = mean (eps(x_t, c, t) - target)^2                                  (fine-tuned model eps)

Parameter groups, as in the authors' diffusers script (every ``Linear`` and ``Conv2d`` of the UNet,
weights and biases, selected by name): ``xattn`` (ESD-x: cross-attention ``attn2``), ``noxattn``
(ESD-u: everything except ``attn2``), ``selfattn`` (``attn1``) and ``full``. The change is written as a weight
delta; with ``train_biases: false`` the attention groups (``xattn``, ``selfattn``) change only linear weights
and are written as an exact LoRA instead (see :mod:`.edits`).

The loss is the pure function below; the rest of the file is the trainer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods import edits

logger = logging.getLogger(__name__)

TRAIN_METHODS = ("xattn", "noxattn", "selfattn", "full")


# ---------------------------------------------------------------------------------------------
# The objective
# ---------------------------------------------------------------------------------------------


def esd_target(eps0_concept: torch.Tensor, eps0_empty: torch.Tensor, negative_guidance: float) -> torch.Tensor:
    """ESD's regression target ``eps0(x_t, "", t) - eta * (eps0(x_t, c, t) - eps0(x_t, "", t))``.

    Both arguments are the frozen model's predictions for the same ``x_t`` and ``t``, with the
    concept prompt and with the empty prompt; ``negative_guidance`` is eta (authors: 1).
    """
    return eps0_empty - negative_guidance * (eps0_concept - eps0_empty)


def esd_loss(eps_concept: torch.Tensor, eps0_concept: torch.Tensor, eps0_empty: torch.Tensor, negative_guidance: float) -> torch.Tensor:
    """ESD's loss: ``mean (eps(x_t, c, t) - esd_target)^2`` over every element; a scalar.

    ``eps_concept`` is the fine-tuned model's prediction (with gradients); the target is built from
    the frozen predictions without gradients.
    """
    target = esd_target(eps0_concept.detach().float(), eps0_empty.detach().float(), negative_guidance)
    return F.mse_loss(eps_concept.float(), target)


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


@dataclass
class ESDConfig:
    """Every ESD setting, defaulted to the authors' diffusers script (``esd_diffusers.py``)."""

    train_method: str = "noxattn"
    """Parameter group: ``noxattn`` (ESD-u, the paper's choice for nudity and objects), ``xattn`` (ESD-x, styles), ``selfattn``, ``full``."""
    iterations: int = 200
    """Optimiser steps (one sampled x_t each)."""
    lr: float = 2e-5
    """Adam learning rate (the authors use plain Adam, no weight decay, constant rate)."""
    negative_guidance: float = 1.0
    """eta in the target eps0("") - eta (eps0(c) - eps0(""))."""
    ddim_steps: int = 50
    """Length of the DDIM schedule that x_t is sampled on; k is drawn from [1, ddim_steps - 2] per iteration."""
    sample_guidance: float = 3.0
    """Classifier-free guidance while sampling x_t (authors: 3)."""
    prompts: list[str] | None = None
    """Concept prompts c, one drawn per iteration; None = the concept spec's distinct unsafe prompts (the paper erases one word, e.g. "nudity")."""
    batch_size: int = 1
    """x_t samples per iteration (authors: 1)."""
    height: int | None = None
    """Sampling height in pixels; None = the model's default."""
    width: int | None = None
    """Sampling width in pixels; None = the model's default."""
    seed: int = 0
    """Seed of every draw (k, the prompt, the initial noise)."""
    train_biases: bool = True
    """Train the biases of the group too (authors: yes). False makes xattn/selfattn edits exact LoRAs."""
    lora_max_rank: int | None = None
    """For ``xattn``/``selfattn``: cap on the exported LoRA's rank (None = exact, the rank of each weight change)."""
    log_every: int = 10
    """Write a log line every this many iterations."""

    def validate(self) -> None:
        """Raise :class:`UserError` for settings that cannot work."""
        checks = [
            (self.train_method in TRAIN_METHODS, f"train_method must be one of {', '.join(TRAIN_METHODS)}"),
            (self.iterations >= 1, "iterations must be at least 1"),
            (self.lr > 0, "lr must be positive"),
            (self.ddim_steps >= 3, "ddim_steps must be at least 3"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.prompts is None or len(self.prompts) > 0, "prompts must not be empty (leave it out to use the concept's)"),
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
    return edits.load_config(ESDConfig, "esd", path_or_preset, overrides)


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------


def select_parameters(unet: torch.nn.Module, train_method: str, biases: bool = True) -> dict[str, torch.nn.Parameter]:
    """The UNet parameters ESD trains for ``train_method``: weights and biases of ``Linear``/``Conv2d`` modules, by name."""
    out: dict[str, torch.nn.Parameter] = {}
    for name, module in unet.named_modules():
        if not isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            continue
        if train_method == "xattn" and "attn2" not in name:
            continue
        if train_method == "noxattn" and "attn2" in name:
            continue
        if train_method == "selfattn" and "attn1" not in name:
            continue
        for pname, p in module.named_parameters(recurse=False):
            if pname == "bias" and not biases:
                continue
            out[f"{name}.{pname}"] = p
    if not out:
        raise UserError(f"ESD: the model has no parameters in group {train_method!r}")
    return out


def _predict(unet: Any, x: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    return unet(x, t, encoder_hidden_states=emb, return_dict=False)[0]


@torch.no_grad()
def sample_xt(unet: Any, scheduler: Any, noise: torch.Tensor, cond: torch.Tensor, empty: torch.Tensor, k: int, guidance: float) -> torch.Tensor:
    """Run the first ``k`` steps of ``scheduler`` (already set to its timesteps) from ``noise`` with CFG; returns x at ``timesteps[k]``."""
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps[:k]:
        inp = scheduler.scale_model_input(torch.cat([x, x]), t)
        uncond, text = _predict(unet, inp, t, torch.cat([empty, cond])).chunk(2)
        x = scheduler.step(uncond + guidance * (text - uncond), t, x).prev_sample
    return x


def train_esd(
    model: str,
    concept: Any,
    out: str | Path,
    config: ESDConfig | None = None,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = False,
    command: str = "t2i-unlearn train esd",
) -> Path:
    """Erase ``concept`` (a spec or a name/path :func:`load_concept` accepts) from ``model`` with ESD; write ``out``; return it.

    ``out`` receives the edit (``pytorch_lora_weights.safetensors`` for ``xattn``/``selfattn``, else
    ``weight_delta.safetensors``), ``README.md``, ``manifest.json``, ``esd_config.json`` and
    ``logs.jsonl``; the folder appears only when complete. SD 1.x/2.x only.
    """
    from diffusers import DDIMScheduler
    from tqdm.auto import tqdm

    from t2i_unlearn.concepts import load_concept
    from t2i_unlearn.models import load_pipeline, pipeline_family, resolve_model
    from t2i_unlearn.utils.io import atomic_write_json, make_manifest

    config = config or ESDConfig()
    config.validate()
    spec = concept if hasattr(concept, "leaves") else load_concept(concept)
    prompts = list(config.prompts) if config.prompts else edits.dedupe([u for u, _ in edits.concept_prompt_pairs(spec)])
    request = {"model": model, "concept": spec.model_dump(mode="json"), "settings": config.to_dict()}
    claim = edits.prepare_out(out, overwrite, "esd", request)
    out = claim.path
    if claim.status == "done":
        logger.info("%s already holds this ESD result; reusing it", out)
        return out
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    pipe = load_pipeline(model, device=dev, dtype=torch.float32)
    family = pipeline_family(pipe)
    if family != "sd":
        raise UserError(f"ESD is implemented for SD 1.x/2.x pipelines; {model} is {family}")
    unet = pipe.unet
    frozen = _frozen_copy(unet)
    unet.requires_grad_(False)
    params = select_parameters(unet, config.train_method, config.train_biases)
    for p in params.values():
        p.requires_grad_(True)
    base = {k: v.detach().to("cpu", torch.float32).clone() for k, v in params.items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=config.lr)

    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(config.ddim_steps, device=dev)
    with torch.no_grad():
        cond_all, _ = pipe.encode_prompt(prompts, dev, 1, False)
        empty, _ = pipe.encode_prompt([""], dev, 1, False)
    height = config.height or unet.config.sample_size * pipe.vae_scale_factor
    width = config.width or unet.config.sample_size * pipe.vae_scale_factor
    shape = (config.batch_size, unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    empty_b = empty.expand(config.batch_size, -1, -1)

    settings = {**config.to_dict(), "prompts_used": prompts, "family": family, "trained_parameters": len(params)}
    logger.info("ESD-%s on %s: %d prompts, %d iterations, %d parameter tensors", config.train_method, model, len(prompts), config.iterations, len(params))
    tmp = edits.temp_folder(out)
    try:
        log_rows = []
        bar = tqdm(total=config.iterations, desc="ESD", disable=not progress, dynamic_ncols=True)
        t0 = time.perf_counter()
        for it in range(config.iterations):
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + it)
            k = int(torch.randint(1, config.ddim_steps - 1, (1,), generator=gen))
            which = int(torch.randint(len(prompts), (1,), generator=gen))
            noise = torch.randn(shape, generator=gen).to(dev)
            cond = cond_all[which : which + 1].expand(config.batch_size, -1, -1)
            unet.eval()
            x_t = sample_xt(unet, scheduler, noise, cond, empty_b, k, config.sample_guidance)
            t = scheduler.timesteps[k]
            with torch.no_grad():
                eps0_c, eps0_e = _predict(frozen, torch.cat([x_t, x_t]), t, torch.cat([cond, empty_b])).chunk(2)
            unet.train()
            loss = esd_loss(_predict(unet, x_t, t, cond), eps0_c, eps0_e, config.negative_guidance)
            if not torch.isfinite(loss):
                raise UserError(f"ESD loss became {loss.item()} at iteration {it + 1}: lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4g}", k=k)
            if (it + 1) % config.log_every == 0 or it + 1 == config.iterations:
                row = {"step": it + 1, "loss": loss.item(), "k": k, "timestep": int(t), "prompt": prompts[which]}
                log_rows.append({**row, "elapsed_s": time.perf_counter() - t0})
        bar.close()
        unet.eval()
        saved = edits.save_weight_edit(tmp, unet, base, family, prefer_lora=config.train_method in ("xattn", "selfattn"), max_rank=config.lora_max_rank)
        settings["output"] = saved
        spec_info = {"name": spec.name, "description": spec.description}
        atomic_write_json(tmp / "esd_config.json", settings)
        (tmp / "logs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log_rows), encoding="utf-8")
        edits.write_card(
            tmp,
            f"ESD-{config.train_method}: {spec.name}",
            f"ESD (Erasing Concepts from Diffusion Models, Gandikota et al. 2023) on `{model}` ({family}): concept `{spec.name}` erased "
            f"by fine-tuning the `{config.train_method}` parameter group with negative guidance {config.negative_guidance}.",
            model,
            saved["kind"],
            {k: v for k, v in settings.items() if k != "output"} | {"output": saved["kind"]},
        )
        manifest = make_manifest(
            command, settings, inputs={"model": resolve_model(model)}, concept=spec_info, output=saved, artifact="esd_result", request=request
        )
        atomic_write_json(tmp / "manifest.json", manifest)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return edits.finish_folder(out, tmp)


def _frozen_copy(unet: torch.nn.Module) -> torch.nn.Module:
    import copy

    frozen = copy.deepcopy(unet)
    frozen.requires_grad_(False).eval()
    return frozen


def train_esd_concept(model: str, concept: Any, out: str | Path, config: ESDConfig | None = None, **kwargs: Any) -> list[Path]:
    """Registry entry point: one ESD edit for ``concept`` (all sub-concepts' prompts together); returns ``[out]``."""
    return [train_esd(model, concept, out, config, **kwargs)]


__all__ = ["ESDConfig", "esd_loss", "esd_target", "load_config", "select_parameters", "train_esd", "train_esd_concept"]
