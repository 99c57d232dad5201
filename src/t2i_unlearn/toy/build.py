"""Build the toy world: render data, train a Stable-Diffusion-format model and judges from scratch.

Stages run in order and each records its completion, so an interrupted build resumes where it
stopped; the two long training stages also checkpoint every few hundred steps. Scratch files live
in ``<world>/.build`` and are deleted at the end. A world is complete only once its
``manifest.json`` (written last, with the hash of every file) exists.

World layout::

    <world>/pipeline/      diffusers StableDiffusionPipeline (tokenizer, text encoder, VAE, UNet, scheduler)
    <world>/judges/        judge.safetensors + judge_config.json
    <world>/quality.json   the quality table measured at the end of the build
    <world>/manifest.json  what made the world, and the hash of every file above
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from t2i_unlearn.errors import UserError
from t2i_unlearn.toy import judges as judges_mod
from t2i_unlearn.toy.render import ATTRIBUTES, JUDGE_VARIANTS, render_dataset, render_judge_variant, vocabulary_words
from t2i_unlearn.toy.tokenizer import save_clip_tokenizer
from t2i_unlearn.toy.world import WORLD_FILES, WORLD_FORMAT, ToyPreset, claim_world, get_preset, is_world_folder, verify_world  # noqa: F401 (re-exported)
from t2i_unlearn.utils.io import (
    DONE,
    atomic_directory,
    atomic_torch_save,
    atomic_write_json,
    hash_files,
    make_manifest,
    safe_torch_load,
)

logger = logging.getLogger(__name__)

STAGES = ("render", "tokenizer", "vae", "unet", "judges", "assemble", "quality")


def _generator(seed: int, stage: int, step: int) -> torch.Generator:
    # One generator per (stage, step): a resumed run draws exactly what an uninterrupted one would.
    return torch.Generator().manual_seed(seed * 1_000_003 + stage * 100_003 + step)


def make_text_encoder(preset: ToyPreset, tok: Any) -> torch.nn.Module:
    """The toy world's text encoder (a 2-layer CLIP text model), freshly initialised from torch's global seed."""
    from transformers import CLIPTextConfig, CLIPTextModel

    h = preset.text_hidden
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=h,
            intermediate_size=4 * h,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=tok.model_max_length,
            projection_dim=h,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )


def make_unet(preset: ToyPreset) -> torch.nn.Module:
    """The toy world's UNet, freshly initialised from torch's global seed.

    Stable Diffusion 1.x's layout scaled down: self- and cross-attention at every resolution but the
    lowest, a plain ResNet block there, mirrored up blocks, attention in the mid block.
    """
    from diffusers import UNet2DConditionModel

    c = preset.unet_channels
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * (len(c) - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(c) - 1),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=c,
        layers_per_block=1,
        cross_attention_dim=preset.text_hidden,
        # diffusers reads this UNet's ``attention_head_dim`` as the number of heads: 16 channels a head.
        attention_head_dim=tuple(max(1, ch // 16) for ch in c),
        norm_num_groups=8,
    )


def _encode_latents(vae: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The VAE's latent means (unscaled) of images ``x`` in [-1, 1], 512 at a time."""
    with torch.no_grad():
        return torch.cat([vae.encode(x[i : i + 512]).latent_dist.mean for i in range(0, len(x), 512)])


def ema_update(ema_state: dict[str, dict[str, torch.Tensor]], modules: dict[str, torch.nn.Module], decay: float) -> None:
    """Move the EMA copies ``ema_state[name][tensor]`` towards the modules' weights (buffers that are not floats are copied)."""
    with torch.no_grad():
        for k, m in modules.items():
            for n, t in m.state_dict().items():
                if t.dtype.is_floating_point:
                    ema_state[k][n].mul_(decay).add_(t.detach(), alpha=1 - decay)
                else:
                    ema_state[k][n].copy_(t)


class _Builder:
    def __init__(self, out: Path, preset: ToyPreset, seed: int, progress: bool):
        self.out, self.preset, self.seed, self.progress = out, preset, seed, progress
        self.scratch = out / ".build"
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.state_path = self.scratch / "state.json"
        self.state = self._load_state()

    # ---- bookkeeping -------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        settings = {"preset": asdict(self.preset), "seed": self.seed, "format": WORLD_FORMAT}
        if self.state_path.exists():
            try:
                state = json.loads(self.state_path.read_text())
            except ValueError as exc:
                raise UserError(f"build state {self.state_path} is corrupted; delete {self.scratch} to start over") from exc
            if state.get("settings") == json.loads(json.dumps(settings)):
                return state
            logger.info("previous partial build used other settings; starting over")
            shutil.rmtree(self.scratch)
            self.scratch.mkdir(parents=True)
        return {"settings": settings, "done": {}}

    def _mark(self, stage: str, **info: Any) -> None:
        self.state["done"][stage] = info
        atomic_write_json(self.state_path, self.state)

    def _bar(self, total: int, initial: int, desc: str) -> tqdm:
        return tqdm(total=total, initial=initial, desc=desc, disable=not self.progress, leave=False, dynamic_ncols=True)

    def _train(
        self,
        name: str,
        stage_id: int,
        modules: dict[str, torch.nn.Module],
        steps: int,
        lr: float,
        loss_fn: Callable[[torch.Generator], torch.Tensor],
        ema: bool = False,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """AdamW with warm-up and cosine decay; checkpoints atomically; returns (EMA) state dicts."""
        params = [p for m in modules.values() for p in m.parameters()]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
        ema_state = {k: {n: t.detach().clone() for n, t in m.state_dict().items()} for k, m in modules.items()} if ema else None
        ckpt = self.scratch / f"ckpt-{name}.pt"
        start = 0
        if ckpt.exists():
            saved = safe_torch_load(ckpt)
            for k, m in modules.items():
                m.load_state_dict(saved["modules"][k])
            opt.load_state_dict(saved["optimizer"])
            ema_state = saved.get("ema") or ema_state
            start = int(saved["step"])
            logger.info("resuming %s at step %d", name, start)
        warmup = max(1, min(100, steps // 10))
        bar = self._bar(steps, start, f"train {name}")
        for step in range(start, steps):
            factor = min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
            for group in opt.param_groups:
                group["lr"] = lr * factor
            loss = loss_fn(_generator(self.seed, stage_id, step))
            if not torch.isfinite(loss):
                raise RuntimeError(f"{name} training diverged at step {step} (loss {loss.item()})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if ema_state is not None:
                ema_update(ema_state, modules, min(self.preset.ema_decay, (1 + step) / (10 + step)))
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if (step + 1) % self.preset.checkpoint_every == 0 or step + 1 == steps:
                atomic_torch_save(
                    ckpt,
                    {"modules": {k: m.state_dict() for k, m in modules.items()}, "optimizer": opt.state_dict(), "ema": ema_state, "step": step + 1},
                )
        bar.close()
        return ema_state if ema_state is not None else {k: m.state_dict() for k, m in modules.items()}

    # ---- stages ------------------------------------------------------------------------------
    def render(self) -> None:
        data = self.scratch / "data"
        data.mkdir(exist_ok=True)
        n, chunk = self.preset.n_images, 2000
        images = np.zeros((n, 32, 32, 3), dtype=np.uint8)
        captions: list[str] = []
        labels: list[dict[str, Any]] = []
        for start in tqdm(range(0, n, chunk), desc="render", disable=not self.progress, leave=False):
            im, cap, lab = render_dataset(min(chunk, n - start), seed=self.seed, start=start)
            images[start : start + len(im)] = im
            captions += cap
            labels += lab
        np.save(data / "images.npy", images)
        atomic_write_json(data / "captions.json", captions)
        atomic_write_json(data / "labels.json", labels)
        self._mark("render", n=n)

    def _data(self) -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
        data = self.scratch / "data"
        return (
            np.load(data / "images.npy"),
            json.loads((data / "captions.json").read_text()),
            json.loads((data / "labels.json").read_text()),
        )

    def tokenizer(self) -> None:
        _, captions, _ = self._data()
        save_clip_tokenizer(self.scratch / "tokenizer", captions + vocabulary_words())
        self._mark("tokenizer")

    def vae(self) -> None:
        from diffusers import AutoencoderKL

        images, _, _ = self._data()
        x_all = judges_mod.to_input(images)
        torch.manual_seed(self.seed)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=16,
            sample_size=32,
        )

        def loss_fn(g: torch.Generator) -> torch.Tensor:
            idx = torch.randint(len(x_all), (self.preset.vae_batch,), generator=g)
            x = x_all[idx]
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)
            rec = vae.decode(z).sample
            kl = posterior.kl().mean() / x[0].numel()
            return F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + 1e-4 * kl

        state = self._train("vae", 1, {"vae": vae}, self.preset.vae_steps, self.preset.vae_lr, loss_fn)
        vae.load_state_dict(state["vae"])
        vae.eval()
        with torch.no_grad():
            latents = _encode_latents(vae, x_all)
            # The judges' reconstructed images: every 10th of the full world's 40,000 (4,000), a quarter of a
            # smaller data set (the quick world decodes 1,000 of its 4,000).
            n_recon = max(1, min(4000, len(x_all) // 4))
            recon_idx = torch.arange(0, len(x_all), max(1, len(x_all) // n_recon))
            recon = torch.cat([vae.decode(latents[recon_idx[i : i + 512]]).sample for i in range(0, len(recon_idx), 512)])
        mse = F.mse_loss(recon, x_all[recon_idx]).item()
        scaling = float(1.0 / latents.std())
        vae.register_to_config(scaling_factor=scaling)
        vae.save_pretrained(self.scratch / "vae", safe_serialization=True)
        np.save(self.scratch / "latents.npy", latents.numpy())
        recon_u8 = ((recon.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        np.save(self.scratch / "recon.npy", recon_u8)
        np.save(self.scratch / "recon_idx.npy", recon_idx.numpy())
        self._mark("vae", recon_mse=mse, scaling_factor=scaling)

    def unet(self) -> None:
        from diffusers import DDPMScheduler
        from transformers import CLIPTokenizer

        _, captions, _ = self._data()
        tok = CLIPTokenizer.from_pretrained(self.scratch / "tokenizer")
        ids = tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
        empty = tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids[0]
        latents = torch.from_numpy(np.load(self.scratch / "latents.npy"))
        vae_cfg = json.loads((self.scratch / "vae" / "config.json").read_text())
        latents = latents * vae_cfg["scaling_factor"]

        torch.manual_seed(self.seed + 1)
        text_encoder = make_text_encoder(self.preset, tok)
        unet = make_unet(self.preset)
        noise_sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
        alphas = noise_sched.alphas_cumprod
        snr = alphas / (1 - alphas)
        min_snr_weight = torch.clamp(snr, max=5.0) / snr  # min-SNR-gamma weighting (gamma 5) for epsilon targets

        B = self.preset.unet_batch

        def loss_fn(g: torch.Generator) -> torch.Tensor:
            idx = torch.randint(len(latents), (B,), generator=g)
            z = latents[idx]
            cond = ids[idx].clone()
            cond[torch.rand(B, generator=g) < self.preset.cfg_dropout] = empty
            noise = torch.randn(z.shape, generator=g)
            t = torch.randint(0, 1000, (B,), generator=g)
            zt = noise_sched.add_noise(z, noise, t)
            pred = unet(zt, t, text_encoder(cond)[0]).sample
            per = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
            return (per * min_snr_weight[t]).mean()

        state = self._train("unet", 2, {"unet": unet, "text_encoder": text_encoder}, self.preset.unet_steps, self.preset.unet_lr, loss_fn, ema=True)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        unet.save_pretrained(self.scratch / "unet", safe_serialization=True)
        text_encoder.save_pretrained(self.scratch / "text_encoder", safe_serialization=True)
        self._mark("unet")

    def _judge_variants(self) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """The judges' hard examples (see ``render_judge_variant``), clean and through the world's VAE."""
        from diffusers import AutoencoderKL

        n = self.preset.judge_variants
        drawn = [render_judge_variant(self.seed, i // len(JUDGE_VARIANTS), JUDGE_VARIANTS[i % len(JUDGE_VARIANTS)]) for i in range(n)]
        images = np.stack([im for im, _ in drawn])
        vae = AutoencoderKL.from_pretrained(self.scratch / "vae").eval()
        x = judges_mod.to_input(images)
        with torch.no_grad():
            recon = torch.cat([vae.decode(vae.encode(x[i : i + 512]).latent_dist.mean).sample for i in range(0, n, 512)])
        recon_u8 = ((recon.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return images, recon_u8, [lab for _, lab in drawn]

    def judges(self) -> None:
        images, _, labels = self._data()
        recon = np.load(self.scratch / "recon.npy")
        recon_idx = np.load(self.scratch / "recon_idx.npy")
        var_clean, var_recon, var_labels = self._judge_variants()
        heads = judges_mod.default_heads()
        # A label of None (a two-tone shape's colour) is left out of that head's loss.
        targets = {a: torch.tensor([heads[a].index(lab[a]) for lab in labels]) for a in ATTRIBUTES}
        var_targets = {a: torch.tensor([-100 if lab[a] is None else heads[a].index(lab[a]) for lab in var_labels]) for a in ATTRIBUTES}
        x_clean = judges_mod.to_input(images)
        x_recon = judges_mod.to_input(recon)
        x_var = torch.cat([judges_mod.to_input(var_clean), judges_mod.to_input(var_recon)])
        recon_idx_t = torch.from_numpy(recon_idx)
        torch.manual_seed(self.seed + 2)
        judge = judges_mod.ToyJudge(heads)
        B = self.preset.judge_batch
        n_data, n_var = B - B // 4, B // 4

        def loss_fn(g: torch.Generator) -> torch.Tensor:
            # Renders, their VAE reconstructions and the hard variants; random tints, offsets, noise and
            # blur, so the judge also reads generated images, whose colours and edges drift.
            i_clean = torch.randint(len(x_clean), (n_data // 2,), generator=g)
            j = torch.randint(len(x_recon), (n_data - n_data // 2,), generator=g)
            v = torch.randint(len(x_var), (n_var,), generator=g)
            x = torch.cat([x_clean[i_clean], x_recon[j], x_var[v]])
            idx = torch.cat([i_clean, recon_idx_t[j]])
            scale = 1 + 0.15 * (2 * torch.rand(B, 3, 1, 1, generator=g) - 1)
            offset = 0.12 * (2 * torch.rand(B, 3, 1, 1, generator=g) - 1)
            x = (x + 1) * scale - 1 + offset
            blur = torch.rand(B, 1, 1, 1, generator=g) < 0.3
            x = torch.where(blur, F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 0.5 + x * 0.5, x)
            x = x + 0.04 * torch.rand(B, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
            logits = judge(x.clamp(-1, 1))
            v_idx = v % len(var_labels)
            return sum(F.cross_entropy(logits[a], torch.cat([targets[a][idx], var_targets[a][v_idx]]), ignore_index=-100) for a in ATTRIBUTES)

        state = self._train("judges", 3, {"judge": judge}, self.preset.judge_steps, self.preset.judge_lr, loss_fn)
        judge.load_state_dict(state["judge"])
        judges_mod.save_judge(judge, self.scratch / "judges")
        self._mark("judges")

    def assemble(self) -> None:
        from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        pipe = StableDiffusionPipeline(
            vae=AutoencoderKL.from_pretrained(self.scratch / "vae"),
            text_encoder=CLIPTextModel.from_pretrained(self.scratch / "text_encoder"),
            tokenizer=CLIPTokenizer.from_pretrained(self.scratch / "tokenizer"),
            unet=UNet2DConditionModel.from_pretrained(self.scratch / "unet"),
            scheduler=DDIMScheduler(
                beta_start=0.00085,
                beta_end=0.012,
                beta_schedule="scaled_linear",
                num_train_timesteps=1000,
                clip_sample=False,
                set_alpha_to_one=False,
                steps_offset=1,
            ),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        for name in ("vae", "unet"):
            # from_pretrained recorded the scratch path; a world should not carry it.
            getattr(pipe, name).register_to_config(_name_or_path=name)
        with atomic_directory(self.out / "pipeline") as tmp:
            pipe.save_pretrained(tmp, safe_serialization=True)
        with atomic_directory(self.out / "judges") as tmp:
            for f in (self.scratch / "judges").iterdir():
                shutil.copy2(f, tmp / f.name)
        self._mark("assemble")

    def quality(self) -> None:
        from t2i_unlearn.toy.quality import measure_quality

        table = measure_quality(
            self.out,
            n_per_group=self.preset.eval_per_group,
            seed=self.seed + 7,
            steps=self.preset.sample_steps,
            guidance=self.preset.guidance,
            progress=self.progress,
        )
        table["build"] = {k: v for k, v in self.state["done"].items() if v}
        atomic_write_json(self.out / "quality.json", table)
        self._mark("quality")


def build_world(out: str | Path, preset: str | ToyPreset = "full", seed: int = 0, progress: bool = True, overwrite: bool = False) -> Path:
    """Build (or resume building) a toy world in ``out``; returns ``out``.

    ``preset`` is a preset name or a :class:`ToyPreset`. ``out`` follows the output rule of
    :func:`~t2i_unlearn.utils.io.claim_output`: an empty or absent folder is used, a complete world
    with the same settings is returned as it is, an interrupted build with the same settings is
    resumed, and anything else (another world, a folder that is not a world) is refused unless
    ``overwrite``, which replaces it.
    """
    if not 0 <= seed < 2**32:  # numpy's streams take no negative seed; torch's take at most 64 bits (seed * 1_000_003 + ...)
        raise UserError(f"seed must be between 0 and {2**32 - 1}, got {seed}")
    spec = preset if isinstance(preset, ToyPreset) else get_preset(preset)
    claim = claim_world(out, spec, seed, overwrite)
    if claim.status == DONE:
        logger.info("toy world at %s is complete; reusing it", claim.path)
        return claim.path
    with claim.in_place() as out:
        return _build(out, spec, seed, progress)


# What a world's data, tokenizer, VAE and judges stages depend on (besides the seed); see build_unet_on_world.
_REUSED_FIELDS = ("n_images", "vae_steps", "vae_batch", "vae_lr", "judge_steps", "judge_batch", "judge_lr", "judge_variants")


def build_unet_on_world(out: str | Path, world: str | Path, preset: ToyPreset, seed: int = 0, progress: bool = True, overwrite: bool = False) -> Path:
    """A world in ``out`` that takes ``world``'s tokenizer, VAE and judges and trains its UNet stage with ``preset``.

    For trying UNet recipes without the build's other stages: the data set is rendered again
    (deterministic) and encoded with ``world``'s VAE, which is what a build's UNet stage sees when its
    earlier stages match ``world``'s, so the UNet trained here is the one ``toy build`` would train with
    this recipe on that VAE. ``preset`` must agree with ``world``'s in the settings the reused stages
    depend on (:data:`_REUSED_FIELDS`) and in the seed. ``out`` follows :func:`build_world`'s rule: a
    complete world made the same way is returned as it is, an interrupted one resumed, anything else
    refused unless ``overwrite``. The manifest's command and the quality table's ``build`` entries say
    which stages came from ``world``.
    """
    world = Path(world)
    made = verify_world(world)["settings"]
    differ = [k for k in _REUSED_FIELDS if made["preset"][k] != getattr(preset, k)]
    if made["seed"] != seed or differ:
        raise UserError(f"{world} was built with other settings for the stages it would lend ({', '.join(differ) or 'seed'}); use a world built with them")
    command = f"build_unet_on_world (tokenizer, VAE and judges of {world})"
    claim = claim_world(out, preset, seed, overwrite, command=command)
    if claim.status == DONE:
        logger.info("world at %s is complete; reusing it", claim.path)
        return claim.path
    with claim.in_place() as out:
        return _build_unet_on_world(out, world, preset, seed, progress, command)


def _build_unet_on_world(out: Path, world: Path, preset: ToyPreset, seed: int, progress: bool, command: str) -> Path:
    builder = _Builder(out, preset, seed, progress)
    done = builder.state["done"]
    source = {"from_world": str(world)}
    if "render" not in done:
        builder.render()
    if "tokenizer" not in done:
        shutil.copytree(world / "pipeline" / "tokenizer", builder.scratch / "tokenizer", dirs_exist_ok=True)
        builder._mark("tokenizer", **source)
    if "vae" not in done:
        from diffusers import AutoencoderKL

        shutil.copytree(world / "pipeline" / "vae", builder.scratch / "vae", dirs_exist_ok=True)
        vae = AutoencoderKL.from_pretrained(builder.scratch / "vae").eval()
        images, _, _ = builder._data()
        np.save(builder.scratch / "latents.npy", _encode_latents(vae, judges_mod.to_input(images)).numpy())
        builder._mark("vae", **source)
    if "judges" not in done:
        shutil.copytree(world / "judges", builder.scratch / "judges", dirs_exist_ok=True)
        builder._mark("judges", **source)
    return _build(out, preset, seed, progress, command=command)


def _build(out: Path, spec: ToyPreset, seed: int, progress: bool, command: str = "t2i-unlearn toy build") -> Path:
    builder = _Builder(out, spec, seed, progress)
    t0 = time.time()
    for stage in STAGES:
        if stage in builder.state["done"]:
            continue
        logger.info("toy build: %s", stage)
        t = time.time()
        getattr(builder, stage)()
        builder.state["done"][stage]["seconds"] = round(time.time() - t, 1)
        atomic_write_json(builder.state_path, builder.state)
    timings = {s: builder.state["done"][s].get("seconds") for s in STAGES}
    manifest = make_manifest(
        command=command,
        settings={"preset": asdict(spec), "seed": seed, "format": WORLD_FORMAT},
        stage_seconds=timings,
        files=hash_files(out, WORLD_FILES),
        artifact="toy_world",
    )
    atomic_write_json(out / "manifest.json", manifest)
    shutil.rmtree(builder.scratch, ignore_errors=True)
    logger.info("toy world built in %.0f s at %s", time.time() - t0, out)
    return out


def preset_with(base: str, **changes: Any) -> ToyPreset:
    """A copy of the preset ``base`` with some fields changed (for experiments and tests)."""
    return replace(get_preset(base), **changes)
