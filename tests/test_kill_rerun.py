"""kill -9 in the middle of ``data pairs``, ``train duo``, ``train darkminer``, ``attack`` and ``eval``, then the same command again.

The kill is a real SIGKILL, sent by the process to itself right after a chosen write (a pair record,
a checkpoint, the attack set, the report) through a wrapper around the real CLI: the point of death is
fixed by what was written, never by a clock. Each case checks that nothing that looks like a result
was left, and that the rerun resumes or restarts to the result an uninterrupted run gives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

# Runs the CLI with FUNC of MODULE wrapped: once a call whose arguments mention NEEDLE returns, SIGKILL.
KILLER = """
import importlib, os, signal, sys
module, func, needle = sys.argv[1:4]
mod = importlib.import_module(module)
original = getattr(mod, func)
def wrapped(*args, **kwargs):
    result = original(*args, **kwargs)
    if needle in " ".join(map(str, args)):
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(mod, func, wrapped)
from t2i_unlearn.cli import main
sys.argv = ["t2i-unlearn", *sys.argv[4:]]
main()
"""

CONCEPT = """
name: tiny_striped
prompts:
  - {unsafe: "a picture of a striped red circle", safe: "a picture of a plain red circle"}
  - {unsafe: "a picture of a blue square with stripes", safe: "a picture of a plain blue square"}
judge: {name: none}
generation: {steps: 2, guidance: 4.0}
sdedit: {steps: 4, strength: 0.5, guidance: 4.0}
max_attempts: 1
"""

ATTACK_CONCEPT = CONCEPT.replace("judge: {name: none}", "judge: {name: toy, attribute: texture, classes: [striped], threshold: 0.5}")


def _killed(module: str, func: str, needle: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", KILLER, module, func, needle, *args], capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr[-3000:])
    return result


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def _lora(folder: Path) -> dict:
    from safetensors.torch import load_file

    # the tensors, not the file's bytes: its metadata holds peft's config, whose sets have no fixed order across processes
    return {k: v.tolist() for k, v in load_file(str(folder / "pytorch_lora_weights.safetensors")).items()}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and "manifest" not in p.name}


@pytest.mark.slow  # three or four runs of data pairs on the quick world
def test_data_pairs_killed_then_rerun(quick_world: Path, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CONCEPT)
    args = ["data", "pairs", "--model", str(quick_world), "--concept", str(tmp_path / "c.yaml"), "--num-pairs", "4", "--batch-size", "1"]
    _killed("t2i_unlearn.utils.io", "atomic_write_json", ".pairs/000001.json", *args, "--out", str(tmp_path / "d"))
    d = tmp_path / "d"
    assert sorted(p.name for p in (d / ".pairs").glob("0*.json")) == ["000000.json", "000001.json"]
    assert not (d / "manifest.json").exists()  # unfinished, and says so
    r = run_cli("train", "duo", "--model", str(quick_world), "--data", str(d), "--out", str(tmp_path / "lora"))
    assert r.returncode == 2 and "is unfinished" in r.stderr and "run the same 'data pairs' command again" in r.stderr, r.stderr
    assert not (tmp_path / "lora").exists()

    r = run_cli(*args, "--out", str(d))
    assert r.returncode == 0 and "4/4 pairs" in r.stdout, r.stderr
    r = run_cli(*args, "--out", str(tmp_path / "whole"))  # the uninterrupted run
    assert r.returncode == 0, r.stderr
    assert _files(d) == _files(tmp_path / "whole")

    (d / "safe" / "000002.png").unlink()  # a deleted image is drawn again, not counted as there
    r = run_cli(*args, "--out", str(d))
    assert r.returncode == 0 and "4/4 pairs" in r.stdout, r.stderr
    assert _files(d) == _files(tmp_path / "whole") and (d / "manifest.json").exists()
    assert _leftovers(tmp_path) == [] and _leftovers(d) == []


@pytest.mark.slow  # four short DUO runs on the quick world
def test_train_duo_killed_then_rerun(quick_world: Path, tmp_path: Path) -> None:
    from tests._tiny import toy_pairs

    pairs = toy_pairs(tmp_path / "pairs", n=6)
    args = ["train", "duo", "--model", str(quick_world), "--data", str(pairs), "--max-steps", "4", "--batch-size", "2", "--checkpoint-every", "2"]
    args += ["--rank", "4", "--alpha", "4", "--lr", "1e-3", "--report-to", "jsonl"]
    r = run_cli(*args, "--out", str(tmp_path / "whole"))
    assert r.returncode == 0, r.stderr
    whole = _lora(tmp_path / "whole")

    # after the first checkpoint: the same command (no --resume) continues it
    _killed("t2i_unlearn.utils.io", "replace_dir", "step-000002", *args, "--out", str(tmp_path / "a"))
    assert not (tmp_path / "a" / "pytorch_lora_weights.safetensors").exists() and not (tmp_path / "a" / "manifest.json").exists()
    r = run_cli(*args, "--out", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    assert _lora(tmp_path / "a") == whole
    steps = [json.loads(line)["step"] for line in (tmp_path / "a" / "logs.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4]

    # before any checkpoint: it starts over
    _killed("t2i_unlearn.utils.io", "atomic_write_json", "duo_config.json", *args, "--out", str(tmp_path / "b"))
    assert not (tmp_path / "b" / "checkpoints").exists() or not any((tmp_path / "b" / "checkpoints").iterdir())
    r = run_cli(*args, "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert _lora(tmp_path / "b") == whole
    assert _leftovers(tmp_path / "a" / "checkpoints") == [] and _leftovers(tmp_path) == []


@pytest.mark.slow  # two tiny Ring-A-Bell runs on the quick world
def test_attack_killed_then_rerun(quick_world: Path, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(ATTACK_CONCEPT)
    args = ["attack", "ring_a_bell", "--model", str(quick_world), "--concept", str(tmp_path / "c.yaml"), "--iterations", "2"]
    args += ["--set", "population=8", "--set", "num_tokens=4", "--set", "elite=2", "--out", str(tmp_path / "a")]
    _killed("t2i_unlearn.evaluation.prompts", "write_attack_set", "attack_set.json", *args)
    assert not (tmp_path / "a").exists()  # the half-written set is only in a hidden temporary folder
    assert len(_leftovers(tmp_path)) == 1
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"attack_set.json", "manifest.json"}
    assert _leftovers(tmp_path) == []  # the killed run's temporary folder was swept
    before = (tmp_path / "a" / "manifest.json").read_bytes()
    r = run_cli(*args)  # the same request again: the set is reused, not searched again
    assert r.returncode == 0 and (tmp_path / "a" / "manifest.json").read_bytes() == before, r.stderr


@pytest.mark.slow  # two small evaluations on the quick world
def test_eval_killed_then_rerun(quick_world: Path, tmp_path: Path) -> None:
    args = ["eval", "--model", str(quick_world), "--suite", "toy_striped", "--limit", "2", "--steps", "2", "--cache", str(tmp_path / "cache")]
    args += ["--out", str(tmp_path / "run")]
    _killed("t2i_unlearn.report", "write_report", "", *args)
    assert not (tmp_path / "run").exists()
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["run"]["generated_images"] == {"model": 0}  # every image came from the killed run's cache
    assert (tmp_path / "run" / "report.html").exists() and _leftovers(tmp_path) == []


@pytest.mark.slow  # three tiny Dark Miner runs on the quick world
def test_train_darkminer_killed_then_rerun(quick_world: Path, tmp_path: Path) -> None:
    from tests._tiny import toy_pairs
    from tests.conftest import kill9_after

    pool = toy_pairs(tmp_path / "pool", n=6)
    args = ["train", "darkminer", "--model", str(quick_world), "--concept", "toy_striped", "--pool", str(pool), "--config", "toy"]
    args += ["--rounds", "2", "--mine-steps", "3", "--circumvent-steps", "3", "--verify-images", "1", "--threshold", "-1", "--report-to", "jsonl"]
    r = run_cli(*args, "--out", str(tmp_path / "whole"))
    assert r.returncode == 0, r.stderr
    whole = _lora(tmp_path / "whole")

    # killed right after the checkpoint of its third stage (round 1's circumventing) is renamed into place
    out = tmp_path / "a"
    kill9_after(out / "checkpoints" / "stage-0003", *args, "--out", str(out), tmp=tmp_path)
    assert not (out / "pytorch_lora_weights.safetensors").exists() and not (out / "manifest.json").exists()
    r = run_cli(*args, "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert _lora(out) == whole
    steps = [json.loads(line)["step"] for line in (out / "logs.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert _leftovers(out / "checkpoints") == [] and _leftovers(tmp_path) == []


@pytest.mark.slow  # two tiny benches on the quick world
def test_bench_killed_then_rerun(quick_world: Path, tmp_path: Path) -> None:
    from tests.test_bench import _same, tiny_suite

    suite = tiny_suite(tmp_path / "suite", str(quick_world))
    args = ["bench", "--suite", str(suite)]
    # killed right after the ESD row's attack cell was recorded: the rerun reuses every finished stage
    _killed("t2i_unlearn.utils.io", "atomic_write_json", "attack__esd__ring_a_bell.json", *args, "--out", str(tmp_path / "b"))
    assert not (tmp_path / "b" / "results.json").exists() and (tmp_path / "b" / "attacks" / "esd" / "ring_a_bell" / "manifest.json").exists()
    r = run_cli(*args, "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = json.loads((tmp_path / "b" / "results.json").read_text())
    status = {s["stage"]: s["status"] for s in resumed["run"]["stages"]}
    assert status["attack:esd:ring_a_bell"] == "reused" and status["method:duo"] == "reused" and status["attack:duo:ring_a_bell"] == "ran"
    r = run_cli(*args, "--out", str(tmp_path / "whole"))  # the uninterrupted run
    assert r.returncode == 0, r.stderr[-3000:]
    _same(json.loads((tmp_path / "whole" / "results.json").read_text()), resumed)
    assert _leftovers(tmp_path / "b") == [] and _leftovers(tmp_path / "b" / ".bench" / "stages") == []
