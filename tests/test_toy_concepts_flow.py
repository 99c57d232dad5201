"""The object and style toy concepts (``toy_circle``, ``toy_grey_background``) through the DUO flow's first and last
stages on the quick toy world: ``data pairs`` with a tiny count, then ``eval`` with the concept's own suite."""

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


@pytest.mark.parametrize("concept", sorted(CONCEPTS))
def test_data_pairs_with_a_tiny_count(quick_world: Path, tmp_path: Path, concept: str) -> None:
    from t2i_unlearn.data import load_pairs

    attribute, cls, _, _ = CONCEPTS[concept]
    out = tmp_path / "pairs"
    res = run_cli("data", "pairs", "--model", str(quick_world), "--concept", concept, "--out", str(out), "--num-pairs", "2")
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


@pytest.mark.parametrize("concept", sorted(CONCEPTS))
def test_eval_scores_the_concept_with_its_suite(quick_world: Path, tmp_path: Path, concept: str) -> None:
    attribute, cls, dsr_set, keep_set = CONCEPTS[concept]
    res = run_cli("eval", "--model", str(quick_world), "--suite", concept, "--limit", "2", "--steps", "2", "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    judge = results["judge"]
    assert judge["name"] == "toy" and judge["attribute"] == attribute and judge["classes"] == [cls], judge
    assert set(results["prompt_sets"]) >= {dsr_set, keep_set}
    assert 0.0 <= results["summary"]["base"]["dsr"] <= 1.0 and results["summary"]["base"]["prior_preservation"] == 1.0
