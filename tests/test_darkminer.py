"""Dark Miner: the loss terms on hand-made tensors, each stage on the quick toy world, the loop's stop rule,
resumption after a stop, the CLI end to end (train, eval, eval --attack with the mined set), SDXL (two text encoders
and a pooled embedding: train, load, exact replay of the mined tokens, eval --attack) and the SD3 refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from t2i_unlearn.methods import darkminer as dm
from t2i_unlearn.methods.darkminer_config import DarkMinerConfig
from tests.conftest import run_cli

TINY = {"rounds": 2, "mine_steps": 3, "circumvent_steps": 3, "verify_images": 1, "threshold": -1.0, "mine_batch_size": 2, "circumvent_batch_size": 2}
TINY_FLAGS = ["--rounds", "2", "--mine-steps", "3", "--circumvent-steps", "3", "--verify-images", "1", "--threshold", "-1"]
TINY_FLAGS += ["--mine-batch-size", "2", "--circumvent-batch-size", "2", "--report-to", "jsonl"]


# ---- the objective, by hand ----


def test_mining_loss_is_the_mean_squared_denoising_error() -> None:
    assert dm.mining_loss(torch.tensor([1.0, 2.0]), torch.zeros(2)).item() == pytest.approx(2.5)
    assert dm.mining_loss(torch.ones(2, 3), torch.ones(2, 3)).item() == 0.0


def test_verification_score_by_hand() -> None:
    ref = torch.tensor([[0.0, 0.0]])
    assert dm.verification_score(torch.tensor([[1.0, 0.0]]), ref, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(1.0)  # c's image = the pool image
    assert dm.verification_score(torch.tensor([[2.0, 0.0]]), ref, torch.tensor([[5.0, 0.0]])).item() == pytest.approx(1.0)  # only the direction counts
    assert dm.verification_score(torch.tensor([[-1.0, 0.0]]), ref, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(-1.0)
    assert dm.verification_score(torch.tensor([[0.0, 1.0]]), ref, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.0)
    # two pool images (cos 1 and 0) and two seeds with their own references: the mean of all four cosines
    fc = torch.tensor([[1.0, 0.0], [2.0, 1.0]])
    fr = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    pool = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # seed 0: directions (1,0) vs (1,0), (0,1) -> 1, 0; seed 1: (1,0) vs (0,-1), (-1,0) -> 0, -1
    assert dm.verification_score(fc, fr, pool).item() == pytest.approx(0.0)


def test_circumvent_and_preservation_losses_by_hand() -> None:
    assert dm.circumvent_loss(torch.full((2, 2), 2.0), torch.zeros(2, 2)).item() == pytest.approx(4.0)
    preds = {"anchor": torch.ones(3), "empty": torch.full((3,), 2.0), "negative": torch.full((3,), 9.0)}
    frozen = {k: torch.zeros(3) for k in preds}
    # 1 * 1 + 2 * 4 + 0 * 81
    assert dm.preservation_loss(preds, frozen, {"anchor": 1.0, "empty": 2.0, "negative": 0.0}).item() == pytest.approx(9.0)


def test_stop_rule() -> None:
    assert not dm.should_stop([True, False], patience=2, rounds=5)
    assert dm.should_stop([True, False, False], patience=2, rounds=5)  # two misses in a row
    assert not dm.should_stop([False, True, False], patience=2, rounds=5)
    assert dm.should_stop([True] * 5, patience=2, rounds=5)  # the budget
    assert not dm.should_stop([False], patience=2, rounds=5)


def test_config_checks() -> None:
    from t2i_unlearn.errors import UserError

    DarkMinerConfig().validate()
    with pytest.raises(UserError, match="num_tokens"):
        DarkMinerConfig(num_tokens=0).validate()
    with pytest.raises(UserError, match="init must be one of"):
        DarkMinerConfig(init="zeros").validate()
    assert DarkMinerConfig().targets == ["attn2.to_k", "attn2.to_v"]
    assert dm.load_config("toy").encoder == "toy" and dm.load_config("nudity").anchor_prompt


# ---- the stages on the quick toy world ----


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests._tiny import toy_pairs

    return toy_pairs(tmp_path_factory.mktemp("dm") / "pairs", n=8)


def _setup(world: Path, pool: Path, **kw) -> dm.MinerSetup:
    from t2i_unlearn.concepts import load_concept

    images, _ = dm.read_pool(pool)
    cfg = DarkMinerConfig(**{"encoder": "toy", "mine_lr": 1e-2, "circumvent_lr": 1e-3, **kw})
    return dm.prepare(str(world), load_concept("toy_striped"), cfg, images, device="cpu")


def test_encode_tokens_equals_the_text_encoder_on_real_tokens(quick_world: Path, pool: Path) -> None:
    from t2i_unlearn.attacks.text import encode_prompts, prompt_ids, token_embedding_matrix

    setup = _setup(quick_world, pool, num_tokens=4)
    tok, te = setup.pipe.tokenizer, setup.pipe.text_encoder
    ids = prompt_ids(tok, "a striped red circle")[:4]
    assert len(ids) == 4
    vectors = token_embedding_matrix(te)[ids].detach()
    with torch.no_grad():
        ours = dm.encode_tokens(te, setup.templates[0], vectors)
        assert torch.equal(dm.condition(setup, vectors)["encoder_hidden_states"], ours)
    assert torch.allclose(ours, encode_prompts(setup.pipe, [tok.decode(ids)]), atol=1e-5)


def test_mine_lowers_the_denoising_loss_and_verify_scores(quick_world: Path, pool: Path) -> None:
    setup = _setup(quick_world, pool, mine_steps=40, mine_batch_size=4, init="random", verify_images=2)
    vectors, info = dm.mine(setup, 0)
    assert vectors.shape == (setup.config.num_tokens, setup.pipe.text_encoder.config.hidden_size)
    assert info["loss_final"] < info["loss_init"], info
    result = dm.verify(setup, vectors, 0)
    assert -1.0 <= result["score"] <= 1.0 and 0.0 <= result["judge_rate"] <= 1.0
    assert result["passed"] == (result["score"] >= setup.config.threshold)


def _gaps(setup: dm.MinerSetup, mined: torch.Tensor) -> tuple[float, float]:
    """(||eps(x|c) - eps0(x|c0)||^2, ||eps(x|"") - eps0(x|"")||^2) on fixed draws."""
    gen = torch.Generator().manual_seed(123)
    x, t, _ = dm._noised(setup, gen, 8)
    with torch.no_grad():
        cond = dm._expand(dm.condition(setup, mined), 8)
        pred_c = dm._predict(setup, x, t, cond)
        pred_e = dm._predict(setup, x, t, dm._expand(setup.empty, 8))
        setup.net.disable_adapters()
        ref_a = dm._predict(setup, x, t, dm._expand(setup.anchor, 8))
        ref_e = dm._predict(setup, x, t, dm._expand(setup.empty, 8))
        setup.net.enable_adapters()
    return float((pred_c - ref_a).pow(2).mean()), float((pred_e - ref_e).pow(2).mean())


def test_circumvent_pulls_c_to_the_anchor_and_preserves_the_rest(quick_world: Path, pool: Path) -> None:
    from t2i_unlearn.concepts import load_concept

    setup = _setup(quick_world, pool, circumvent_steps=30, circumvent_batch_size=4, anchor_prompt="a picture of a plain red circle")
    spec = load_concept("toy_striped")
    cfg = DarkMinerConfig(num_tokens=setup.config.num_tokens)
    gen = torch.Generator().manual_seed(0)
    mined = dm.initial_vectors(setup.pipe, cfg, spec.prompts[0].unsafe, gen)
    before_c, before_e = _gaps(setup, mined)
    info = dm.circumvent(setup, [mined], 0)
    after_c, after_e = _gaps(setup, mined)
    assert after_c < 0.5 * before_c, (before_c, after_c, info)
    assert before_e == 0.0 and after_e < 0.1 * before_c, (after_e, before_c)


# ---- the loop: stop, resume, artifacts ----


def _lora(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v.tolist() for k, v in load_file(str(folder / "pytorch_lora_weights.safetensors")).items()}


def _mined(path: Path) -> tuple:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.get_tensor("embedding").tolist(), f.metadata()


def test_stopped_run_resumes_to_the_same_adapter(quick_world: Path, pool: Path, tmp_path: Path) -> None:
    cfg = dm.load_config(None, {**TINY, "encoder": "toy", "report_to": ["jsonl"]})
    whole = dm.train_darkminer(str(quick_world), "toy_striped", tmp_path / "whole", cfg, pool=pool)
    stopped = dm.load_config(None, {**TINY, "encoder": "toy", "report_to": ["jsonl"], "stop_after_stage": 2})
    part = dm.train_darkminer(str(quick_world), "toy_striped", tmp_path / "part", stopped, pool=pool)
    assert not (part / "manifest.json").exists() and not (part / "pytorch_lora_weights.safetensors").exists()
    assert [p.name for p in dm._checkpoints(part)] == ["stage-0001", "stage-0002"]
    dm.train_darkminer(str(quick_world), "toy_striped", part, cfg, pool=pool, resume=True)
    assert _lora(part) == _lora(whole)
    assert _mined(part / "mined" / "round_01.safetensors") == _mined(whole / "mined" / "round_01.safetensors")
    steps = [json.loads(line)["step"] for line in (part / "logs.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    index = json.loads((whole / "mined" / "index.json").read_text())
    assert [r["round"] for r in index["rounds"]] == [0, 1] and all(r["passed"] for r in index["rounds"])
    manifest = json.loads((whole / "manifest.json").read_text())
    assert manifest["artifact"] == "darkminer_lora" and len(manifest["rounds"]) == 2
    # the finished run is reused as it is
    before = (whole / "manifest.json").read_bytes()
    dm.train_darkminer(str(quick_world), "toy_striped", whole, cfg, pool=pool)
    assert (whole / "manifest.json").read_bytes() == before


def test_no_verified_embedding_stops_after_patience(quick_world: Path, pool: Path, tmp_path: Path) -> None:
    cfg = dm.load_config(None, {**TINY, "rounds": 5, "patience": 2, "threshold": 1.0, "encoder": "toy", "report_to": ["jsonl"]})
    out = dm.train_darkminer(str(quick_world), "toy_striped", tmp_path / "o", cfg, pool=pool)
    rows = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["mine", "verify", "circumvent"] * 2  # two rounds, then the stop rule
    assert all(r.get("skipped") for r in rows if r["stage"] == "circumvent")
    assert _lora(out) == _lora_identity(out)


def _lora_identity(out: Path) -> dict:
    """A LoRA that was never trained: every B matrix zero (what the file must hold when nothing was circumvented)."""
    lora = _lora(out)
    assert all(not np.any(np.asarray(v)) for k, v in lora.items() if "lora_B" in k or "lora.up" in k)
    return lora


# ---- the CLI ----


@pytest.fixture(scope="module")
def trained(quick_world: Path, pool: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dm_cli") / "lora"
    r = run_cli(
        "train", "darkminer", "--model", str(quick_world), "--concept", "toy_striped", "--out", str(out), "--pool", str(pool), "--config", "toy", *TINY_FLAGS
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "wrote" in r.stdout and (out / "attack_set" / "attack_set.json").exists()
    return out


def test_cli_output_loads_in_plain_diffusers(quick_world: Path, trained: Path) -> None:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(quick_world / "pipeline"))
    pipe.load_lora_weights(str(trained))
    assert (trained / "README.md").exists() and json.loads((trained / "manifest.json").read_text())["artifact"] == "darkminer_lora"


def test_cli_eval_with_the_lora(quick_world: Path, trained: Path, tmp_path: Path) -> None:
    r = run_cli(
        "eval", "--model", str(quick_world), "--lora", str(trained), "--suite", "toy_striped", "--limit", "2", "--steps", "2", "--out", str(tmp_path / "run")
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "results.json").exists()


def test_cli_eval_replays_the_mined_embeddings(quick_world: Path, trained: Path, tmp_path: Path) -> None:
    attack = trained / "attack_set" / "attack_set.json"
    body = json.loads(attack.read_text())
    assert body["attack"] == "darkminer" and body["embeddings"]["kind"] == "textual_inversion"
    r = run_cli(
        "eval", "--model", str(quick_world), "--suite", "toy_striped", "--attack", str(attack), "--limit", "2", "--steps", "2", "--out", str(tmp_path / "run")
    )
    assert r.returncode == 0, r.stderr[-3000:]


def test_mined_embeddings_replay_as_they_were_mined(quick_world: Path, trained: Path) -> None:
    """The textual-inversion token of the attack set encodes to exactly the conditioning mining optimised."""
    from diffusers import DiffusionPipeline
    from safetensors.torch import load_file

    from t2i_unlearn.attacks.text import encode_prompts

    pipe = DiffusionPipeline.from_pretrained(str(quick_world / "pipeline"))
    tokens = load_file(str(trained / "attack_set" / "embeddings.safetensors"))
    token, vectors = next(iter(sorted(tokens.items())))
    pipe.load_textual_inversion({token: vectors}, token=token)
    prompt = pipe.maybe_convert_prompt(token, pipe.tokenizer)
    with torch.no_grad():
        mined = dm.encode_tokens(pipe.text_encoder, dm.token_template(pipe.tokenizer, len(vectors)), vectors)
        assert torch.allclose(encode_prompts(pipe, [prompt]), mined, atol=1e-5)


@pytest.mark.slow  # fuses and writes a pipeline and a single-file checkpoint
def test_cli_export(quick_world: Path, trained: Path, tmp_path: Path) -> None:
    r = run_cli("export", "--model", str(quick_world), "--lora", str(trained), "--out", str(tmp_path / "export"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "export" / "pipeline" / "model_index.json").exists()


def test_sd3_is_refused_in_one_line_before_loading(quick_world: Path, tmp_path: Path) -> None:
    from tests._tiny import build_tiny

    model = build_tiny("sd3", quick_world / "pipeline" / "tokenizer", tmp_path / "sd3")
    r = run_cli("train", "darkminer", "--model", str(model), "--concept", "toy_striped", "--out", str(tmp_path / "o"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Dark Miner supports SD 1.x/2.x and SDXL" in lines[0], r.stderr
    assert not (tmp_path / "o").exists()


# ---- SDXL: two text encoders, a pooled embedding ----


@pytest.fixture(scope="module")
def xl_world(quick_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SDXL pipeline in a world folder that borrows the quick toy world's judges (toy judge, toy encoder)."""
    from tests._tiny import build_tiny

    world = tmp_path_factory.mktemp("xl") / "world"
    build_tiny("sdxl", quick_world / "pipeline" / "tokenizer", world / "pipeline")
    (world / "judges").symlink_to(quick_world / "judges")
    return world


def _xl_pipe(world: Path):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(str(world / "pipeline"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _xl_encode(pipe, prompt: str) -> dict:
    emb, _, pooled, _ = pipe.encode_prompt(prompt=[prompt], device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)
    return {"encoder_hidden_states": emb, "text_embeds": pooled}


def test_sdxl_mined_conditioning_equals_the_pipeline_on_real_tokens(xl_world: Path) -> None:
    """K vectors per encoder, each set between that encoder's BOS and EOS: both encoders' penultimate states side by side,
    and encoder 2's pooled projection, exactly as the pipeline encodes the prompt those tokens spell."""
    from t2i_unlearn.attacks.text import prompt_ids, token_embedding_matrix

    pipe = _xl_pipe(xl_world)
    ids = prompt_ids(pipe.tokenizer, "a striped red circle")[:4]
    vectors = torch.cat([token_embedding_matrix(te)[ids].detach() for _, te in dm.text_encoders(pipe)], dim=-1)
    assert vectors.shape == (4, sum(dm.token_widths(pipe))) and len(dm.token_widths(pipe)) == 2
    with torch.no_grad():
        ours = dm.encode_mined(pipe, dm.token_templates(pipe, 4), vectors)
        theirs = _xl_encode(pipe, pipe.tokenizer.decode(ids))
    assert set(ours) == {"encoder_hidden_states", "text_embeds"}
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def xl_trained(xl_world: Path, pool: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dm_xl") / "lora"
    args = ["--model", str(xl_world), "--concept", "toy_striped", "--out", str(out), "--pool", str(pool), "--config", "toy"]
    r = run_cli("train", "darkminer", *args, *TINY_FLAGS)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_sdxl_train_end_to_end_and_load_in_plain_diffusers(xl_world: Path, xl_trained: Path) -> None:
    from safetensors.torch import load_file

    manifest = json.loads((xl_trained / "manifest.json").read_text())
    assert manifest["artifact"] == "darkminer_lora" and manifest["settings"]["family"] == "sdxl" and len(manifest["rounds"]) == 2
    mined = load_file(str(xl_trained / "mined" / "round_00.safetensors"))
    assert set(mined) == {"embedding", "embedding_2"} and mined["embedding"].shape[0] == 8
    pipe = _xl_pipe(xl_world)
    pipe.load_lora_weights(str(xl_trained))
    assert list(pipe.get_list_adapters()) == ["unet"]
    state = load_file(str(xl_trained / "pytorch_lora_weights.safetensors"))
    assert state and all("attn2.to_k" in k or "attn2.to_v" in k for k in state)


def test_sdxl_mined_tokens_replay_as_they_were_mined(xl_world: Path, xl_trained: Path) -> None:
    """Both embedding files of the attack set, loaded with diffusers' load_textual_inversion (the second one into
    text_encoder_2 / tokenizer_2), make the pipeline encode the token to exactly the mined conditioning."""
    from safetensors.torch import load_file

    body = json.loads((xl_trained / "attack_set" / "attack_set.json").read_text())
    assert body["embeddings"] == {"file": "embeddings.safetensors", "file_2": "embeddings_2.safetensors", "kind": "textual_inversion"}
    first = load_file(str(xl_trained / "attack_set" / "embeddings.safetensors"))
    second = load_file(str(xl_trained / "attack_set" / "embeddings_2.safetensors"))
    pipe = _xl_pipe(xl_world)
    for token in sorted(first):
        pipe.load_textual_inversion(first[token], token=token, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
        pipe.load_textual_inversion(second[token], token=token, text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
    token = sorted(first)[1]
    vectors = torch.cat([first[token], second[token]], dim=-1)
    round_file = load_file(str(xl_trained / "mined" / "round_01.safetensors"))
    assert torch.equal(vectors, torch.cat([round_file["embedding"], round_file["embedding_2"]], dim=-1))
    with torch.no_grad():
        mined = dm.encode_mined(pipe, dm.token_templates(pipe, len(vectors)), vectors)
        replayed = _xl_encode(pipe, token)
    for key in mined:
        torch.testing.assert_close(replayed[key], mined[key], atol=1e-5, rtol=0)


def test_sdxl_eval_replays_the_mined_set(xl_world: Path, xl_trained: Path, quick_world: Path, tmp_path: Path) -> None:
    attack = xl_trained / "attack_set" / "attack_set.json"
    args = ["--suite", "toy_striped", "--attack", str(attack), "--limit", "2", "--steps", "2"]
    r = run_cli("eval", "--model", str(xl_world), "--lora", str(xl_trained), *args, "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "results.json").exists()
    # an SDXL set does not replay on a one-encoder model: one line
    r = run_cli("eval", "--model", str(quick_world), *args, "--out", str(tmp_path / "sd"))
    assert r.returncode != 0 and "two CLIP text encoders (SDXL)" in r.stderr.strip().splitlines()[-1], r.stderr[-1500:]
