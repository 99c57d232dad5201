"""DUO training: tiny runs on the quick toy world and on tiny random SDXL / SD3 / v-prediction pipelines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods import duo
from t2i_unlearn.methods.duo import DUOConfig, train_duo
from tests._tiny import add_preserve, build_tiny, toy_pairs
from tests.conftest import kill9_after, run_cli

LORA = "pytorch_lora_weights.safetensors"


def _cfg(**kw) -> DUOConfig:
    base = {"max_steps": 4, "batch_size": 2, "checkpoint_every": 2, "rank": 4, "alpha": 4, "lr": 1e-3, "report_to": ["jsonl"]}
    return DUOConfig(**{**base, **kw})


def _lora_equal(a: Path, b: Path, atol: float = 0.0) -> None:
    sa, sb = load_file(str(a / LORA)), load_file(str(b / LORA))
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=atol, rtol=0)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return toy_pairs(tmp_path_factory.mktemp("pairs") / "d", n=6)


@pytest.fixture(scope="module")
def trained(quick_world: Path, pairs: Path, tmp_path_factory) -> Path:
    """A 4-step run on the quick toy world (checkpoints at 2 and 4)."""
    return train_duo(str(quick_world), pairs, tmp_path_factory.mktemp("run") / "full", _cfg())


def test_outputs_and_logs(trained: Path, pairs: Path) -> None:
    assert (trained / LORA).exists() and (trained / "manifest.json").exists()
    rows = [json.loads(line) for line in (trained / "logs.jsonl").read_text().splitlines()]
    assert rows[0]["base_lr"] == 3e-4 and rows[0]["lr"] == 1e-3 and rows[0]["lambda"] == pytest.approx(5e6)
    assert [r["step"] for r in rows[1:]] == [1, 2, 3, 4]
    for r in rows[1:]:
        assert {"loss", "dpo", "prior", "implicit_acc"} <= set(r)
        assert r["loss"] == pytest.approx(r["dpo"] + 5e6 * r["prior"], rel=1e-4)
    # at step 1 the adapter is the identity (B = 0): policy == reference
    assert rows[1]["dpo"] == pytest.approx(0.6931, abs=1e-3) and rows[1]["prior"] == 0.0
    card = (trained / "README.md").read_text()
    from t2i_unlearn.data import load_pairs

    assert load_pairs(pairs).data_hash in card and "beta" in card
    assert [p.name for p in sorted((trained / "checkpoints").iterdir())] == ["step-000002", "step-000004"]
    state = load_file(str(trained / LORA))
    assert all("attn1" in k for k in state) and any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in state.items())


def test_lora_loads_in_plain_diffusers(trained: Path, quick_world: Path) -> None:
    from diffusers import StableDiffusionPipeline

    def run(pipe):
        gen = torch.Generator().manual_seed(0)
        return pipe("a picture of a striped red circle", num_inference_steps=3, guidance_scale=4.0, generator=gen, output_type="np").images

    pipe = StableDiffusionPipeline.from_pretrained(str(quick_world / "pipeline"))
    pipe.set_progress_bar_config(disable=True)
    base = run(pipe)
    pipe.load_lora_weights(str(trained))
    lora = run(pipe)
    assert not torch.allclose(torch.as_tensor(base), torch.as_tensor(lora))
    # the loaded adapter holds exactly the trained weights
    ckpt = load_file(str(trained / "checkpoints" / "step-000004" / "lora.safetensors"))
    key = next(k for k in ckpt if k.endswith("attn1.to_q.lora_B.weight"))
    module = pipe.unet.get_submodule(key.replace(".lora_B.weight", ""))
    torch.testing.assert_close(next(iter(module.lora_B.values())).weight, ckpt[key])


def test_continue_equals_uninterrupted(trained: Path, quick_world: Path, pairs: Path, tmp_path: Path) -> None:
    out = tmp_path / "part"
    train_duo(str(quick_world), pairs, out, _cfg(max_steps=2))
    train_duo(str(quick_world), pairs, out, _cfg(max_steps=4), resume=True)
    _lora_equal(out, trained)
    assert [json.loads(x)["step"] for x in (out / "logs.jsonl").read_text().splitlines()] == [0, 1, 2, 3, 4]


def test_resume_guards(trained: Path, quick_world: Path, pairs: Path) -> None:
    made = (trained / "pytorch_lora_weights.safetensors").stat().st_mtime_ns
    assert train_duo(str(quick_world), pairs, trained, _cfg()) == trained  # the same finished run: reused, not retrained
    assert (trained / "pytorch_lora_weights.safetensors").stat().st_mtime_ns == made
    with pytest.raises(UserError, match=r"settings differ.*beta.*--overwrite"):
        train_duo(str(quick_world), pairs, trained, _cfg(beta=100.0), resume=True)
    with pytest.raises(UserError, match=r"settings differ.*rank.*--overwrite"):
        train_duo(str(quick_world), pairs, trained, _cfg(rank=2))


def test_kill9_then_resume(trained: Path, quick_world: Path, pairs: Path, tmp_path: Path) -> None:
    """A real kill -9 right after the first checkpoint; --resume finishes with the same LoRA as the uninterrupted run."""
    out = tmp_path / "killed"
    args = ["--model", str(quick_world), "--data", str(pairs), "--out", str(out), "--max-steps", "4", "--batch-size", "2", "--checkpoint-every", "2"]
    args += ["--rank", "4", "--alpha", "4", "--lr", "1e-3", "--report-to", "jsonl"]
    kill9_after(out / "checkpoints" / "step-000002", "train", "duo", *args, tmp=tmp_path)
    assert not (out / LORA).exists() and not (out / "checkpoints" / "step-000004").exists()
    assert (out / "checkpoints" / "step-000002" / "lora.safetensors").exists()
    res = run_cli("train", "duo", *args, "--resume")
    assert res.returncode == 0, res.stderr
    _lora_equal(out, trained)


def test_nan_keeps_last_good_checkpoint(quick_world: Path, pairs: Path, tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    real = duo.dpo_unlearning_loss

    def flaky(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(duo, "dpo_unlearning_loss", flaky)
    out = tmp_path / "nan"
    with pytest.raises(UserError, match=r"loss became nan at step 3: stopped; last good checkpoint: .*step-000002"):
        train_duo(str(quick_world), pairs, out, _cfg())
    assert (out / "checkpoints" / "step-000002" / "lora.safetensors").exists() and not (out / LORA).exists()


def test_sub_concept_loras_combine(trained: Path, quick_world: Path, pairs: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    other = train_duo(str(quick_world), pairs, tmp_path / "other", _cfg(max_steps=2, seed=7))
    pipe = StableDiffusionPipeline.from_pretrained(str(quick_world / "pipeline"))
    pipe.load_lora_weights(str(trained), adapter_name="a")
    pipe.load_lora_weights(str(other), adapter_name="b")
    pipe.set_adapters(["a", "b"], adapter_weights=[1.0, 1.0])
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = torch.zeros(1, 77, pipe.unet.config.cross_attention_dim)
    both = pipe.unet(x, 500, cond).sample
    pipe.set_adapters(["a"], adapter_weights=[1.0])
    only_a = pipe.unet(x, 500, cond).sample
    assert not torch.allclose(both, only_a)


def test_export_fuses_and_single_file(trained: Path, quick_world: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    from t2i_unlearn.adapters import export_pipeline

    written = export_pipeline(str(quick_world), [str(trained)], tmp_path / "exp")
    fused = StableDiffusionPipeline.from_pretrained(str(written["pipeline"]))
    ref = StableDiffusionPipeline.from_pretrained(str(quick_world / "pipeline"))
    ref.load_lora_weights(str(trained))
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(2, 77, ref.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(fused.unet(x, 300, cond).sample, ref.unet(x, 300, cond).sample, atol=1e-4, rtol=1e-4)
    # the single file reloads through diffusers' own original-layout converter into the same weights
    single = StableDiffusionPipeline.from_single_file(str(written["single_file"]), config=str(written["pipeline"]))
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(fused, name).state_dict(), getattr(single, name).state_dict()
        missing = [k for k in a if k not in b]
        assert not missing, (name, missing[:3])
        for k in a:
            torch.testing.assert_close(a[k], b[k].reshape(a[k].shape), msg=f"{name}.{k}")


@pytest.mark.parametrize(("family", "prediction"), [("sd", "v_prediction"), ("sdxl", "epsilon"), ("sd3", "flow")])
def test_families_one_step_and_load(quick_world: Path, pairs: Path, tmp_path: Path, family: str, prediction: str) -> None:
    from diffusers import DiffusionPipeline

    model = build_tiny(family, quick_world / "pipeline" / "tokenizer", tmp_path / "model", prediction_type="epsilon" if prediction == "flow" else prediction)
    out = train_duo(str(model), pairs, tmp_path / "out", _cfg(max_steps=2, checkpoint_every=5))
    rows = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows[1:])
    pipe = DiffusionPipeline.from_pretrained(str(model))
    pipe.load_lora_weights(str(out))
    adapters = pipe.get_list_adapters()
    net = "transformer" if family == "sd3" else "unet"
    assert list(adapters) == [net]
    state = load_file(str(out / LORA))
    if family == "sd3":
        assert any("add_q_proj" in k for k in state) and any(".attn.to_q." in k for k in state)
    else:
        assert all("attn1" in k for k in state)


def test_cli_errors_are_one_line(pairs: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cases = [
        (["--data", str(tmp_path / "empty")], "has no metadata.jsonl"),
        (["--data", str(pairs), "--config", "nudity", "--beta", "0"], "beta must be positive"),
        (["--data", str(pairs), "--config", "nope"], "no DUO config file or preset"),
        (["--data", str(pairs), "--mixed-precision", "fp8"], "mixed_precision must be"),
    ]
    for extra, needle in cases:
        res = run_cli("train", "duo", "--model", "toy:quick", "--out", str(tmp_path / "o"), *extra)
        lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
        assert res.returncode == 2 and len(lines) == 1 and needle in lines[0], (extra, res.stderr[-500:])


def test_gradient_checkpointing_same_result(quick_world: Path, pairs: Path, tmp_path: Path) -> None:
    model = build_tiny("sd", quick_world / "pipeline" / "tokenizer", tmp_path / "model")
    plain = train_duo(str(model), pairs, tmp_path / "plain", _cfg(max_steps=2, checkpoint_every=5))
    ckpt = train_duo(str(model), pairs, tmp_path / "ckpt", _cfg(max_steps=2, checkpoint_every=5, gradient_checkpointing=True))
    _lora_equal(plain, ckpt, atol=1e-6)


def _deviation(world: Path, lora: Path, images) -> float:
    """Mean squared difference between the LoRA model's and the base model's noise predictions on noised ``images``."""
    from t2i_unlearn.methods.duo import encode_latents
    from t2i_unlearn.models import load_pipeline

    base, tuned = load_pipeline(str(world)), load_pipeline(str(world), lora=[str(lora)])
    gen = torch.Generator().manual_seed(0)
    z, _ = encode_latents(base.vae, images, torch.device("cpu"))
    noise = torch.randn(z.shape, generator=gen)
    t = torch.randint(0, 750, (len(z),), generator=gen)
    x = base.scheduler.add_noise(z, noise, t)
    cond = base.encode_prompt(["a dotted shape"] * len(z), "cpu", 1, False)[0]
    with torch.no_grad():
        return float((tuned.unet(x, t, cond).sample - base.unet(x, t, cond).sample).pow(2).mean())


def test_preserve_term_keeps_preserve_images(quick_world: Path, tmp_path: Path) -> None:
    from t2i_unlearn.data import load_pairs

    data = add_preserve(toy_pairs(tmp_path / "keep", n=6), n=4)
    cfg = {"max_steps": 12, "lr": 1e-2, "beta": 50.0, "conditioning": "prompt", "checkpoint_every": 10}
    free = train_duo(str(quick_world), data, tmp_path / "free", _cfg(**cfg))
    kept = train_duo(str(quick_world), data, tmp_path / "kept", _cfg(**cfg, preserve_weight=1e4))
    rows = [json.loads(line) for line in (kept / "logs.jsonl").read_text().splitlines()][1:]
    lam = DUOConfig(beta=50.0).effective_lambda
    assert all(r["loss"] == pytest.approx(r["dpo"] + lam * r["prior"] + 1e4 * r["preserve"], rel=1e-4) for r in rows)
    assert rows[0]["preserve"] == 0.0 and rows[-1]["preserve"] > 0.0
    assert "preserve" not in json.loads((free / "logs.jsonl").read_text().splitlines()[-1])
    # the term does what it says: the LoRA moves the predictions on the preserve images less
    images = load_pairs(data).preserve
    d_kept, d_free = _deviation(quick_world, kept, images), _deviation(quick_world, free, images)
    assert d_kept < 0.7 * d_free  # measured: 0.47


def test_preserve_weight_without_preserve_images_runs_without_the_term(trained: Path, quick_world: Path, pairs: Path, tmp_path: Path, caplog) -> None:
    """A spec without `preserve:` prompts (as toy_defaced) under preserve_weight > 0 (the `toy` preset): the term is
    left out, a warning says so, and the settings, model card and manifest record it; the LoRA is the term-free run's."""
    with caplog.at_level(logging.WARNING, logger="t2i_unlearn.methods.duo"):
        out = train_duo(str(quick_world), pairs, tmp_path / "off", _cfg(preserve_weight=100.0))
    assert any("no preserve images" in r.getMessage() and "without the preservation term" in r.getMessage() for r in caplog.records)
    _lora_equal(out, trained)  # `trained`: the same settings with preserve_weight 0
    settings = json.loads((out / "duo_config.json").read_text())
    assert settings["preserve_weight"] == 100.0 and settings["preserve_weight_used"] == 0.0 and settings["preserve_term"].startswith("off: ")
    assert json.loads((out / "manifest.json").read_text())["settings"]["preserve_weight_used"] == 0.0
    assert "| preserve_weight_used | `0.0` |" in (out / "README.md").read_text()
    assert not any("preserve" in json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines())
    # a run that uses the term records nothing of the kind
    assert "preserve_weight_used" not in json.loads((trained / "duo_config.json").read_text())


def test_toy_preset_on_a_spec_without_preserve_prompts(quick_world: Path, pairs: Path, tmp_path: Path) -> None:
    """The reported case through the CLI: `--config toy` (preserve weight 100) on pairs without preserve images."""
    out = tmp_path / "toy"
    args = ["--model", str(quick_world), "--data", str(pairs), "--out", str(out), "--config", "toy"]
    res = run_cli("train", "duo", *args, "--max-steps", "1", "--batch-size", "2", "--checkpoint-every", "1", "--report-to", "jsonl")
    assert res.returncode == 0, res.stderr[-800:]
    assert "without the preservation term" in res.stderr and (out / LORA).exists()
    assert json.loads((out / "manifest.json").read_text())["settings"]["preserve_term"].startswith("off: ")


def test_duo_step_is_the_documented_objective(quick_world: Path, pairs: Path) -> None:
    """duo_step's loss against the module docstring's formula, recomputed here one UNet call per image."""
    import contextlib

    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    from t2i_unlearn.data import load_pairs
    from t2i_unlearn.models import load_pipeline

    cpu = torch.device("cpu")
    config = _cfg(conditioning="prompt", batch_size=3)
    pipe = load_pipeline(str(quick_world))
    ops = duo._family_ops(pipe, config)
    net = duo._setup_network(pipe, "sd", config, None, cpu, torch.float32)
    with torch.no_grad():  # a LoRA that is not the identity, so that policy and reference differ
        gen = torch.Generator().manual_seed(0)
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    batch = duo.draw_batch(ops, duo._encode_data(pipe, ops, load_pairs(pairs), config, cpu), config, 5, 0, 1, cpu)
    loss, logs = duo.duo_step(ops, net, net, batch, config, torch.float32, contextlib.nullcontext)

    sched = DDPMScheduler.from_config(pipe.scheduler.config)

    def eps(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, lora: bool) -> torch.Tensor:
        net.enable_adapters() if lora else net.disable_adapters()
        with torch.no_grad():
            out = net(x[None], t[None], encoder_hidden_states=cond[None]).sample[0]
        net.enable_adapters()
        return out

    def err(z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, lora: bool) -> torch.Tensor:
        return (noise - eps(sched.add_noise(z, noise, t), t, cond, lora)).pow(2).mean()  # epsilon-prediction model

    dpo, prior, wins = torch.zeros(()), torch.zeros(()), 0
    for i in range(config.batch_size):
        c, e = batch.pair_cond["encoder_hidden_states"][i], batch.noise[i]
        delta = (err(batch.z_safe[i], e, batch.t_safe[i], c, True) - err(batch.z_safe[i], e, batch.t_safe[i], c, False)) - (
            err(batch.z_unsafe[i], e, batch.t_unsafe[i], c, True) - err(batch.z_unsafe[i], e, batch.t_unsafe[i], c, False)
        )
        dpo += -F.logsigmoid(-config.beta * delta) / config.batch_size
        wins += int(delta < 0)
        empty, e_prior = batch.empty["encoder_hidden_states"][i], batch.prior_noise[i]
        prior += (eps(e_prior, batch.t_prior[i], empty, True) - eps(e_prior, batch.t_prior[i], empty, False)).pow(2).mean() / config.batch_size
    assert batch.t_prior.tolist() == [999] * 3 and not torch.equal(batch.t_safe, batch.t_unsafe)
    assert prior > 0 and loss.requires_grad
    torch.testing.assert_close(logs["dpo"], dpo, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(logs["prior"], prior, rtol=1e-4, atol=1e-12)
    torch.testing.assert_close(loss.detach(), dpo + config.effective_lambda * prior, rtol=1e-4, atol=1e-6)
    assert logs["implicit_acc"].item() == pytest.approx(wins / 3) and logs["preserve"].item() == 0.0


def test_every_config_field_has_a_cli_flag(monkeypatch, tmp_path: Path) -> None:
    """``train duo`` has a flag for each DUOConfig field, and each flag reaches its field."""
    import dataclasses

    from typer.testing import CliRunner

    from t2i_unlearn.cli import app

    flags = {
        "beta": (["--beta", "250"], 250.0),
        "base_lr": (["--base-lr", "2e-4"], 2e-4),
        "base_lambda": (["--base-lambda", "3e5"], 3e5),
        "lr": (["--lr", "5e-4"], 5e-4),
        "prior_weight": (["--prior-weight", "7.0"], 7.0),
        "t_max": (["--t-max", "500"], 500),
        "independent_timesteps": (["--shared-timesteps"], False),
        "prior_timestep": (["--prior-timestep", "900"], 900),
        "conditioning": (["--conditioning", "prompt"], "prompt"),
        "flow_u_min": (["--flow-u-min", "0.01"], 0.01),
        "flow_u_max": (["--flow-u-max", "0.9"], 0.9),
        "preserve_weight": (["--preserve-weight", "3"], 3.0),
        "sample_latents": (["--mean-latents"], False),
        "mine_rounds": (["--mine-rounds", "2"], 2),
        "mine_every": (["--mine-every", "3"], 3),
        "mined_pairs_per_round": (["--mined-pairs-per-round", "5"], 5),
        "mine_judge_filter": (["--no-mine-judge-filter"], False),
        "mine_num_tokens": (["--mine-num-tokens", "4"], 4),
        "mine_steps": (["--mine-steps", "11"], 11),
        "mine_lr": (["--mine-lr", "0.01"], 0.01),
        "mine_batch_size": (["--mine-batch-size", "6"], 6),
        "rank": (["--rank", "8"], 8),
        "alpha": (["--alpha", "16"], 16.0),
        "init_lora_weights": (["--init-lora-weights", "default"], "default"),
        "target_modules": (["--target", "to_q", "--target", "to_v"], ["to_q", "to_v"]),
        "max_steps": (["--max-steps", "7"], 7),
        "batch_size": (["--batch-size", "3"], 3),
        "adam_beta1": (["--adam-beta1", "0.8"], 0.8),
        "adam_beta2": (["--adam-beta2", "0.99"], 0.99),
        "weight_decay": (["--weight-decay", "0.05"], 0.05),
        "adam_epsilon": (["--adam-epsilon", "1e-6"], 1e-6),
        "max_grad_norm": (["--max-grad-norm", "0.5"], 0.5),
        "lr_scheduler": (["--lr-scheduler", "constant"], "constant"),
        "seed": (["--seed", "5"], 5),
        "mixed_precision": (["--mixed-precision", "bf16"], "bf16"),
        "gradient_checkpointing": (["--gradient-checkpointing"], True),
        "checkpoint_every": (["--checkpoint-every", "9"], 9),
        "keep_checkpoints": (["--keep-checkpoints", "4"], 4),
        "log_every": (["--log-every", "2"], 2),
        "report_to": (["--report-to", "jsonl"], ["jsonl"]),
    }
    assert set(flags) == {f.name for f in dataclasses.fields(DUOConfig)}
    seen = {}
    monkeypatch.setattr(duo, "train_duo_concept", lambda model, data, out, cfg, **kw: seen.setdefault("cfg", cfg) and [])
    (tmp_path / "metadata.jsonl").write_text("")  # --data must look like a pair folder (checked before training)
    args = ["train", "duo", "--model", "toy", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    for flag_args, _ in flags.values():
        args += flag_args
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name, (_, value) in flags.items():
        assert getattr(seen["cfg"], name) == value, name


@pytest.mark.parametrize("shared", [True, False])
def test_shared_or_independent_timesteps(monkeypatch, quick_world: Path, pairs: Path, tmp_path: Path, shared: bool) -> None:
    """``--shared-timesteps`` gives both images of a pair one t; the default draws one per image."""
    seen = []
    make_ops = duo._family_ops

    def spy(pipe, config):
        ops = make_ops(pipe, config)
        forward = ops.forward

        def recording(net, x, t, cond):
            seen.append(t.detach().cpu().clone())
            return forward(net, x, t, cond)

        ops.forward = recording
        return ops

    monkeypatch.setattr(duo, "_family_ops", spy)
    train_duo(str(quick_world), pairs, tmp_path / "run", _cfg(max_steps=2, batch_size=4, independent_timesteps=not shared))
    assert len(seen) == 4  # reference + policy call per step
    for t in seen:
        safe, unsafe, prior = t[:4], t[4:8], t[8:]
        assert (prior == 999).all() and (t[:8] < 750).all()
        assert torch.equal(safe, unsafe) == shared


def test_tensorboard_log_matches_jsonl(quick_world: Path, pairs: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = train_duo(str(quick_world), pairs, tmp_path / "run", _cfg(max_steps=2, report_to=["jsonl", "tensorboard"]))
    rows = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()][1:]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"loss", "dpo", "prior", "implicit_acc", "lr"} <= set(events.Tags()["scalars"])
    for key in ("loss", "dpo", "implicit_acc"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in rows], key


def test_lora_init_choices(quick_world: Path, pairs: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="init_lora_weights"):
        _cfg(init_lora_weights="pissa").validate()  # would edit the base weights: no reference left
    runs = {init: train_duo(str(quick_world), pairs, tmp_path / init, _cfg(max_steps=1, init_lora_weights=init)) for init in ("gaussian", "default")}
    a = {init: load_file(str(out / LORA)) for init, out in runs.items()}
    key = next(k for k in a["gaussian"] if k.endswith("lora_A.weight"))
    # gaussian: A ~ N(0, 1/rank) (std 0.25 at rank 4); peft's default: Kaiming-uniform, much smaller at these widths
    assert a["gaussian"][key].std().item() == pytest.approx(0.25, rel=0.2)
    assert a["default"][key].abs().max().item() < a["gaussian"][key].std().item()
