"""Single-file checkpoints in the original layouts, which A1111, ComfyUI and diffusers' ``from_single_file`` load.

What each family's file holds (all fp32; every text encoder the pipeline has):

- SD 1.x (LDM): ``model.diffusion_model.*`` UNet, ``first_stage_model.*`` VAE,
  ``cond_stage_model.transformer.text_model.*`` CLIP-L in transformers' layout.
- SDXL (SGM): ``model.diffusion_model.*`` UNet (incl. ``label_emb`` for the size/crop conditioning),
  ``first_stage_model.*`` VAE, ``conditioner.embedders.0.transformer.text_model.*`` CLIP-L in
  transformers' layout, ``conditioner.embedders.1.model.*`` OpenCLIP-bigG in open_clip's layout
  (fused ``in_proj`` attention weights, ``text_projection`` as a ``[width, dim]`` matrix).
- SD3 / SD3.5 (the layout SAI ships): ``model.diffusion_model.*`` MMDiT (``joint_blocks``, fused ``qkv``),
  ``first_stage_model.*`` VAE, ``text_encoders.clip_l.transformer.*`` and ``text_encoders.clip_g.transformer.*``
  in transformers' layout, ``text_encoders.t5xxl.transformer.*`` when the pipeline has T5.

Each mapping is the inverse of a converter in diffusers' ``loaders/single_file_utils.py``, named in the
function's docstring; the tests read every family's file back through ``from_single_file``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from t2i_unlearn.errors import UserError

logger = logging.getLogger(__name__)


def single_file_problem(pipe: Any, family: str) -> str | None:
    """Why ``pipe`` has no single-file layout we write (a short reason), or ``None`` when it has one."""
    if family == "sd":
        # SD 2.x keeps an OpenCLIP-H text encoder (``cond_stage_model.model.*``), which we do not write yet.
        if type(pipe.text_encoder).__name__ != "CLIPTextModel" or pipe.text_encoder.config.hidden_act != "quick_gelu":
            return "SD 2.x (OpenCLIP-H text encoder) is not supported"
        return None
    if family == "sdxl":
        if getattr(pipe, "text_encoder", None) is None or getattr(pipe, "text_encoder_2", None) is None:
            return "SDXL without both text encoders (e.g. the refiner) is not supported"
        return None
    if family == "sd3":
        if getattr(pipe, "text_encoder", None) is None or getattr(pipe, "text_encoder_2", None) is None:
            return "SD3 without both CLIP text encoders is not supported"
        return None
    return f"no single-file layout for family {family}"


def single_file_state(pipe: Any, family: str) -> dict[str, torch.Tensor]:
    """Every weight of ``pipe`` in the original single-file layout of ``family`` (fp32, contiguous, CPU).

    Raises ``UserError`` when :func:`single_file_problem` names a problem, or when a weight has no
    original-layout name (a model variant the mapping does not know).
    """
    problem = single_file_problem(pipe, family)
    if problem:
        raise UserError(f"single-file export: {problem}")
    state: dict[str, torch.Tensor] = {}
    if family == "sd3":
        state.update(prefixed("model.diffusion_model.", sd3_transformer_to_original(pipe.transformer.state_dict())))
        if not _is_identity(pipe.text_encoder.state_dict().get("text_projection.weight")):
            logger.warning(
                "SD3 CLIP-L has a non-identity text_projection; it is written, but the original SD3 layout has none "
                "and diffusers' from_single_file replaces it with the identity"
            )
        state.update(prefixed("text_encoders.clip_l.transformer.", clip_hf_layout(pipe.text_encoder.state_dict())))
        state.update(prefixed("text_encoders.clip_g.transformer.", clip_hf_layout(pipe.text_encoder_2.state_dict())))
        if getattr(pipe, "text_encoder_3", None) is not None:
            state.update(prefixed("text_encoders.t5xxl.transformer.", t5_state(pipe.text_encoder_3)))
    else:
        state.update(prefixed("model.diffusion_model.", unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config))))
        if family == "sdxl":
            state.update(prefixed("conditioner.embedders.0.transformer.", clip_hf_layout(pipe.text_encoder.state_dict())))
            state.update(prefixed("conditioner.embedders.1.model.", clip_to_open_clip(pipe.text_encoder_2.state_dict())))
        else:
            state.update(prefixed("cond_stage_model.transformer.", clip_hf_layout(pipe.text_encoder.state_dict())))
    state.update(prefixed("first_stage_model.", vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config))))
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}


def write_single_file(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Save ``state`` as safetensors at ``path`` through a temporary name and a rename."""
    from t2i_unlearn.utils.io import atomic_save_safetensors

    return atomic_save_safetensors(path, state, metadata={"format": "pt"})


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with ``prefix`` in front of every key."""
    return {prefix + k: v for k, v in state.items()}


def _is_identity(weight: torch.Tensor | None) -> bool:
    if weight is None:
        return True
    return weight.ndim == 2 and weight.shape[0] == weight.shape[1] and torch.equal(weight, torch.eye(len(weight), dtype=weight.dtype, device=weight.device))


# ---------------------------------------------------------------------------------------------
# UNet and VAE (SD 1.x and SDXL; the VAE also for SD3): inverse of convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint
# ---------------------------------------------------------------------------------------------


def _unet_ldm_prefixes(config: dict[str, Any], keys: Sequence[str]) -> list[tuple[str, str]]:
    """(diffusers prefix, original SD prefix) pairs for the UNet's blocks, derived from its config."""
    pairs = [
        ("time_embedding.linear_1.", "time_embed.0."),
        ("time_embedding.linear_2.", "time_embed.2."),
        # SDXL's size/crop conditioning (addition_embed_type "text_time") and class embeddings share ``label_emb``
        ("add_embedding.linear_1.", "label_emb.0.0."),
        ("add_embedding.linear_2.", "label_emb.0.2."),
        ("class_embedding.linear_1.", "label_emb.0.0."),
        ("class_embedding.linear_2.", "label_emb.0.2."),
        ("conv_in.", "input_blocks.0.0."),
        ("conv_norm_out.", "out.0."),
        ("conv_out.", "out.2."),
        ("mid_block.resnets.0.", "middle_block.0."),
        ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    lpb = config["layers_per_block"]
    n = len(config["block_out_channels"])
    for i in range(n):
        for j in range(lpb):
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{(lpb + 1) * i + j + 1}.0."))
            pairs.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{(lpb + 1) * i + j + 1}.1."))
        if i < n - 1:
            pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(lpb + 1) * (i + 1)}.0.op."))
        for j in range(lpb + 1):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{(lpb + 1) * i + j}.0."))
            pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{(lpb + 1) * i + j}.1."))
        if i < n - 1:
            has_attention = any(k.startswith(f"up_blocks.{i}.attentions.") for k in keys)
            pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{(lpb + 1) * i + lpb}.{2 if has_attention else 1}."))
    return pairs


_RESNET_RENAMES = [
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
]


def unet_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers ``UNet2DConditionModel`` state dict in the original SD/SGM layout (keys without ``model.diffusion_model.``)."""
    prefixes = sorted(_unet_ldm_prefixes(config, list(state)), key=lambda p: -len(p[0]))
    out = {}
    for key, value in state.items():
        for hf, ldm in prefixes:
            if key.startswith(hf):
                rest = key[len(hf) :]
                if ".resnets." in hf or hf.startswith(("mid_block.resnets",)):
                    for a, b in _RESNET_RENAMES:
                        if rest.startswith(a):
                            rest = b + rest[len(a) :]
                            break
                out[ldm + rest] = value
                break
        else:
            raise UserError(f"single-file export: no original-layout name for UNet weight {key}")
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKL`` state dict in the original SD layout (keys without ``first_stage_model.``)."""
    n = len(config["block_out_channels"])
    prefixes = [
        ("encoder.conv_norm_out.", "encoder.norm_out."),
        ("decoder.conv_norm_out.", "decoder.norm_out."),
        ("encoder.mid_block.resnets.0.", "encoder.mid.block_1."),
        ("encoder.mid_block.resnets.1.", "encoder.mid.block_2."),
        ("encoder.mid_block.attentions.0.", "encoder.mid.attn_1."),
        ("decoder.mid_block.resnets.0.", "decoder.mid.block_1."),
        ("decoder.mid_block.resnets.1.", "decoder.mid.block_2."),
        ("decoder.mid_block.attentions.0.", "decoder.mid.attn_1."),
    ]
    for i in range(n):
        prefixes.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
        prefixes.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample."))
        for j in range(config["layers_per_block"] + 1):
            prefixes.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}."))
            prefixes.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{n - 1 - i}.block.{j}."))
    attn = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}
    out = {}
    for key, value in state.items():
        new = key
        for hf, ldm in sorted(prefixes, key=lambda p: -len(p[0])):
            if key.startswith(hf):
                rest = key[len(hf) :]
                if "attentions" in hf:
                    for a, b in attn.items():
                        if rest.startswith(a):
                            rest = b + rest[len(a) :]
                            # the original attention uses 1x1 convolutions
                            if rest.endswith("weight") and value.ndim == 2:
                                value = value[:, :, None, None]
                            break
                rest = rest.replace("conv_shortcut.", "nin_shortcut.")
                new = ldm + rest
                break
        out[new] = value
    return out


# ---------------------------------------------------------------------------------------------
# Text encoders: inverse of convert_ldm_clip_checkpoint, convert_open_clip_checkpoint, convert_sd3_t5_checkpoint_to_diffusers
# ---------------------------------------------------------------------------------------------


def clip_hf_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers CLIP text model's state dict with the ``text_model.`` level the original layouts keep.

    transformers >= 5.6 dropped that level from ``CLIPTextModel`` (not from ``CLIPTextModelWithProjection``,
    whose ``text_projection.weight`` stays at the top).
    """
    return {k if k.startswith("text_model.") or k.startswith("text_projection.") else "text_model." + k: v for k, v in state.items()}


_OPEN_CLIP_TOP = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER = {
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
    "self_attn.out_proj.": "attn.out_proj.",
}
_LAYER = re.compile(r"text_model\.encoder\.layers\.(\d+)\.(.+)")


def clip_to_open_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers CLIP text model (with projection) in open_clip's layout (keys without the ``...model.`` prefix).

    Per layer, the separate q/k/v projections become one ``attn.in_proj_weight`` ``[3 width, width]``
    (and ``in_proj_bias``), stacked q, k, v; ``text_projection.weight`` ``[dim, width]`` becomes
    ``text_projection`` ``[width, dim]`` (open_clip computes ``x @ text_projection``).
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in clip_hf_layout(state).items():
        if key in _OPEN_CLIP_TOP:
            out[_OPEN_CLIP_TOP[key]] = value
            continue
        if key == "text_projection.weight":
            out["text_projection"] = value.T
            continue
        match = _LAYER.fullmatch(key)
        if match:
            layer, rest = match.groups()
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                _, proj, kind = rest.split(".")
                qkv.setdefault((layer, kind), {})[proj[0]] = value
                continue
            for a, b in _OPEN_CLIP_LAYER.items():
                if rest.startswith(a):
                    out[f"transformer.resblocks.{layer}.{b}{rest[len(a) :]}"] = value
                    break
            else:
                raise UserError(f"single-file export: no open_clip name for text encoder weight {key}")
            continue
        raise UserError(f"single-file export: no open_clip name for text encoder weight {key}")
    for (layer, kind), parts in qkv.items():
        out[f"transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def t5_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A transformers T5 encoder's state dict, with the input embedding under both its names.

    ``encoder.embed_tokens`` is tied to ``shared``. safetensors refuses two names for one tensor, and
    diffusers' single-file T5 loader does not tie them again (it leaves ``encoder.embed_tokens`` empty
    without its own copy), so the embedding is written twice, as a copy.
    """
    state = model.state_dict()
    embed = state.get("encoder.embed_tokens.weight")
    if embed is not None and "shared.weight" in state and embed.data_ptr() == state["shared.weight"].data_ptr():
        state["encoder.embed_tokens.weight"] = embed.clone()
    return state


# ---------------------------------------------------------------------------------------------
# SD3 MMDiT: inverse of convert_sd3_transformer_checkpoint_to_diffusers
# ---------------------------------------------------------------------------------------------

_SD3_TOP = {
    "pos_embed.pos_embed": "pos_embed",
    "pos_embed.proj.": "x_embedder.proj.",
    "time_text_embed.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
    "time_text_embed.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
    "time_text_embed.text_embedder.linear_1.": "y_embedder.mlp.0.",
    "time_text_embed.text_embedder.linear_2.": "y_embedder.mlp.2.",
    "context_embedder.": "context_embedder.",
    "proj_out.": "final_layer.linear.",
    "norm_out.linear.": "final_layer.adaLN_modulation.1.",
}
# within transformer_blocks.{i}: diffusers name -> original name under joint_blocks.{i}
_SD3_BLOCK = {
    "norm1.linear.": "x_block.adaLN_modulation.1.",
    "norm1_context.linear.": "context_block.adaLN_modulation.1.",
    "attn.to_out.0.": "x_block.attn.proj.",
    "attn.to_add_out.": "context_block.attn.proj.",
    "attn.norm_q.": "x_block.attn.ln_q.",
    "attn.norm_k.": "x_block.attn.ln_k.",
    "attn.norm_added_q.": "context_block.attn.ln_q.",
    "attn.norm_added_k.": "context_block.attn.ln_k.",
    "attn2.to_out.0.": "x_block.attn2.proj.",
    "attn2.norm_q.": "x_block.attn2.ln_q.",
    "attn2.norm_k.": "x_block.attn2.ln_k.",
    "ff.net.0.proj.": "x_block.mlp.fc1.",
    "ff.net.2.": "x_block.mlp.fc2.",
    "ff_context.net.0.proj.": "context_block.mlp.fc1.",
    "ff_context.net.2.": "context_block.mlp.fc2.",
}
# separate q/k/v projections -> the original fused ``qkv`` (stacked q, k, v)
_SD3_QKV = {
    "attn.to_": "x_block.attn.qkv.",
    "attn.add_": "context_block.attn.qkv.",
    "attn2.to_": "x_block.attn2.qkv.",
}
_SD3_QKV_KEY = re.compile(r"(attn\.to_|attn\.add_|attn2\.to_)([qkv])(?:_proj)?\.(weight|bias)")
_BLOCK = re.compile(r"transformer_blocks\.(\d+)\.(.+)")


def _swap_halves(weight: torch.Tensor) -> torch.Tensor:
    """(a, b) -> (b, a) along dim 0: diffusers' final adaLN is (scale, shift), the original's (shift, scale)."""
    a, b = weight.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def sd3_transformer_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers ``SD3Transformer2DModel`` state dict in the MMDiT layout SAI ships (keys without ``model.diffusion_model.``).

    Covers SD3 and SD3.5 (QK-norm ``ln_q``/``ln_k``, the extra ``attn2`` of dual-attention blocks). The last
    block's context stream and the final layer keep their adaLN as (shift, scale) in the original layout.
    """
    last = max((int(m.group(1)) for k in state if (m := _BLOCK.fullmatch(k))), default=-1)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = _BLOCK.fullmatch(key)
        if match is None:
            for a, b in _SD3_TOP.items():
                if key.startswith(a):
                    out[b + key[len(a) :]] = _swap_halves(value) if a == "norm_out.linear." else value
                    break
            else:
                raise UserError(f"single-file export: no original-layout name for SD3 transformer weight {key}")
            continue
        block, rest = int(match.group(1)), match.group(2)
        prefix = f"joint_blocks.{block}."
        fused = _SD3_QKV_KEY.fullmatch(rest)
        if fused:
            stream, proj, kind = fused.groups()
            qkv.setdefault(prefix + _SD3_QKV[stream] + kind, {})[proj] = value
            continue
        for a, b in _SD3_BLOCK.items():
            if rest.startswith(a):
                swap = block == last and a == "norm1_context.linear."
                out[prefix + b + rest[len(a) :]] = _swap_halves(value) if swap else value
                break
        else:
            raise UserError(f"single-file export: no original-layout name for SD3 transformer weight {key}")
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out
