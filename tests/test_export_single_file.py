"""Single-file export for SD 1.x, SDXL and SD3: diffusers' own ``from_single_file`` reads each file back exactly.

The tiny models here give every text encoder its own width: diffusers' single-file loader tells the
encoders of one checkpoint apart by their embedding width (as real CLIP-L, OpenCLIP-bigG and CLIP-G
differ), so the equal widths of ``tests._tiny.build_tiny``'s SDXL and SD3 would load one encoder's
weights into the other.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from t2i_unlearn.adapters import add_lora, default_targets, denoiser, export_pipeline, save_lora
from t2i_unlearn.single_file import single_file_problem
from t2i_unlearn.toy.world import shipped_world
from tests._tiny import _clip_config, _vae, build_tiny, sd3_transformer, sdxl_unet

PIPELINES = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline", "sd3": "StableDiffusion3Pipeline"}
# what each family's file may hold, by top-level prefix
PREFIXES = {
    "sd": {"model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."},
    "sdxl": {"model.diffusion_model.", "first_stage_model.", "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."},
    "sd3": {
        "model.diffusion_model.",
        "first_stage_model.",
        "text_encoders.clip_l.transformer.",
        "text_encoders.clip_g.transformer.",
        "text_encoders.t5xxl.transformer.",
    },
}


def _tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(shipped_world("full") / "pipeline" / "tokenizer")


def _tiny_sdxl(out: Path) -> Path:
    """SDXL with CLIP-L width 32 and a "bigG" of width 48 whose projection (40) differs from its width."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tok = _tokenizer()
    unet = sdxl_unet(cross_attention_dim=32 + 48, pooled_dim=40, transformer_layers=(1, 2))
    pipe = StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_clip_config(tok, hidden=32)),
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(tok, hidden=48, projection=40)),
        tokenizer=tok,
        tokenizer_2=tok,
        unet=unet,
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    )
    pipe.save_pretrained(out)
    return out


def _tiny_sd3(out: Path) -> Path:
    """SD3.5-style MMDiT (two blocks, QK-norm, a dual-attention block), CLIP-L 32, CLIP-G 48, T5 96 wide."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, T5Config, T5EncoderModel, T5TokenizerFast

    torch.manual_seed(0)
    tok = _tokenizer()
    clip_l = CLIPTextModelWithProjection(_clip_config(tok, hidden=32, projection=32))
    # SD3's CLIP-L has no projection in the original layout (SAI's reference uses its pooled output as is),
    # and diffusers' single-file loader sets the identity: give the tiny model the same.
    with torch.no_grad():
        clip_l.text_projection.weight.copy_(torch.eye(32))
    transformer = sd3_transformer(num_layers=2, joint_attention_dim=96, pooled_projection_dim=32 + 48, dual_attention_layers=(0,), qk_norm="rms_norm")
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=clip_l,
        tokenizer=tok,
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(tok, hidden=48, projection=48)),
        tokenizer_2=tok,
        text_encoder_3=T5EncoderModel(T5Config(vocab_size=8, d_model=96, d_ff=37, d_kv=8, num_layers=1, num_heads=4)),
        tokenizer_3=T5TokenizerFast(extra_ids=0),
    )
    pipe.save_pretrained(out)
    return out


def _components(family: str) -> list[str]:
    if family == "sd3":
        return ["transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"]
    if family == "sdxl":
        return ["unet", "vae", "text_encoder", "text_encoder_2"]
    return ["unet", "vae", "text_encoder"]


def _images(pipe, family: str):
    kwargs = {"num_inference_steps": 2, "height": 32, "width": 32, "output_type": "np", "generator": torch.Generator().manual_seed(0)}
    if family == "sd3":
        kwargs["max_sequence_length"] = 16
    with torch.no_grad():
        return torch.from_numpy(pipe("a striped shape", **kwargs).images)


@pytest.fixture(scope="module", params=["sd", "sdxl", "sd3"])
def exported(request, tmp_path_factory) -> tuple[str, Path, Path, dict[str, Path]]:
    """(family, base model folder, LoRA folder, what export_pipeline wrote) for a random non-zero LoRA."""
    import diffusers

    family = request.param
    root = tmp_path_factory.mktemp(f"export-{family}")
    if family == "sd":
        model = build_tiny("sd", shipped_world("full") / "pipeline" / "tokenizer", root / "model")
    else:
        model = (_tiny_sdxl if family == "sdxl" else _tiny_sd3)(root / "model")
    pipe = getattr(diffusers, PIPELINES[family]).from_pretrained(str(model))
    net = denoiser(pipe)
    # init=False: A and B both random, so the fused weights differ from the base ones
    add_lora(net, rank=2, alpha=2, targets=default_targets(family), init=False, seed=0)
    save_lora(root / "lora", net, family)
    written = export_pipeline(str(model), [str(root / "lora")], root / "exp")
    return family, model, root / "lora", written


def test_single_file_layout(exported) -> None:
    family, _, _, written = exported
    state = load_file(str(written["single_file"]))
    outside = [k for k in state if not any(k.startswith(p) for p in PREFIXES[family])]
    assert not outside, outside[:5]
    assert all(v.dtype == torch.float32 for v in state.values())
    if family == "sdxl":
        g = "conditioner.embedders.1.model."
        assert state[g + "transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * 48, 48)
        assert state[g + "text_projection"].shape == (48, 40)  # open_clip's [width, dim]
        assert g + "positional_embedding" in state and "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight" in state
        assert "model.diffusion_model.label_emb.0.0.weight" in state
    if family == "sd3":
        m = "model.diffusion_model.joint_blocks."
        assert state[m + "0.x_block.attn.qkv.weight"].shape == (96, 32)
        assert m + "0.x_block.attn2.qkv.weight" in state and m + "1.x_block.attn.ln_q.weight" in state
        assert m + "1.context_block.attn.proj.weight" not in state  # the last context block is pre-only
        assert "text_encoders.t5xxl.transformer.shared.weight" in state
        assert "text_encoders.clip_g.transformer.text_projection.weight" in state


def test_from_single_file_reads_back_the_same_weights_and_images(exported) -> None:
    import diffusers

    family, model, lora, written = exported
    cls = getattr(diffusers, PIPELINES[family])
    fused = cls.from_pretrained(str(written["pipeline"]))
    single = cls.from_single_file(str(written["single_file"]), config=str(written["pipeline"]))
    if family == "sd3":
        # diffusers' single-file T5 loader (0.42) leaves the model in training mode, dropout on
        single.text_encoder_3.eval()
    for name in _components(family):
        a, b = getattr(fused, name).state_dict(), getattr(single, name).state_dict()
        assert a.keys() == b.keys(), (name, sorted(set(a) ^ set(b))[:5])
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}.{k}"
    # the export fused a LoRA that changes the denoiser
    base = cls.from_pretrained(str(model))
    net = "transformer" if family == "sd3" else "unet"
    assert not all(torch.equal(v, denoiser(fused).state_dict()[k]) for k, v in getattr(base, net).state_dict().items())
    # same images from the single file, the fused folder and the base model with the LoRA attached
    images = _images(single, family)
    # equal weights, so equal images up to float rounding (SD3 differs by ~1e-6 on CPU)
    torch.testing.assert_close(images, _images(fused, family), atol=1e-5, rtol=0)
    base.load_lora_weights(str(lora))
    torch.testing.assert_close(images, _images(base, family), atol=1e-4, rtol=1e-4)


def test_unsupported_layouts_are_named() -> None:
    assert "refiner" in single_file_problem(SimpleNamespace(text_encoder=None, text_encoder_2=object()), "sdxl")
    gelu = SimpleNamespace(text_encoder=SimpleNamespace(config=SimpleNamespace(hidden_act="gelu")))
    assert "SD 2.x" in single_file_problem(gelu, "sd")
