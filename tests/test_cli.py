"""The CLI: images come out, and bad input gets one line, a non-zero exit and no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import run_cli


def _one_line_error(result, needle: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_generate_one_image_and_a_grid(quick_world: Path, tmp_path: Path):
    one = tmp_path / "one.png"
    r = run_cli("generate", "--model", str(quick_world), "--prompt", "a striped red circle", "--seed", "3", "--steps", "3", "--out", str(one))
    assert r.returncode == 0, r.stderr
    assert Image.open(one).size == (32, 32)
    made = one.read_bytes()
    r = run_cli("generate", "--model", str(quick_world), "--prompt", "a striped red circle", "--seed", "3", "--steps", "3", "--out", str(one))
    assert r.returncode == 0 and "already holds this image" in r.stdout and one.read_bytes() == made, r.stderr  # the same image: reused
    r = run_cli("generate", "--model", str(quick_world), "--prompt", "a striped red circle", "--seed", "4", "--steps", "3", "--out", str(one))
    _one_line_error(r, "already exists (an image made with other settings); use another file name or --overwrite")
    assert one.read_bytes() == made
    grid = tmp_path / "grid.png"
    r = run_cli("generate", "--model", str(quick_world / "pipeline"), "-p", "a blue square", "-p", "a red wedge", "-n", "3", "--steps", "2", "--out", str(grid))
    assert r.returncode == 0, r.stderr
    w, h = Image.open(grid).size
    assert w > 3 * 32 and h > 2 * 32 and w < 4 * 40 and h < 3 * 40  # 3 columns, 2 rows


def test_unknown_preset(tmp_path: Path):
    _one_line_error(run_cli("toy", "build", "--preset", "huge", "--out", str(tmp_path / "w")), "unknown toy preset 'huge'")


def test_unwritable_output_directory(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(run_cli("toy", "build", "--preset", "quick", "--out", str(blocker / "world")), "not writable")


def test_model_path_that_is_not_a_pipeline(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    _one_line_error(run_cli("generate", "--model", str(tmp_path / "empty"), "-p", "x", "--out", str(tmp_path / "a.png")), "not a diffusers pipeline")
    _one_line_error(run_cli("generate", "--model", "no/such/thing", "-p", "x", "--out", str(tmp_path / "a.png")), "neither an existing directory")


def test_corrupted_cache(quick_world: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    world = cache / "toy" / quick_world.name
    shutil.copytree(quick_world, world)
    (world / "judges" / "judge.safetensors").write_bytes(b"garbage")
    r = run_cli("generate", "--model", "toy:quick", "-p", "a red circle", "--out", str(tmp_path / "a.png"), env={"T2I_UNLEARN_CACHE": str(cache)})
    _one_line_error(r, "corrupted")
    assert not (tmp_path / "a.png").exists()


def test_bad_output_suffix_and_counts(quick_world: Path, tmp_path: Path):
    _one_line_error(run_cli("generate", "--model", str(quick_world), "-p", "x", "--out", str(tmp_path / "a.txt")), "must end in .png")
    _one_line_error(run_cli("generate", "--model", str(quick_world), "-p", "x", "-n", "0", "--out", str(tmp_path / "a.png")), "--num-images")


def test_unavailable_device_and_bad_lora_are_refused_before_the_model_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import torch

    from t2i_unlearn.errors import UserError
    from t2i_unlearn.models import check_device_available, load_pipeline

    r = run_cli("generate", "--model", "toy", "-p", "x", "--device", "cuda", "--out", str(tmp_path / "a.png"), env={"CUDA_VISIBLE_DEVICES": ""})
    _one_line_error(r, "--device cuda: torch sees no CUDA device here; use --device cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device_available("cuda:1")
    with pytest.raises(UserError, match="torch sees 2 CUDA device"):
        check_device_available("cuda:2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"holds no \.safetensors file"):
        load_pipeline("no/such-model", lora=[str(tmp_path / "empty")])  # refused before the (missing) model is looked up


def test_debug_shows_the_traceback(tmp_path: Path):
    r = run_cli("--debug", "toy", "build", "--preset", "huge", "--out", str(tmp_path / "w"))
    assert r.returncode != 0 and "Traceback" in r.stderr


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_generate_with_other_families(quick_world: Path, tmp_path: Path, family: str):
    from tests._tiny import build_tiny

    pipe_dir = build_tiny(family, quick_world / "pipeline" / "tokenizer", tmp_path / family)
    out = tmp_path / f"{family}.png"
    r = run_cli("generate", "--model", str(pipe_dir), "-p", "a red circle", "--steps", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (32, 32)
