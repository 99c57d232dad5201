"""The baselines' flags come from their config dataclasses: every field has one, each reaches its field, presets stay under flags.

DUO's field-by-field check is ``tests/test_duo_train.py::test_every_config_field_has_a_cli_flag``.
The tables below are written out by hand, independently of how the flags are derived.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from t2i_unlearn.cli import app
from t2i_unlearn.methods.darkminer_config import DarkMinerConfig
from t2i_unlearn.methods.esd_config import ESDConfig
from t2i_unlearn.methods.sld_config import SLDConfig
from t2i_unlearn.methods.uce_config import UCEConfig

FLAGS = {
    "esd": (
        ESDConfig,
        {
            "train_method": (["--train-method", "xattn"], "xattn"),
            "iterations": (["--iterations", "7"], 7),
            "lr": (["--lr", "1e-3"], 1e-3),
            "negative_guidance": (["--negative-guidance", "2.5"], 2.5),
            "ddim_steps": (["--ddim-steps", "9"], 9),
            "sample_guidance": (["--sample-guidance", "5"], 5.0),
            "prompts": (["--prompt", "a striped circle", "--prompt", "stripes"], ["a striped circle", "stripes"]),
            "batch_size": (["--batch-size", "2"], 2),
            "height": (["--height", "64"], 64),
            "width": (["--width", "48"], 48),
            "seed": (["--seed", "3"], 3),
            "train_biases": (["--no-train-biases"], False),
            "lora_max_rank": (["--lora-max-rank", "4"], 4),
            "log_every": (["--log-every", "5"], 5),
        },
    ),
    "uce": (
        UCEConfig,
        {
            "erase_prompts": (["--erase", "stripes"], ["stripes"]),
            "guide_prompts": (["--guide", ""], [""]),
            "preserve_prompts": (["--preserve", "dots", "--preserve", "plain"], ["dots", "plain"]),
            "erase_scale": (["--erase-scale", "2"], 2.0),
            "preserve_scale": (["--preserve-scale", "0.5"], 0.5),
            "lamb": (["--lamb", "0.1"], 0.1),
            "tokens": (["--tokens", "last_to_end"], "last_to_end"),
            "edit_keys": (["--no-edit-keys"], False),
            "lora_max_rank": (["--lora-max-rank", "2"], 2),
        },
    ),
    "darkminer": (
        DarkMinerConfig,
        {
            "rounds": (["--rounds", "3"], 3),
            "patience": (["--patience", "4"], 4),
            "seed": (["--seed", "5"], 5),
            "num_tokens": (["--num-tokens", "4"], 4),
            "init": (["--init", "random"], "random"),
            "mine_steps": (["--mine-steps", "7"], 7),
            "mine_lr": (["--mine-lr", "1e-2"], 1e-2),
            "mine_batch_size": (["--mine-batch-size", "2"], 2),
            "pool_size": (["--pool-size", "9"], 9),
            "threshold": (["--threshold", "0.5"], 0.5),
            "verify_images": (["--verify-images", "2"], 2),
            "reference_prompt": (["--reference-prompt", "a plain circle"], "a plain circle"),
            "encoder": (["--encoder", "toy"], "toy"),
            "anchor_prompt": (["--anchor-prompt", "a plain shape"], "a plain shape"),
            "circumvent_steps": (["--circumvent-steps", "11"], 11),
            "circumvent_lr": (["--circumvent-lr", "1e-3"], 1e-3),
            "circumvent_batch_size": (["--circumvent-batch-size", "3"], 3),
            "anchor_weight": (["--anchor-weight", "2"], 2.0),
            "empty_weight": (["--empty-weight", "0.5"], 0.5),
            "negative_weight": (["--negative-weight", "0"], 0.0),
            "t_max": (["--t-max", "500"], 500),
            "rank": (["--rank", "4"], 4),
            "alpha": (["--alpha", "4"], 4.0),
            "init_lora_weights": (["--init-lora-weights", "default"], "default"),
            "target_modules": (["--target", "attn2.to_q", "--target", "attn2.to_v"], ["attn2.to_q", "attn2.to_v"]),
            "gradient_checkpointing": (["--gradient-checkpointing"], True),
            "keep_checkpoints": (["--keep-checkpoints", "3"], 3),
            "report_to": (["--report-to", "jsonl"], ["jsonl"]),
            "stop_after_stage": (["--stop-after-stage", "2"], 2),
        },
    ),
    "sld": (
        SLDConfig,
        {
            "preset": (["--preset", "MAX"], "MAX"),
            "safety_concept": (["--safety-concept", "stripes"], "stripes"),
            "sld_guidance_scale": (["--sld-guidance-scale", "100"], 100.0),
            "sld_warmup_steps": (["--sld-warmup-steps", "2"], 2),
            "sld_threshold": (["--sld-threshold", "0.01"], 0.01),
            "sld_momentum_scale": (["--sld-momentum-scale", "0.3"], 0.3),
            "sld_mom_beta": (["--sld-mom-beta", "0.4"], 0.4),
        },
    ),
}


def _capture(monkeypatch, method: str) -> dict:
    """Replace the method's trainer by one that records the config the CLI built."""
    from t2i_unlearn.methods import METHODS, Method

    seen: dict = {}
    entry = METHODS[method]()

    def train(model, concept, out, cfg, **kwargs):
        seen["cfg"] = cfg
        return [Path(out)]

    monkeypatch.setitem(METHODS, method, lambda: Method(method, entry.config_class, entry.load_config, train))
    return seen


@pytest.mark.parametrize("method", sorted(FLAGS))
def test_every_config_field_has_a_flag_that_reaches_it(monkeypatch, tmp_path: Path, method: str) -> None:
    config_class, flags = FLAGS[method]
    assert set(flags) == {f.name for f in dataclasses.fields(config_class)}
    seen = _capture(monkeypatch, method)
    args = ["train", method, "--model", "toy", "--concept", "toy_striped", "--out", str(tmp_path / "o")]
    for flag_args, _ in flags.values():
        args += flag_args
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name, (_, value) in flags.items():
        assert getattr(seen["cfg"], name) == value, name
        assert value != getattr(config_class(), name), name  # the flag changed something


@pytest.mark.parametrize("method", ["esd", "uce", "sld"])
def test_no_flag_leaves_the_defaults(monkeypatch, tmp_path: Path, method: str) -> None:
    config_class, _ = FLAGS[method]
    seen = _capture(monkeypatch, method)
    result = CliRunner().invoke(app, ["train", method, "--model", "toy", "--concept", "toy_striped", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert seen["cfg"] == config_class()


def test_flags_override_a_preset_only_when_given(monkeypatch, tmp_path: Path) -> None:
    from t2i_unlearn.methods.esd_config import load_config

    preset = load_config("toy")
    seen = _capture(monkeypatch, "esd")
    base = ["train", "esd", "--model", "toy", "--concept", "toy_striped", "--out", str(tmp_path / "o"), "--config", "toy"]
    assert CliRunner().invoke(app, base).exit_code == 0
    assert seen["cfg"] == preset and preset.iterations != ESDConfig().iterations
    assert CliRunner().invoke(app, [*base, "--iterations", "3"]).exit_code == 0
    assert seen["cfg"] == dataclasses.replace(preset, iterations=3)


def test_duo_preset_and_flags(monkeypatch, tmp_path: Path) -> None:
    """``train duo --config toy --beta 7``: the preset's values, but beta 7."""
    from t2i_unlearn.methods import duo
    from t2i_unlearn.methods.duo_config import load_config

    seen = {}
    monkeypatch.setattr(duo, "train_duo_concept", lambda model, data, out, cfg, **kw: seen.setdefault("cfg", cfg) and [])
    (tmp_path / "metadata.jsonl").write_text("")  # --data must look like a pair folder (checked before training)
    args = ["train", "duo", "--model", "toy", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--config", "toy", "--beta", "7"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen["cfg"] == load_config("toy", {"beta": 7.0}) and seen["cfg"].rank == load_config("toy").rank != 32


def test_duo_config_file_reads_yaml_slips(tmp_path: Path) -> None:
    """Unquoted ``no`` (YAML: false), one name for a list, ``1e-5`` without a dot (YAML: a string) mean what they say."""
    from t2i_unlearn.methods.duo_config import load_config

    f = tmp_path / "duo.yaml"
    f.write_text("mixed_precision: no\nreport_to: jsonl\ntarget_modules: attn1.to_q\nlr: 1e-5\nmax_steps: 2e1\n")
    cfg = load_config(f)
    assert (cfg.mixed_precision, cfg.report_to, cfg.target_modules, cfg.lr, cfg.max_steps) == ("no", ["jsonl"], ["attn1.to_q"], 1e-5, 20)


@pytest.mark.parametrize(
    "method,text,name,value",
    [
        ("esd", "lr: 1e-5\nprompts: nudity\n", "lr", 1e-5),
        ("esd", "prompts: nudity\n", "prompts", ["nudity"]),
        ("uce", "lamb: 1e-1\n", "lamb", 0.1),
        ("sld", "sld_threshold: 1e-2\n", "sld_threshold", 0.01),
        ("darkminer", "mine_lr: 1e-5\ncircumvent_steps: '7'\n", "mine_lr", 1e-5),
    ],
)
def test_baseline_config_files_read_numbers_written_without_a_dot(tmp_path: Path, method: str, text: str, name: str, value) -> None:
    from t2i_unlearn.methods import get_method

    f = tmp_path / "c.yaml"
    f.write_text(text)
    assert getattr(get_method(method).load_config(f, None), name) == value


def test_concept_judges_are_registered() -> None:
    """The judge names a concept spec is checked against (light, before torch) are judges the registry builds."""
    from t2i_unlearn.concepts import CONCEPT_JUDGES
    from t2i_unlearn.judges import JUDGES

    assert set(CONCEPT_JUDGES) <= set(JUDGES)
