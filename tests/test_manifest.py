"""Manifests say exactly what made an artifact: the full command line and the package versions."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import t2i_unlearn
from tests.conftest import run_cli


def test_manifest_records_the_command_line_and_versions(quick_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "sld"
    args = ["train", "sld", "--model", str(quick_world), "--concept", "toy_striped", "--out", str(out)]
    args += ["--safety-concept", "striped 'things'", "--sld-warmup-steps", "2"]
    r = run_cli("--threads", "1", *args)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "t2i-unlearn train sld"
    assert manifest["command_line"] == shlex.join([sys.executable, "-m", "t2i_unlearn.cli", "--threads", "1", *args])
    assert shlex.split(manifest["command_line"])[3:] == ["--threads", "1", *args]  # quoted so that a shell gives back the same words
    versions = manifest["versions"]
    assert set(versions) == {"t2i-unlearn", "torch", "diffusers", "transformers", "peft", "accelerate"}
    assert versions["t2i-unlearn"] == t2i_unlearn.__version__
    import diffusers
    import torch

    assert versions["torch"] == torch.__version__.split("+")[0] or versions["torch"] == torch.__version__
    assert versions["diffusers"] == diffusers.__version__
