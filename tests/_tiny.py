"""Tiny random pipelines of each family (built in the tests, seconds on CPU) and tiny pair folders."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch


def _clip_config(tokenizer, hidden: int = 32, projection: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=projection,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _vae(latent_channels: int = 4, **kwargs):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=latent_channels,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=32,
        **kwargs,
    )


def sdxl_unet(cross_attention_dim: int = 64, pooled_dim: int = 32, transformer_layers: tuple[int, int] = (1, 1)):
    """A tiny SDXL UNet; ``cross_attention_dim`` = the two text encoders' widths summed, ``pooled_dim`` = the second's projection."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=transformer_layers,
        projection_class_embeddings_input_dim=8 * 6 + pooled_dim,
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=8,
    )


def sd3_transformer(num_layers: int = 1, joint_attention_dim: int = 32, pooled_projection_dim: int = 64, **extra):
    """A tiny SD3 MMDiT; ``extra`` passes SD3.5 options (``dual_attention_layers``, ``qk_norm``)."""
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(
        sample_size=16,
        patch_size=1,
        in_channels=4,
        num_layers=num_layers,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=joint_attention_dim,
        pooled_projection_dim=pooled_projection_dim,
        out_channels=4,
        **extra,
    )


def build_tiny(family: str, tokenizer_dir: Path, out: Path, prediction_type: str = "epsilon") -> Path:
    """Save a tiny random pipeline of ``family`` (sd, sdxl, sd3) to ``out``; 32x32 images, 16x16 latents."""
    from diffusers import (
        DDIMScheduler,
        EulerDiscreteScheduler,
        FlowMatchEulerDiscreteScheduler,
        StableDiffusion3Pipeline,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

    torch.manual_seed(0)
    tok = CLIPTokenizer.from_pretrained(tokenizer_dir)
    if family == "sd":
        unet = UNet2DConditionModel(
            block_out_channels=(16, 32),
            layers_per_block=1,
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
            norm_num_groups=8,
        )
        sched = DDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=False, prediction_type=prediction_type
        )
        pipe = StableDiffusionPipeline(
            vae=_vae(),
            text_encoder=CLIPTextModel(_clip_config(tok)),
            tokenizer=tok,
            unet=unet,
            scheduler=sched,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    elif family == "sdxl":
        unet = sdxl_unet()
        sched = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type=prediction_type)
        pipe = StableDiffusionXLPipeline(
            vae=_vae(),
            text_encoder=CLIPTextModel(_clip_config(tok)),
            text_encoder_2=CLIPTextModelWithProjection(_clip_config(tok)),
            tokenizer=tok,
            tokenizer_2=tok,
            unet=unet,
            scheduler=sched,
        )
    elif family == "sd3":
        transformer = sd3_transformer()
        pipe = StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=_vae(shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False),
            text_encoder=CLIPTextModelWithProjection(_clip_config(tok)),
            tokenizer=tok,
            text_encoder_2=CLIPTextModelWithProjection(_clip_config(tok)),
            tokenizer_2=tok,
            # a real (tiny) T5: pipelines saved without one do not load through DiffusionPipeline.from_pretrained
            text_encoder_3=T5EncoderModel(T5Config(vocab_size=8, d_model=32, d_ff=37, d_kv=8, num_layers=1, num_heads=4)),
            tokenizer_3=T5TokenizerFast(extra_ids=0),
        )
    else:
        raise ValueError(family)
    pipe.save_pretrained(out)
    return out


def toy_pairs(out: Path, n: int = 6, seed: int = 0) -> Path:
    """A pair folder of renderer images: striped scene (unsafe) and the same scene plain (safe)."""
    from t2i_unlearn.data import write_pair_folder
    from t2i_unlearn.toy.render import render_scene, sample_scene

    unsafe, safe = [], []
    for i in range(n):
        scene = sample_scene(np.random.default_rng([seed, i]), texture="striped", mark="none")
        unsafe.append(render_scene(scene))
        safe.append(render_scene(dataclasses.replace(scene, texture="plain")))
    prompts = ["a striped shape"] * n
    return write_pair_folder(out, np.stack(unsafe), np.stack(safe), prompts, ["a plain shape"] * n, concept="toy_striped")


def add_preserve(root: Path, n: int = 4, seed: int = 1) -> Path:
    """Add ``n`` preserve images (dotted renders, the toy world's close concept) to a pair folder."""
    import json

    from t2i_unlearn.data import write_metadata
    from t2i_unlearn.toy.render import render_scene, sample_scene
    from t2i_unlearn.utils.io import atomic_save_image

    for i in range(n):
        atomic_save_image(root / "preserve" / f"{i:06d}.png", render_scene(sample_scene(np.random.default_rng([seed, i]), texture="dotted", mark="none")))
        (root / ".pairs" / f"preserve-{i:06d}.json").write_text(json.dumps({"preserve_id": i, "prompt": "a dotted shape"}))
    write_metadata(root)
    return root
