"""DUO with mined pairs (``mine_rounds``): a round on the quick toy world, its logs and artifacts, and exact resumption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t2i_unlearn.methods.duo import DUOConfig, train_duo
from tests._tiny import toy_pairs
from tests.conftest import kill9_after, run_cli

LORA = "pytorch_lora_weights.safetensors"
# one round after step 2 of 4: 2 mining steps, 3 images drawn from the mined embedding, all kept (no judge filter)
MINING = {"mine_rounds": 1, "mine_every": 2, "mined_pairs_per_round": 3, "mine_steps": 2, "mine_num_tokens": 2, "mine_batch_size": 2}
MINING["mine_judge_filter"] = False


def _cfg(**kw) -> DUOConfig:
    base = {"max_steps": 4, "batch_size": 2, "checkpoint_every": 2, "rank": 4, "alpha": 4.0, "lr": 1e-3, "conditioning": "prompt", "report_to": ["jsonl"]}
    return DUOConfig(**{**base, **MINING, **kw})


def _flags(out: Path, pairs: Path, world: Path) -> list[str]:
    args = ["--model", str(world), "--data", str(pairs), "--out", str(out), "--max-steps", "4", "--batch-size", "2", "--checkpoint-every", "2"]
    args += ["--rank", "4", "--alpha", "4", "--lr", "1e-3", "--conditioning", "prompt", "--report-to", "jsonl", "--no-mine-judge-filter"]
    args += ["--mine-rounds", "1", "--mine-every", "2", "--mined-pairs-per-round", "3", "--mine-steps", "2", "--mine-num-tokens", "2"]
    return [*args, "--mine-batch-size", "2"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return toy_pairs(tmp_path_factory.mktemp("pairs") / "d", n=6)


@pytest.fixture(scope="module")
def mined(quick_world: Path, pairs: Path, tmp_path_factory) -> Path:
    """The uninterrupted run: 4 steps, one mining round after step 2."""
    return train_duo(str(quick_world), pairs, tmp_path_factory.mktemp("run") / "full", _cfg())


def test_round_is_logged_written_and_recorded(mined: Path) -> None:
    rows = [json.loads(line) for line in (mined / "logs.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 2, 3, 4]
    found = rows[3]
    assert found["mine_round"] == 1 and found["mined_drawn"] == 3 and found["mined_kept"] == 3
    assert 0 <= found["mined_flagged"] <= 3 and found["pairs_added"] == found["mined_pairs_total"] >= 1
    assert found["mine_loss_final"] > 0 and found["mine_loss_init"] > 0
    embedding = mined / "mined" / "round_00.safetensors"
    from safetensors.torch import load_file

    assert load_file(str(embedding))["embedding"].shape[0] == 2
    from t2i_unlearn.data import load_pairs

    added = load_pairs(mined / "mined_pairs" / "round_00")
    assert len(added) == found["pairs_added"] and set(added.unsafe_prompts) == {"<duo-mined-r00>"}
    manifest = json.loads((mined / "manifest.json").read_text())
    assert manifest["mined_rounds"] == [found] and manifest["settings"]["mining_after_steps"] == [2]
    assert "mined pairs" in (mined / "README.md").read_text()
    assert {p.name for p in (mined / "checkpoints" / "step-000004").iterdir()} >= {"mined_pairs.safetensors", "mined_rounds.json", "lora.safetensors"}


def test_continue_across_a_round_gives_the_same_lora_bytes(mined: Path, quick_world: Path, pairs: Path, tmp_path: Path) -> None:
    """Stopped at the round boundary (before the round ran) or just after it: continuing ends with the uninterrupted LoRA's bytes."""
    for stop in (2, 3):
        out = tmp_path / f"stop{stop}"
        train_duo(str(quick_world), pairs, out, _cfg(max_steps=stop))
        train_duo(str(quick_world), pairs, out, _cfg(), resume=True)
        assert (out / LORA).read_bytes() == (mined / LORA).read_bytes(), stop
        assert [json.loads(x)["step"] for x in (out / "logs.jsonl").read_text().splitlines()] == [0, 1, 2, 2, 3, 4]


def test_kill9_at_the_checkpoint_before_the_round_then_rerun(mined: Path, quick_world: Path, pairs: Path, tmp_path: Path) -> None:
    """kill -9 right after step 2's first checkpoint (the round not yet run); the same command again mines the same
    embedding, adds the same pairs and ends with the uninterrupted run's LoRA bytes."""
    out = tmp_path / "killed"
    args = _flags(out, pairs, quick_world)
    kill9_after(out / "checkpoints" / "step-000002", "train", "duo", *args, tmp=tmp_path)
    assert not (out / "checkpoints" / "step-000002" / "mined_rounds.json").exists()
    res = run_cli("train", "duo", *args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / LORA).read_bytes() == (mined / LORA).read_bytes()
    assert _embedding(out) == _embedding(mined)


def _embedding(run: Path) -> tuple:
    from safetensors import safe_open

    with safe_open(str(run / "mined" / "round_00.safetensors"), "pt") as f:
        return {k: f.get_tensor(k).tolist() for k in f.keys()}, f.metadata()


def test_mining_off_by_default_and_refused_on_sd3(quick_world: Path, pairs: Path, tmp_path: Path) -> None:
    from tests._tiny import build_tiny

    assert DUOConfig().mine_rounds == 0 and DUOConfig().mining_steps() == []
    assert DUOConfig(mine_rounds=3, mine_every=100, max_steps=250).mining_steps() == [100, 200]
    model = build_tiny("sd3", quick_world / "pipeline" / "tokenizer", tmp_path / "sd3")
    res = run_cli("train", "duo", "--model", str(model), "--data", str(pairs), "--out", str(tmp_path / "o"), "--mine-rounds", "1")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "mine_rounds" in lines[0] and "SDXL" in lines[0], res.stderr[-800:]
    assert not (tmp_path / "o").exists()
