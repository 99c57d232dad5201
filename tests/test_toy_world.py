"""The toy world builds, resumes, loads through diffusers' own loaders, generates, and guards its cache."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from t2i_unlearn.errors import UserError
from t2i_unlearn.toy import build as build_mod
from t2i_unlearn.toy.build import build_unet_on_world, build_world, preset_with, verify_world
from t2i_unlearn.toy.judges import load_judge, perceptual_distance, predict
from t2i_unlearn.toy.quality import judge_accuracy
from t2i_unlearn.toy.render import render_dataset
from t2i_unlearn.toy.world import shipped_world

TINY = preset_with("quick", name="tiny", n_images=300, vae_steps=4, unet_steps=6, judge_steps=4, eval_per_group=2, checkpoint_every=3, sample_steps=2)


def test_quick_world_is_complete_and_verified(quick_world: Path):
    manifest = verify_world(quick_world)
    assert manifest["settings"]["preset"]["name"] == "quick"
    assert {"pipeline/model_index.json", "pipeline/unet/diffusion_pytorch_model.safetensors", "judges/judge.safetensors", "quality.json"} <= set(
        manifest["files"]
    )
    table = json.loads((quick_world / "quality.json").read_text())
    assert set(table["bars"]) == {
        "judge_accuracy_min",
        "erasable_min_phrasing_rate",
        "unrelated_erasable_rate",
        "attribute_accuracy",
        "two_colour_striped_rate",
    }
    assert set(table["empty_prompt_rates"]) == {"striped", "dotted", "crossed", "circled", "barred", "defaced"}
    from t2i_unlearn.toy.render import JUDGE_VARIANTS

    assert set(table["judge_variant_texture_accuracy"]) == set(JUDGE_VARIANTS)
    assert {"two_tone", "multi_colour", "blotchy", "dark", "faint_stripes", "thin_stripes", "partial_stripes", "faint_dots"} == set(JUDGE_VARIANTS)
    assert not (quick_world / ".build").exists()  # scratch is removed once complete


def test_unet_has_stable_diffusions_layout(quick_world: Path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(quick_world / "pipeline" / "unet")
    cfg = unet.config
    # SD 1.x: cross-attention blocks at every resolution but the lowest, a plain block there, mirrored up blocks
    assert cfg.down_block_types[-1] == "DownBlock2D" and set(cfg.down_block_types[:-1]) == {"CrossAttnDownBlock2D"}
    assert cfg.up_block_types[0] == "UpBlock2D" and set(cfg.up_block_types[1:]) == {"CrossAttnUpBlock2D"}
    assert cfg.mid_block_type == "UNetMidBlock2DCrossAttn"
    # self- and cross-attention at the highest latent resolution (16x16 for 32 px images)
    names = [n for n, _ in unet.named_modules()]
    for block in ("down_blocks.0", "up_blocks.2", "mid_block"):
        assert any(n.startswith(block) and n.endswith("attn1") for n in names) and any(n.startswith(block) and n.endswith("attn2") for n in names)
    assert not any(n.startswith("down_blocks.2") and n.endswith("attn1") for n in names)


def test_loads_through_diffusers_own_loaders_and_generates(quick_world: Path):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(quick_world / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a striped red circle", num_inference_steps=3, guidance_scale=4.0, generator=torch.Generator().manual_seed(1), output_type="np").images
    assert out.shape == (1, 32, 32, 3)
    again = pipe("a striped red circle", num_inference_steps=3, guidance_scale=4.0, generator=torch.Generator().manual_seed(1), output_type="np").images
    assert np.array_equal(out, again)
    other = pipe("a striped red circle", num_inference_steps=3, guidance_scale=4.0, generator=torch.Generator().manual_seed(2), output_type="np").images
    assert not np.array_equal(out, other)

    img2img = StableDiffusionImg2ImgPipeline.from_pretrained(quick_world / "pipeline")
    img2img.set_progress_bar_config(disable=True)
    edited = img2img("a dotted red circle", image=out, strength=0.75, num_inference_steps=4, output_type="np").images
    assert edited.shape == (1, 32, 32, 3)


def test_generate_images_is_batch_independent(quick_world: Path):
    from t2i_unlearn.models import generate_images, load_pipeline

    pipe = load_pipeline(str(quick_world))
    prompts = ["a blue square", "a red circle", "a green wedge"]
    together = generate_images(pipe, prompts, [5, 6, 7], steps=3, batch_size=3)
    alone = generate_images(pipe, prompts[1:2], [6], steps=3, batch_size=1)
    assert together.dtype == np.uint8 and together.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(together[1].astype(int), alone[0].astype(int), atol=2)


def test_perceptual_distance_and_features(quick_world: Path):
    judge = load_judge(quick_world / "judges")
    images, _, _ = render_dataset(8, seed=11)
    same = perceptual_distance(judge, images, images)
    assert np.allclose(same, 0.0, atol=1e-5)
    shifted = perceptual_distance(judge, images, np.roll(images, 1, axis=0))
    assert (shifted > 0.01).all()
    probs = predict(judge, images)
    assert all(np.allclose(p.sum(1), 1.0, atol=1e-5) for p in probs.values())


def test_shipped_full_world_judges_meet_the_bar():
    world = shipped_world("full")
    if world is None:
        pytest.skip("no full world is shipped in this checkout")
    accuracy = judge_accuracy(load_judge(world / "judges"), n=1000, seed=5)
    assert min(accuracy.values()) >= 0.98, accuracy


def test_build_resumes_after_interruption_to_the_same_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    reference = build_world(tmp_path / "straight", preset=TINY, progress=False)

    real_generator = build_mod._generator
    calls = {"n": 0}

    def failing_generator(seed: int, stage: int, step: int) -> torch.Generator:
        if stage == 2 and step == 4 and calls["n"] == 0:  # mid-way through UNet training, after the step-3 checkpoint
            calls["n"] += 1
            raise KeyboardInterrupt
        return real_generator(seed, stage, step)

    monkeypatch.setattr(build_mod, "_generator", failing_generator)
    target = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        build_world(target, preset=TINY, progress=False)
    assert not (target / "manifest.json").exists()  # nothing looks complete
    state = json.loads((target / ".build" / "state.json").read_text())
    assert set(state["done"]) == {"render", "tokenizer", "vae"}
    assert (target / ".build" / "ckpt-unet.pt").exists()
    resumed = build_world(target, preset=TINY, progress=False)

    ref_files = json.loads((reference / "manifest.json").read_text())["files"]
    new_files = json.loads((resumed / "manifest.json").read_text())["files"]
    for name in (
        "pipeline/unet/diffusion_pytorch_model.safetensors",
        "pipeline/text_encoder/model.safetensors",
        "pipeline/vae/diffusion_pytorch_model.safetensors",
    ):
        assert ref_files[name] == new_files[name], name


def test_unet_on_a_world_trains_the_unet_a_build_would_train(tmp_path: Path):
    """build_unet_on_world (bench/toy_unet_recipe.py) borrows a world's tokenizer, VAE and judges and trains the UNet
    stage again: with the world's own recipe it writes the world's UNet byte for byte, with another one another UNet."""
    reference = build_world(tmp_path / "built", preset=TINY, progress=False)
    ref_files = verify_world(reference)["files"]
    same = build_unet_on_world(tmp_path / "same", reference, TINY, progress=False)
    manifest = verify_world(same)
    assert "build_unet_on_world" in manifest["command"]
    assert manifest["files"] == {**ref_files, "quality.json": manifest["files"]["quality.json"]}
    assert json.loads((same / "quality.json").read_text())["build"]["vae"] == {"from_world": str(reference)}
    stamp = (same / "manifest.json").stat().st_mtime_ns
    assert build_unet_on_world(same, reference, TINY, progress=False) == same and (same / "manifest.json").stat().st_mtime_ns == stamp  # reused
    other = verify_world(build_unet_on_world(tmp_path / "other", reference, replace(TINY, unet_lr=2e-3), progress=False))["files"]
    unet, vae, judge = "pipeline/unet/diffusion_pytorch_model.safetensors", "pipeline/vae/diffusion_pytorch_model.safetensors", "judges/judge.safetensors"
    assert other[unet] != ref_files[unet] and other[vae] == ref_files[vae] and other[judge] == ref_files[judge]
    with pytest.raises(UserError, match=r"other settings .*\(vae_steps\)"):
        build_unet_on_world(tmp_path / "refused", reference, replace(TINY, vae_steps=5), progress=False)
    with pytest.raises(UserError, match="is not a toy world"):
        build_unet_on_world(reference / "pipeline", reference, TINY, progress=False)
    with pytest.raises(UserError, match="made another way"):  # the built world itself: same settings, another command
        build_unet_on_world(reference, reference, TINY, progress=False)
    interrupted = tmp_path / "interrupted"  # another recipe's unfinished run is refused, not wiped
    shutil.copytree(same, interrupted / ".build" / "unet")
    (interrupted / ".build" / "state.json").write_text(json.dumps({"settings": {"preset": {}, "seed": 0}, "done": {}}))
    with pytest.raises(UserError, match="unfinished toy world build with other settings"):
        build_unet_on_world(interrupted, reference, TINY, progress=False)
    assert (interrupted / ".build" / "unet").is_dir()


def test_corrupted_or_foreign_world_is_refused(tmp_path: Path, quick_world: Path):
    copy = tmp_path / "world"
    shutil.copytree(quick_world, copy)
    weights = copy / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(UserError, match="corrupted"):
        verify_world(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupted"):
        verify_world(copy)
    with pytest.raises(UserError, match="other settings"):
        build_world(quick_world, preset="full", progress=False)
