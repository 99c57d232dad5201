"""What the trainers share: how each model family is conditioned and noised, VAE latents, the training log.

DUO and Dark Miner (and DUO's mining rounds, which run Dark Miner's mining stage) use the same pieces;
they live here so that neither method imports the other. ``cond`` is a dict of batch-first tensors:
``encoder_hidden_states`` (+ ``text_embeds`` for SDXL, ``pooled_projections`` for SD3). A family
object reads ``t_max`` (and DUO's ``prior_timestep`` / ``flow_u_*``) from the config it is given.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from t2i_unlearn.errors import UserError

logger = logging.getLogger(__name__)


class Family:
    """What the trainer needs from a model family. ``cond`` is a dict of batch-first tensors."""

    def __init__(self, pipe: Any, config: Any):
        self.pipe, self.config = pipe, config

    def encode_prompts(self, prompts: list[str], device: torch.device) -> dict[str, Any]:
        raise NotImplementedError

    def sample_t(self, gen: torch.Generator, n: int) -> torch.Tensor:
        raise NotImplementedError

    def prior_t(self, n: int) -> torch.Tensor:
        raise NotImplementedError

    def noisy(self, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def target(self, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, net: Any, x: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError


class DDPMFamily(Family):
    """SD 1.x/2.x and SDXL: discrete DDPM timesteps, epsilon or v-prediction."""

    def __init__(self, pipe: Any, config: Any):
        from diffusers import DDPMScheduler

        super().__init__(pipe, config)
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.num_timesteps = int(self.scheduler.config.num_train_timesteps)
        self.prediction_type = self.scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise UserError(f"unsupported prediction type {self.prediction_type!r} (epsilon or v_prediction)")
        if config.t_max > self.num_timesteps:
            raise UserError(f"t_max {config.t_max} exceeds the scheduler's {self.num_timesteps} timesteps")
        self.is_xl = "XL" in type(pipe).__name__

    def encode_prompts(self, prompts: list[str], device: torch.device) -> dict[str, Any]:
        with torch.no_grad():
            if self.is_xl:
                emb, _, pooled, _ = self.pipe.encode_prompt(prompt=prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False)
                return {"encoder_hidden_states": emb.float(), "text_embeds": pooled.float()}
            emb, _ = self.pipe.encode_prompt(prompts, device, 1, False)
            return {"encoder_hidden_states": emb.float()}

    def sample_t(self, gen: torch.Generator, n: int) -> torch.Tensor:
        return torch.randint(0, self.config.t_max, (n,), generator=gen)

    def prior_t(self, n: int) -> torch.Tensor:
        t = self.config.prior_timestep if self.config.prior_timestep is not None else self.num_timesteps - 1
        return torch.full((n,), int(t), dtype=torch.long)

    def noisy(self, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.scheduler.add_noise(z, noise, t)

    def target(self, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return noise if self.prediction_type == "epsilon" else self.scheduler.get_velocity(z, noise, t)

    def forward(self, net: Any, x: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        kwargs: dict[str, Any] = {}
        if self.is_xl:
            h, w = x.shape[-2] * self.pipe.vae_scale_factor, x.shape[-1] * self.pipe.vae_scale_factor
            # SDXL micro-conditioning: original size = target size = the training resolution, no crop
            time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=x.dtype, device=x.device).expand(x.shape[0], 6)
            kwargs["added_cond_kwargs"] = {"text_embeds": cond["text_embeds"], "time_ids": time_ids}
        return net(x, t, encoder_hidden_states=cond["encoder_hidden_states"], return_dict=False, **kwargs)[0]


class FlowFamily(Family):
    """SD3: rectified flow, x_u = (1 - u) z + u e, the network predicts the velocity e - z at timestep 1000 u."""

    def __init__(self, pipe: Any, config: Any):
        super().__init__(pipe, config)
        self.num_timesteps = int(pipe.scheduler.config.num_train_timesteps)

    def encode_prompts(self, prompts: list[str], device: torch.device) -> dict[str, Any]:
        with torch.no_grad():
            emb, _, pooled, _ = self.pipe.encode_prompt(
                prompt=prompts, prompt_2=None, prompt_3=None, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
        return {"encoder_hidden_states": emb.float(), "pooled_projections": pooled.float()}

    def sample_t(self, gen: torch.Generator, n: int) -> torch.Tensor:
        return self.config.flow_u_min + (self.config.flow_u_max - self.config.flow_u_min) * torch.rand((n,), generator=gen)

    def prior_t(self, n: int) -> torch.Tensor:
        return torch.ones(n)

    def _u(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def noisy(self, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        u = self._u(t, z)
        return (1.0 - u) * z + u * noise

    def target(self, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return noise - z

    def forward(self, net: Any, x: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        return net(
            hidden_states=x,
            timestep=t.to(x.dtype) * self.num_timesteps,
            encoder_hidden_states=cond["encoder_hidden_states"],
            pooled_projections=cond["pooled_projections"],
            return_dict=False,
        )[0]


def family_ops(pipe: Any, config: Any) -> Family:
    """The family object of ``pipe``: :class:`FlowFamily` for SD3, else :class:`DDPMFamily`."""
    from t2i_unlearn.models import pipeline_family

    return FlowFamily(pipe, config) if pipeline_family(pipe) == "sd3" else DDPMFamily(pipe, config)


def index_cond(cond: dict[str, Any], index: torch.Tensor) -> dict[str, Any]:
    """The rows ``index`` of every tensor of ``cond``."""
    return {k: v.index_select(0, index) for k, v in cond.items()}


def cat_cond(*conds: dict[str, Any]) -> dict[str, Any]:
    """The conditionings ``conds`` (same keys) concatenated along the batch."""
    return {k: torch.cat([c[k] for c in conds]) for k in conds[0]}


@torch.no_grad()
def encode_latents(vae: Any, images: Any, device: torch.device, batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE latent distribution of ``uint8 [N, H, W, 3]`` images: ``(mean, std)``, already shifted and scaled.

    A latent sample is ``mean + std * n`` with ``n ~ N(0, 1)``; the VAE's ``scaling_factor`` (and
    ``shift_factor``, SD3) is applied to both. The trainer keeps the VAE in float32 (the SDXL VAE overflows in fp16).
    """
    scale = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    means, stds = [], []
    for i in range(0, len(images), batch_size):
        x = (torch.as_tensor(images[i : i + batch_size]).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0).to(vae.dtype)
        dist = vae.encode(x).latent_dist
        means.append(((dist.mean.float() - shift) * scale).cpu())
        stds.append((dist.std * scale).float().cpu())
    return torch.cat(means), torch.cat(stds)


def log_step(line: str) -> float:
    """The step of a log line; infinity for a blank or half-written line (a killed run's last)."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


class TrainingLog:
    """JSONL log (main process), plus TensorBoard / wandb when asked for and installed."""

    def __init__(self, out: Path, config: Any, enabled: bool, resume_step: int):
        self.enabled = enabled
        self.path = out / "logs.jsonl"
        self.tb = None
        self.wandb = None
        if not enabled:
            return
        if self.path.exists():
            # drop lines past the checkpoint we resume from: they will be written again
            keep = [ln for ln in self.path.read_text().splitlines() if log_step(ln) <= resume_step]
            from t2i_unlearn.utils.io import atomic_write_text

            atomic_write_text(self.path, "".join(ln + "\n" for ln in keep))
        if "tensorboard" in config.report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                logger.info("tensorboard is not installed; logging to logs.jsonl only")
        if "wandb" in config.report_to:
            try:
                import wandb

                self.wandb = wandb.init(project="t2i-unlearn", config=config.to_dict(), dir=str(out))
            except ImportError:
                logger.warning("wandb is not installed; logging to logs.jsonl only")

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        for key, value in row.items():
            if key != "step" and isinstance(value, int | float):
                if self.tb is not None:
                    self.tb.add_scalar(key, value, row["step"])
        if self.wandb is not None:
            self.wandb.log(row, step=row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
