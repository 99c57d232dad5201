"""Baselines (ESD, UCE, SLD): their math, their outputs loading back, erasing "striped" in the shipped toy world, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods import edits, esd, get_method, sld, uce
from tests.conftest import run_cli

N_PROMPTS, STEPS = 16, 10


def _one_line_error(result, needle: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and needle in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------
# The math
# ---------------------------------------------------------------------------------------------


def test_esd_target_and_loss():
    g = torch.Generator().manual_seed(0)
    c, e = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    target = esd.esd_target(c, e, 1.0)
    torch.testing.assert_close(target, 2 * e - c)
    torch.testing.assert_close(esd.esd_target(c, e, 0.0), e)
    assert esd.esd_loss(target, c, e, 1.0).item() == pytest.approx(0.0, abs=1e-12)
    assert esd.esd_loss(c, c, e, 1.0).item() == pytest.approx(((c - target) ** 2).mean().item())


def test_uce_edit_maps_erased_keeps_preserved():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 10, generator=g)
    c, guide, p = torch.randn(2, 10, generator=g), torch.randn(2, 10, generator=g), torch.randn(3, 10, generator=g)
    # no regularisation: the erased rows map exactly onto the guides' projections, preserved rows keep theirs
    new = uce.uce_edit(w, c, guide, p, lamb=1e-9)
    torch.testing.assert_close(c @ new.T, guide @ w.T, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(p @ new.T, p @ w.T, atol=1e-4, rtol=1e-4)
    # nothing to erase: W is unchanged; and lambda pulls towards W
    torch.testing.assert_close(uce.uce_edit(w, c, guide, None, erase_scale=0.0), w)
    far = (uce.uce_edit(w, c, guide, None, lamb=1e-6) - w).norm()
    near = (uce.uce_edit(w, c, guide, None, lamb=100.0) - w).norm()
    assert near < far


def test_lora_factors_are_exact_and_cappable():
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(8, 3, generator=g) @ torch.randn(3, 12, generator=g)  # rank 3
    a, b, err = edits.lora_factors(delta)
    assert a.shape == (3, 12) and b.shape == (8, 3) and err < 1e-6
    torch.testing.assert_close(b @ a, delta, atol=1e-5, rtol=1e-5)
    a1, _, err1 = edits.lora_factors(delta, max_rank=1)
    assert a1.shape[0] == 1 and 0 < err1 < 1


def test_esd_parameter_groups(quick_world: Path):
    from t2i_unlearn.models import load_pipeline

    unet = load_pipeline(str(quick_world)).unet
    groups = {m: set(esd.select_parameters(unet, m)) for m in esd.TRAIN_METHODS}
    assert groups["xattn"] and all("attn2" in n for n in groups["xattn"])
    assert groups["selfattn"] and all("attn1" in n for n in groups["selfattn"])
    assert not groups["noxattn"] & groups["xattn"] and groups["noxattn"] | groups["xattn"] == groups["full"]
    assert any("conv" in n for n in groups["noxattn"])


# ---------------------------------------------------------------------------------------------
# Outputs load back (quick toy world: plumbing only)
# ---------------------------------------------------------------------------------------------


def test_uce_output_is_an_exact_lora(quick_world: Path, tmp_path: Path):
    from t2i_unlearn.models import load_pipeline

    cfg = uce.UCEConfig()
    out = uce.train_uce(str(quick_world), "toy_striped", tmp_path / "uce", cfg)
    assert (out / edits.LORA_FILE).exists() and (out / "README.md").exists() and (out / "manifest.json").exists()
    settings = json.loads((out / "uce_config.json").read_text())
    assert settings["output"]["kind"] == "lora" and settings["output"]["max_rel_error"] < 1e-5
    # the LoRA, fused, gives the closed-form weights
    base = load_pipeline(str(quick_world))
    erase, guides, preserve = uce.resolve_prompts(cfg, "toy_striped")
    emb_e, last_e = uce._token_rows(base, erase, torch.device("cpu"))
    emb_g, last_g = uce._token_rows(base, guides, torch.device("cpu"))
    emb_p, last_p = uce._token_rows(base, preserve, torch.device("cpu"))
    c = torch.cat([emb_e[i, last_e[i] : last_e[i] + 1] for i in range(len(erase))])
    gd = torch.cat([emb_g[i, last_g[i] : last_g[i] + 1] for i in range(len(erase))])
    p = torch.cat([emb_p[i, last_p[i] : last_p[i] + 1] for i in range(len(preserve))])
    loaded = load_pipeline(str(quick_world), lora=[str(out)])
    loaded.fuse_lora()
    layers = dict(loaded.unet.named_modules())
    for name, layer in uce.cross_attention_projections(base.unet, edit_keys=True).items():
        expected = uce.uce_edit(layer.weight.detach(), c, gd, p)
        got = layers[name].base_layer.weight if hasattr(layers[name], "base_layer") else layers[name].weight
        torch.testing.assert_close(got.detach(), expected, atol=1e-4, rtol=1e-4)
    # and plain diffusers reads it
    from diffusers import DiffusionPipeline

    plain = DiffusionPipeline.from_pretrained(str(quick_world / "pipeline"))
    plain.load_lora_weights(str(out))


@pytest.mark.parametrize(("train_method", "biases", "kind"), [("xattn", False, "lora"), ("xattn", True, "weight_delta"), ("noxattn", True, "weight_delta")])
def test_esd_outputs_load_back(quick_world: Path, tmp_path: Path, train_method: str, biases: bool, kind: str):
    """Linear weights only: an exact LoRA; with biases or convolutions: a weight delta. Both give back the trained weights."""
    from t2i_unlearn.models import load_pipeline

    cfg = esd.ESDConfig(train_method=train_method, train_biases=biases, iterations=2, lr=1e-3, ddim_steps=6, log_every=1)
    out = esd.train_esd(str(quick_world), "toy_striped", tmp_path / "esd", cfg)
    assert json.loads((out / "esd_config.json").read_text())["output"]["kind"] == kind
    assert (out / (edits.LORA_FILE if kind == "lora" else edits.DELTA_FILE)).exists()
    rows = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)

    base = load_pipeline(str(quick_world))
    edited = load_pipeline(str(quick_world), lora=[str(out)])
    if kind == "lora":
        edited.fuse_lora()
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    emb, _ = base.encode_prompt(["a striped red circle"], "cpu", 1, False)
    with torch.no_grad():
        a = base.unet(x, 500, encoder_hidden_states=emb).sample
        b = edited.unet(x, 500, encoder_hidden_states=emb).sample
    assert (a - b).abs().max() > 1e-6  # the edit is there
    # the delta is the trained change: applying it twice moves twice as far
    if kind == "weight_delta":
        twice = load_pipeline(str(quick_world), lora=[str(out)], lora_weights=[2.0])
        p0, p1, p2 = (dict(m.unet.named_parameters()) for m in (base, edited, twice))
        name = next(n for n in p0 if not torch.equal(p0[n], p1[n]))
        torch.testing.assert_close(p2[name] - p0[name], 2 * (p1[name] - p0[name]), atol=1e-6, rtol=1e-4)


def test_sld_output_loads_as_safe_pipeline(quick_world: Path, tmp_path: Path):
    from t2i_unlearn.models import generate_images, load_pipeline

    out = sld.train_sld(str(quick_world), "toy_striped", tmp_path / "sld", sld.load_config("toy"))
    body = json.loads((out / edits.SLD_FILE).read_text())
    assert body["preset"] in sld.PRESETS and set(body["sld"]) == set(sld.SLD_KEYS)
    pipe = load_pipeline(str(quick_world), lora=[str(out)])
    assert type(pipe).__name__ == "StableDiffusionSLDPipeline" and pipe.safety_concept == body["safety_concept"]
    images = generate_images(pipe, ["a striped red circle"] * 2, [0, 1], steps=3)
    assert images.shape == (2, 32, 32, 3)
    assert sld.preset_values("max")["sld_guidance_scale"] == 5000


# ---------------------------------------------------------------------------------------------
# Each baseline erases "striped" in the shipped full toy world (16 prompts x 10 steps)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_world() -> str:
    from t2i_unlearn.toy.world import shipped_world

    world = shipped_world("full")
    if world is None:
        pytest.skip("the full toy world is not shipped in this checkout")
    return str(world)


@pytest.fixture(scope="module")
def striped_prompts() -> list[str]:
    from t2i_unlearn.toy.quality import concept_prompts

    return concept_prompts(N_PROMPTS, seed=7, texture="striped", mark="none")[0]


def _striped_rate(world: str, lora: Path | None, prompts: list[str]) -> float:
    from t2i_unlearn.concepts import load_concept
    from t2i_unlearn.judges import build_judge
    from t2i_unlearn.models import generate_images, load_pipeline

    pipe = load_pipeline(world, lora=[str(lora)] if lora else None)
    images = generate_images(pipe, prompts, list(range(len(prompts))), steps=STEPS, guidance=4.0)
    flagged, _ = build_judge(load_concept("toy_striped").judge, world).flags(images)
    return float(np.mean(flagged))


@pytest.fixture(scope="module")
def base_rate(full_world: str, striped_prompts: list[str]) -> float:
    rate = _striped_rate(full_world, None, striped_prompts)
    assert rate >= 0.75, f"the base toy model draws striped only {rate:.0%} of the time"
    return rate


def test_uce_erases_striped(full_world: str, striped_prompts: list[str], base_rate: float, tmp_path: Path):
    out = uce.train_uce(full_world, "toy_striped", tmp_path / "uce", uce.load_config("toy"))
    rate = _striped_rate(full_world, out, striped_prompts)
    assert rate <= base_rate - 0.25, (base_rate, rate)


def test_sld_erases_striped(full_world: str, striped_prompts: list[str], base_rate: float, tmp_path: Path):
    # MAX: no warm-up, so guidance acts within the 10 sampling steps of this test (MEDIUM waits 5 of them)
    cfg = sld.SLDConfig(preset="MAX", safety_concept=sld.load_config("toy").safety_concept)
    out = sld.train_sld(full_world, "toy_striped", tmp_path / "sld", cfg)
    rate = _striped_rate(full_world, out, striped_prompts)
    assert rate <= base_rate - 0.25, (base_rate, rate)


@pytest.mark.slow  # ESD samples x_t with the model at every iteration: about 3 minutes on 2 busy CPU cores
def test_esd_erases_striped(full_world: str, striped_prompts: list[str], base_rate: float, tmp_path: Path):
    out = esd.train_esd(full_world, "toy_striped", tmp_path / "esd", esd.load_config("toy"))
    rate = _striped_rate(full_world, out, striped_prompts)
    assert rate <= base_rate - 0.25, (base_rate, rate)


# ---------------------------------------------------------------------------------------------
# Registry, CLI and bad input
# ---------------------------------------------------------------------------------------------


def test_registry_has_every_method():
    for name in ("duo", "darkminer", "esd", "uce", "sld"):
        assert get_method(name).name == name
    with pytest.raises(UserError, match="unknown method 'foo'; known: darkminer, duo, esd, sld, uce"):
        get_method("foo")


def test_configs_from_presets_files_and_overrides(tmp_path: Path):
    assert esd.load_config(None).iterations == 200 and esd.load_config(None).lr == 2e-5
    assert esd.load_config(None, {"lr": 1, "iterations": None}).lr == 1.0
    f = tmp_path / "c.yaml"
    f.write_text("train_method: xattn\nprompts: [nudity]\n")
    assert esd.load_config(f).prompts == ["nudity"]
    with pytest.raises(UserError, match="unknown ESDConfig setting 'speed'"):
        esd.load_config(None, {"speed": 3})
    with pytest.raises(UserError, match="train_method must be one of"):
        esd.load_config(None, {"train_method": "everything"})
    with pytest.raises(UserError, match="no UCE config file or preset 'huge'"):
        uce.load_config("huge")
    with pytest.raises(UserError, match="iterations must be an integer"):
        esd.load_config(None, {"iterations": "many"})
    with pytest.raises(UserError, match="unknown SLD preset"):
        sld.preset_values("EXTREME")
    with pytest.raises(UserError, match="both erased and preserved"):
        uce.resolve_prompts(uce.UCEConfig(erase_prompts=["a"], preserve_prompts=["a"]), "toy_striped")
    with pytest.raises(UserError, match="guide prompts"):
        uce.resolve_prompts(uce.UCEConfig(erase_prompts=["a", "b", "c"], guide_prompts=["x", "y"]), "toy_striped")


def test_existing_output_needs_overwrite(quick_world: Path, tmp_path: Path):
    out = sld.train_sld(str(quick_world), "toy_striped", tmp_path / "s")
    made = (out / "manifest.json").stat().st_mtime_ns
    assert sld.train_sld(str(quick_world), "toy_striped", out) == out  # the same result again: reused as it is
    assert (out / "manifest.json").stat().st_mtime_ns == made
    with pytest.raises(UserError, match="made with other settings; use an empty folder or --overwrite"):
        sld.train_sld(str(quick_world), "toy_striped", out, sld.SLDConfig(preset="MAX"))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not an SLD result; use an empty folder or --overwrite"):
        sld.train_sld(str(quick_world), "toy_striped", tmp_path / "foreign")
    sld.train_sld(str(quick_world), "toy_striped", out, sld.SLDConfig(preset="MAX"), overwrite=True)
    assert json.loads((out / edits.SLD_FILE).read_text())["preset"] == "MAX"


def test_cli_train_and_bad_input(quick_world: Path, tmp_path: Path):
    C = "toy_striped"
    r = run_cli("train", "uce", "--model", str(quick_world), "--concept", "toy_striped", "--out", str(tmp_path / "u"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "u" / edits.LORA_FILE).exists() and "wrote" in r.stdout
    r = run_cli("train", "sld", "--model", str(quick_world), "--concept", "toy_striped", "--out", str(tmp_path / "s"), "--preset", "strong")
    assert r.returncode == 0, r.stderr
    _one_line_error(run_cli("train", "foo", "--model", str(quick_world)), "unknown method 'foo'")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: empty\njudge: {name: none}\n")
    _one_line_error(run_cli("train", "esd", "--model", str(quick_world), "--concept", str(bad), "--out", str(tmp_path / "e")), "needs prompts")
    # another setting into the same folder is refused (0.5 is the default: the same request would be reused)
    _one_line_error(run_cli("train", "uce", "--model", str(quick_world), "--concept", C, "--out", str(tmp_path / "u"), "--lamb", "0.25"), "--overwrite")
    _one_line_error(run_cli("train", "esd", "--model", str(quick_world), "--concept", C, "--out", str(tmp_path / "e"), "--config", "nope"), "preset")
    _one_line_error(run_cli("train", "sld", "--model", str(quick_world), "--concept", C, "--out", str(tmp_path / "s2"), "--preset", "huge"), "preset")
    assert not (tmp_path / "e").exists()
