"""The object and style toy concepts (``toy_circle``, ``toy_grey_background``) through the DUO flow's first and last
stages: ``data pairs`` with a tiny count and the concept's own judge, then ``eval`` with the concept's own suite.

The quick toy world (a 3-minute smoke-test model) draws grey backgrounds the judge recognises, but no recognisable
shapes (the judge's circle probability on its "a picture of a red circle" images: 0.20 to 0.25, chance among four
shapes), so circle pairs are made with the shipped ``toy`` world, whose circles the judge scores 0.93 to 1.0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

# concept -> (judge attribute, judged class, the suite's DSR set, its preservation set)
CONCEPTS = {
    "toy_circle": ("shape", "circle", "circle", "other_shapes"),
    "toy_grey_background": ("background", "grey", "grey_background", "other_backgrounds"),
}


@pytest.mark.parametrize(("concept", "world"), [("toy_grey_background", "quick"), ("toy_circle", "toy")])
def test_data_pairs_with_a_tiny_count(quick_world: Path, tmp_path: Path, concept: str, world: str) -> None:
    from t2i_unlearn.data import load_pairs

    attribute, cls, _, _ = CONCEPTS[concept]
    out = tmp_path / "pairs"
    model = str(quick_world) if world == "quick" else world
    res = run_cli("data", "pairs", "--model", model, "--concept", concept, "--out", str(out), "--num-pairs", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{concept}: " in res.stdout and "/2 pairs in" in res.stdout, res.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    judge = manifest["judge"]
    assert judge["name"] == "toy" and judge["attribute"] == attribute and judge["classes"] == [cls], judge
    pairs = load_pairs(out)
    assert 1 <= len(pairs) <= 2 and pairs.unsafe.shape[1:] == (32, 32, 3)
    assert pairs.preserve is not None and len(pairs.preserve) >= 1  # the spec's preserve prompts (the concept's neighbours)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert {r["concept"] for r in rows if r["role"] != "preserve"} == {concept}
    # the judge's filter held: unsafe images flagged, their safe twins not
    assert all(r["judge_score"] >= 0.5 for r in rows if r["role"] == "unsafe") and all(r["judge_score"] < 0.5 for r in rows if r["role"] == "safe")


@pytest.fixture(scope="module")
def lora(quick_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-step DUO LoRA on the quick world: something to compare the base model with."""
    from t2i_unlearn.methods.duo import DUOConfig, train_duo
    from tests._tiny import toy_pairs

    root = tmp_path_factory.mktemp("lora")
    cfg = DUOConfig(max_steps=1, batch_size=2, rank=2, alpha=2.0, lr=1e-3, report_to=["jsonl"])
    return train_duo(str(quick_world), toy_pairs(root / "pairs", n=2), root / "lora", cfg)


@pytest.mark.parametrize("concept", sorted(CONCEPTS))
def test_eval_scores_the_concept_with_its_suite(quick_world: Path, lora: Path, tmp_path: Path, concept: str) -> None:
    attribute, cls, dsr_set, keep_set = CONCEPTS[concept]
    args = ["--model", str(quick_world), "--lora", str(lora), "--suite", concept, "--limit", "2", "--steps", "2"]
    res = run_cli("eval", *args, "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    judge = results["judge"]
    assert judge["name"] == "toy" and judge["attribute"] == attribute and judge["classes"] == [cls], judge
    assert set(results["prompt_sets"]) >= {dsr_set, keep_set} and results["variants"] == ["base", "unlearned"]
    scores = results["summary"]["unlearned"]
    assert 0.0 <= scores["dsr"] <= 1.0 and 0.0 < scores["prior_preservation"] <= 1.0, scores
