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

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods import edits
from t2i_unlearn.methods.esd_config import TRAIN_METHODS, ESDConfig, load_config

logger = logging.getLogger(__name__)


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


__all__ = ["TRAIN_METHODS", "ESDConfig", "esd_loss", "esd_target", "load_config", "select_parameters", "train_esd", "train_esd_concept"]
