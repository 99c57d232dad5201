"""DUO under ``accelerate launch``: 2 CPU processes give the 1-process result at the same global batch.

(``accelerate launch --cpu`` always starts a single process; ``--multi_gpu --num_processes 2`` on a machine
without GPUs starts two CPU processes that train together over gloo.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests._tiny import toy_pairs


def _accelerate() -> list[str]:
    exe = Path(sys.executable).parent / "accelerate"
    if not exe.exists() and shutil.which("accelerate") is None:
        pytest.skip("accelerate launcher not installed")
    return [str(exe) if exe.exists() else "accelerate"]


def test_two_processes_match_one(quick_world: Path, tmp_path: Path) -> None:
    pairs = toy_pairs(tmp_path / "pairs", n=8)
    common = ["train", "duo", "--model", str(quick_world), "--data", str(pairs), "--max-steps", "3", "--batch-size", "4"]
    common += ["--rank", "4", "--alpha", "4", "--lr", "1e-3", "--checkpoint-every", "10", "--report-to", "jsonl", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"p{n}"
        # on CPU, `--cpu` always starts one process; `--multi_gpu` starts n (torchrun) and Accelerator(cpu=True) makes them MULTI_CPU (gloo)
        mode = "--multi_gpu" if n > 1 else "--cpu"
        cmd = [*_accelerate(), "launch", mode, "--num_processes", str(n), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        cmd += ["-m", "t2i_unlearn.cli", *common, "--out", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        outs[n] = load_file(str(out / "pytorch_lora_weights.safetensors"))
        assert json.loads((out / "duo_config.json").read_text())["processes"] == n
    assert outs[1].keys() == outs[2].keys()
    moved = 0
    for k in outs[1]:
        torch.testing.assert_close(outs[2][k], outs[1][k], atol=2e-5, rtol=1e-4)
        moved += int(k.endswith("lora_B.weight") and outs[1][k].abs().max() > 1e-4)
    assert moved > 0  # the runs trained something: equality is not trivially two untouched adapters


def test_bench_two_processes_match_one(quick_world: Path, tmp_path: Path) -> None:
    """A tiny bench under ``accelerate launch``: stages dealt to 2 CPU processes, image batches split; the same results.json, exactly."""
    from tests.test_bench import _same, tiny_suite

    suite = tiny_suite(tmp_path / "suite", str(quick_world))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results = {}
    for n in (1, 2):
        out = tmp_path / f"b{n}"
        mode = "--multi_gpu" if n > 1 else "--cpu"
        cmd = [*_accelerate(), "launch", mode, "--num_processes", str(n), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        cmd += ["-m", "t2i_unlearn.cli", "bench", "--suite", str(suite), "--out", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        results[n] = json.loads((out / "results.json").read_text())
        assert results[n]["run"]["processes"] == n
    _same(results[1], results[2], exact=True)
