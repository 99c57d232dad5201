"""Loading pipelines of every family by path, including SD3 saved without its T5 encoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

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
