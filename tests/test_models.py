"""Loading pipelines of every family by path, including SD3 saved without its T5 encoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from t2i_unlearn.errors import UserError
from t2i_unlearn.models import generate_images, load_pipeline, pipeline_family


def test_sd3_without_t5_loads_and_generates(quick_world: Path, tmp_path: Path):
    from tests._tiny import build_tiny

    pipe_dir = build_tiny("sd3", quick_world / "pipeline" / "tokenizer", tmp_path / "sd3")
    index = json.loads((pipe_dir / "model_index.json").read_text())
    index["text_encoder_3"] = [None, None]
    index["tokenizer_3"] = [None, None]
    (pipe_dir / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(pipe_dir / "text_encoder_3", ignore_errors=True)
    shutil.rmtree(pipe_dir / "tokenizer_3", ignore_errors=True)
    pipe = load_pipeline(str(pipe_dir))
    assert pipeline_family(pipe) == "sd3" and pipe.text_encoder_3 is None
    images = generate_images(pipe, ["a red circle"], [0], steps=2)
    assert images.shape == (1, 32, 32, 3)


def test_broken_model_index_is_a_user_error(tmp_path: Path):
    (tmp_path / "model_index.json").write_text("{broken")
    with pytest.raises(UserError, match="not valid JSON"):
        load_pipeline(str(tmp_path))


def _rewrite_header(path: Path, order: int) -> None:
    """Write the same header with its keys (and metadata keys) in reversed order and spaced out, as another process may."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    flip = (lambda d: dict(reversed(list(d.items())))) if order else (lambda d: d)
    header = flip({k: flip(v) if k == "__metadata__" else v for k, v in header.items()})
    text = json.dumps(header, indent=order).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + size :])


def test_lora_file_bytes_do_not_depend_on_the_header_order(tmp_path: Path):
    """safetensors writes metadata in a per-process order; canonical_header makes equal content equal bytes."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from t2i_unlearn.adapters import canonical_header

    tensors = {"b.weight": torch.arange(6.0).reshape(2, 3), "a.weight": torch.ones(3, dtype=torch.float16)}
    files = [tmp_path / "0.safetensors", tmp_path / "1.safetensors"]
    for order, path in enumerate(files):
        save_file(tensors, str(path), metadata={"format": "pt", "lora": "x"})
        _rewrite_header(path, order)
    assert files[0].read_bytes() != files[1].read_bytes()
    for path in files:
        canonical_header(path)
    assert files[0].read_bytes() == files[1].read_bytes()
    loaded = load_file(str(files[0]))
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    with safe_open(str(files[0]), "pt") as f:
        assert f.metadata() == {"format": "pt", "lora": "x"}


LONG = "a striped red circle on a white background, " * 30


def test_prompt_longer_than_the_tokenizer_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from t2i_unlearn.models import prompt_overflow

    pipe = load_pipeline("toy")
    dropped = len(pipe.tokenizer(LONG).input_ids) - pipe.tokenizer.model_max_length
    assert dropped > 100 and prompt_overflow(pipe, [LONG, "a red circle"]) == [dropped, 0]
    with caplog.at_level("WARNING", logger="t2i_unlearn.models"):
        generate_images(pipe, [LONG, LONG, "a red circle"], [0, 1, 2], steps=1)
        generate_images(pipe, [LONG], [3], steps=1)  # the same prompt again: no second warning
    # only ours: transformers' and diffusers' own truncation warnings reach caplog too when an earlier test let them propagate
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "t2i_unlearn.models"]
    assert len(warnings) == 1 and f"its last {dropped} token(s) are dropped" in warnings[0], warnings
    caplog.clear()
    with caplog.at_level("WARNING", logger="t2i_unlearn.models"):
        generate_images(pipe, ["a blue square"], [0], steps=1)
    assert not [r for r in caplog.records if r.name == "t2i_unlearn.models"]


def test_cli_shows_the_cut_prompt_warning(tmp_path: Path):
    from tests.conftest import run_cli

    res = run_cli("generate", "--model", "toy", "--prompt", LONG, "--seed", "0", "--steps", "1", "--out", str(tmp_path / "x.png"))
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if "token" in line]
    assert len(lines) == 1 and "longer than the text encoder's 77 tokens" in lines[0] and "dropped" in lines[0], res.stderr
