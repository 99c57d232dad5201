"""Metrics as pure functions, and the Q16 / API / NudeNet judges with tiny stand-ins (no downloads)."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from t2i_unlearn.errors import UserError
from t2i_unlearn.evaluation.suites import EvalJudgeSpec, resolve_judge
from t2i_unlearn.judges import build_judge
from t2i_unlearn.metrics import defense_success_rate, frechet_distance, prior_preservation, wilson_interval


def test_dsr_preservation_and_fid():
    r = defense_success_rate(np.array([True, False, False, False]))
    assert r["dsr"] == 0.75 and r["flagged"] == 1 and r["n"] == 4
    lo, hi = wilson_interval(3, 4)
    assert 0 < lo < 0.75 < hi <= 1
    assert prior_preservation(np.array([0.1, 0.3]))["prior_preservation"] == pytest.approx(0.8)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 3.0) == pytest.approx(36.0, rel=0.05)


@pytest.fixture()
def tiny_clip(tmp_path: Path, quick_world: Path) -> Path:
    """A random CLIPModel (32x32 input, 16-d joint space) with the toy tokenizer, saved like a real one."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(quick_world / "pipeline" / "tokenizer")
    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1, "vocab_size": len(tok)},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    import torch

    torch.manual_seed(0)
    out = tmp_path / "clip"
    CLIPModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_q16_judge_with_pickled_and_safetensors_prompts(tiny_clip: Path, tmp_path: Path):
    from safetensors.numpy import save_file

    prompts = np.random.default_rng(0).normal(size=(2, 16)).astype(np.float32)
    pfile = tmp_path / "prompts.p"
    pfile.write_bytes(pickle.dumps(prompts))
    sfile = tmp_path / "prompts.safetensors"
    save_file({"prompts": prompts}, str(sfile))
    images = np.random.default_rng(1).integers(0, 255, size=(3, 40, 48, 3), dtype=np.uint8)
    results = []
    for f in (pfile, sfile):
        judge = build_judge(EvalJudgeSpec(name="q16", options={"clip_model": str(tiny_clip), "embeddings": str(f)}))
        flagged, scores = judge.flags(images)
        assert flagged.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()
        assert (flagged == (scores >= 0.5)).all()
        info = judge.info()
        assert info["name"] == "q16" and info["threshold"] == 0.5 and len(info["weights_sha256"]) == 64 and info["clip_weights_sha256"]
        results.append(scores)
    np.testing.assert_allclose(results[0], results[1])


def test_q16_refuses_code_in_pickles_and_wrong_sizes(tiny_clip: Path, tmp_path: Path):
    evil = tmp_path / "evil.p"
    evil.write_bytes(pickle.dumps(Path("/")))  # any non-array global must be refused
    with pytest.raises(UserError, match="refusing to load"):
        build_judge(EvalJudgeSpec(name="q16", options={"clip_model": str(tiny_clip), "embeddings": str(evil)}))
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 768), dtype=np.float32))
    with pytest.raises(UserError, match="768-d but CLIP model"):
        build_judge(EvalJudgeSpec(name="q16", options={"clip_model": str(tiny_clip), "embeddings": str(wrong)}))
    with pytest.raises(UserError, match=r"needs options\.clip_model"):
        build_judge(EvalJudgeSpec(name="q16"))


def test_clip_score_with_a_configured_model(tiny_clip: Path):
    from t2i_unlearn.metrics.backends import make_alignment

    scorer = make_alignment(str(tiny_clip), None)
    images = np.random.default_rng(2).integers(0, 255, size=(2, 32, 32, 3), dtype=np.uint8)
    s = scorer.score(images, ["a red circle", "a blue square"], [{}, {}])
    assert s.shape == (2,) and (s >= 0).all() and (s <= 100).all()
    assert scorer.info()["clip_model"]


def test_api_judge_callable_and_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "my_judge.py").write_text("def judge(images, question=None):\n    return [bool(im.mean() > 127) for im in images]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    images = np.stack([np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)])
    judge = build_judge(EvalJudgeSpec(name="api", options={"callable": "my_judge:judge", "question": "dark?", "version": "v1"}))
    flagged, _ = judge.flags(images)
    assert flagged.tolist() == [False, True] and judge.info()["version"] == "v1"
    script = tmp_path / "cmd.py"
    script.write_text("import json, sys, os\nprint(json.dumps([{'flagged': f.startswith('00001'), 'score': 0.5} for f in sorted(os.listdir(sys.argv[1]))]))\n")
    judge = build_judge(EvalJudgeSpec(name="api", options={"command": [sys.executable, str(script)]}))
    assert judge.flags(images)[0].tolist() == [False, True]
    with pytest.raises(UserError, match="exactly one of"):
        build_judge(EvalJudgeSpec(name="api"))


def test_nudenet_presets_are_recorded():
    judge = build_judge(resolve_judge(EvalJudgeSpec(name="nudenet", preset="duo")))
    flagged, _ = judge.flags(np.full((1, 64, 64, 3), 200, np.uint8))
    info = judge.info()
    assert not flagged[0] and info["threshold"] == 0.6 and len(info["classes"]) == 4 and len(info["weights_sha256"]) == 64
    with pytest.raises(UserError, match="unknown judge 'gpt5'"):
        build_judge(EvalJudgeSpec(name="gpt5"))
