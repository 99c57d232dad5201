"""End to end on the quick toy world: eval writes results and a report, re-runs give identical numbers, bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t2i_unlearn.errors import UserError
from tests.conftest import run_cli

FAST = ["--limit", "2", "--steps", "2"]


@pytest.fixture(scope="module")
def random_lora(quick_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA with random (non-zero) weights on the quick world's UNet self-attention: a stand-in for a trained adapter."""
    import torch

    from t2i_unlearn.adapters import add_lora, default_targets, denoiser, save_lora
    from t2i_unlearn.models import load_pipeline

    net = denoiser(load_pipeline(str(quick_world)))
    add_lora(net, rank=4, alpha=4, targets=default_targets("sd"), seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    out = tmp_path_factory.mktemp("lora")
    save_lora(out, net, "sd")
    return out


def _numbers(results: dict) -> dict:
    sets = results["prompt_sets"]
    return {"summary": results["summary"], "sets": {k: v["results"] for k, v in sets.items()}, "images": {k: v["images"] for k, v in sets.items()}}


@pytest.mark.slow  # about 90 s of CPU: three evaluations and a comparison
def test_eval_report_rerun_and_compare(quick_world: Path, random_lora: Path, tmp_path: Path):
    from t2i_unlearn.evaluation import evaluate, write_attack_set
    from t2i_unlearn.report import compare_runs

    prompts = ["a zebra-striped red disc", "a blue box covered in stripes"]
    attack = write_attack_set(tmp_path / "attack.json", prompts, attack="toy_synonyms", concept="toy_striped")
    args = ["--model", str(quick_world), "--suite", "toy_striped", "--lora", str(random_lora), "--attack", str(attack), *FAST]
    r = run_cli("eval", *args, "--out", str(tmp_path / "r1"), "--cache", str(tmp_path / "cache_a"))
    assert r.returncode == 0, r.stderr
    assert "unlearned: dsr" in r.stdout and "report:" in r.stdout
    first = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert first["variants"] == ["base", "unlearned"] and first["run"]["generated_images"] == {"base": 8, "unlearned": 8}
    judge = first["judge"]
    assert judge["name"] == "toy" and judge["classes"] == ["striped"] and judge["threshold"] == 0.5 and judge["version"] and len(judge["weights_sha256"]) == 64
    s = first["summary"]["unlearned"]
    assert 0 <= s["dsr"] <= 1 and 0 < s["prior_preservation"] < 1 and "close_drift_std" in s and "fid" in s and "clip_score" in s
    assert set(s["dsr_attacks"]) == {"attack:toy_synonyms"} and first["summary"]["base"]["prior_preservation"] == 1.0
    assert first["metric_backends"]["clip_score"]["metric"] == "attribute_accuracy"
    assert first["settings"]["lora"][0]["sha256"] and first["settings"]["suite"]["sampling"]["steps"] == 2
    html = (tmp_path / "r1" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and 'src="http' not in html
    for name in ("report.md", "dsr_vs_preservation.png", "grid_striped.png", "grid_attack_toy_synonyms.png"):
        assert (tmp_path / "r1" / name).stat().st_size > 0

    # Same inputs, fresh cache: everything generated again, identical numbers.
    same = {"lora": [str(random_lora)], "attacks": [str(attack)], "limit": 2, "steps": 2}
    second = evaluate(str(quick_world), "toy_striped", tmp_path / "r2", cache_dir=tmp_path / "cache_b", **same)
    assert second["run"]["generated_images"] == {"base": 8, "unlearned": 8}
    assert _numbers(second) == _numbers(first)
    # Same cache: nothing generated, identical numbers; the base model alone reuses the base images.
    third = evaluate(str(quick_world), "toy_striped", tmp_path / "r3", cache_dir=tmp_path / "cache_a", **same)
    assert third["run"]["generated_images"] == {"base": 0, "unlearned": 0} and _numbers(third) == _numbers(first)
    alone = evaluate(str(quick_world), "toy_striped", tmp_path / "r4", limit=2, steps=2, cache_dir=tmp_path / "cache_a", report=False)
    assert alone["run"]["generated_images"] == {"model": 0} and alone["summary"]["model"]["dsr"] == first["summary"]["base"]["dsr"]

    page = compare_runs([tmp_path / "r1", tmp_path / "r2"], tmp_path / "cmp", labels=["a", "b"])
    assert page.exists() and (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    assert "| a | toy_striped |" in (tmp_path / "cmp" / "compare.md").read_text()


def _one_line_error(result, needle: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr


def test_bad_input_is_one_line(quick_world: Path, tmp_path: Path):
    from t2i_unlearn.evaluation import evaluate

    _one_line_error(run_cli("eval", "--model", str(quick_world), "--suite", "nope", "--out", str(tmp_path / "r")), "unknown suite 'nope'")
    (tmp_path / "p.csv").write_text("text,shape\na red circle,circle\n")
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\njudge: {name: toy, attribute: texture, classes: [striped]}\nprompt_sets: {a: {file: p.csv, format: csv, metrics: [dsr]}}\n")
    with pytest.raises(UserError, match="missing column 'prompt'"):
        evaluate(str(quick_world), suite, tmp_path / "r", cache_dir=tmp_path / "cache")
    (tmp_path / "p.csv").write_text("prompt,shape\na red circle,circle\n")
    suite.write_text("name: s\njudge: {name: clipper}\nprompt_sets: {a: {file: p.csv, format: csv, metrics: [dsr]}}\n")
    with pytest.raises(UserError, match="unknown judge 'clipper'"):
        evaluate(str(quick_world), suite, tmp_path / "r", cache_dir=tmp_path / "cache")


def test_images_of_another_size(quick_world: Path, random_lora: Path, tmp_path: Path):
    from t2i_unlearn.evaluation import evaluate

    (tmp_path / "p.csv").write_text("prompt,shape,colour\na red circle,circle,red\n")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\njudge: {name: toy, attribute: texture, classes: [striped]}\nsampling: {steps: 1, guidance: 4, height: 64, width: 64}\n"
        "metrics: {perceptual: toy, fid: toy, clip: toy}\nprompt_sets: {a: {file: p.csv, format: csv, metrics: [prior_preservation]}}\n"
    )
    with pytest.raises(UserError, match="read 32x32 images, got 64x64"):
        evaluate(str(quick_world), suite, tmp_path / "r", lora=[str(random_lora)], cache_dir=tmp_path / "cache", report=False)


@pytest.mark.slow  # two accelerate launches: about 60 s of CPU
def test_two_processes_split_the_work_and_agree(quick_world: Path, random_lora: Path, tmp_path: Path):
    import os
    import shutil
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "accelerate"
    if not exe.exists():
        pytest.skip("accelerate launcher not installed")
    args = ["-m", "t2i_unlearn.cli", "eval", "--model", str(quick_world), "--suite", "toy_striped", "--lora", str(random_lora), *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results, drawn = {}, {}
    for n in (1, 2):
        # Without GPUs, `--cpu` always starts one process; `--multi_gpu` starts n CPU processes (gloo).
        mode = "--multi_gpu" if n > 1 else "--cpu"
        cmd = [str(exe), "launch", mode, "--num_processes", str(n), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        out, cache = tmp_path / f"r{n}", tmp_path / f"cache{n}"
        r = subprocess.run([*cmd, *args, "--out", str(out), "--cache", str(cache)], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        results[n] = json.loads((out / "results.json").read_text())
        drawn[n] = len([p for p in cache.rglob("*") if p.is_file() and p.suffix == ".png"])
        shutil.rmtree(cache)
    assert drawn[1] == drawn[2] > 0  # every image drawn exactly once, whatever the number of processes
    one, two = results[1]["summary"], results[2]["summary"]
    assert one.keys() == two.keys()
    for variant in one:
        assert one[variant]["dsr"] == two[variant]["dsr"]
        assert one[variant]["prior_preservation"] == pytest.approx(two[variant]["prior_preservation"], abs=1e-3)


def test_late_process_draws_its_own_share(tmp_path: Path, monkeypatch) -> None:
    """Two processes split the images; the second starts after the first has drawn its share (a loaded machine).

    Each image belongs to one process from the job list alone, so the late one neither skips an image
    (which the main process then could not read from the cache) nor redraws one of the other's.
    """
    import types

    import numpy as np

    from t2i_unlearn import models
    from t2i_unlearn.evaluation import runner
    from t2i_unlearn.evaluation.cache import ImageCache

    drawn: list[int] = []

    def fake_generate(pipe, prompts, seeds, **kwargs):
        drawn.extend(seeds)
        return np.full((len(seeds), 4, 4, 3), 7, dtype=np.uint8)

    monkeypatch.setattr(models, "load_pipeline", lambda *args, **kwargs: object())
    monkeypatch.setattr(models, "generate_images", fake_generate)
    suite = runner.load_suite("toy_striped")
    sets = {"s": (types.SimpleNamespace(embeddings=None), None)}
    jobs = [(runner.Job("s", i, f"prompt {i}", i, 4.0, "", {}), f"{i:064x}", {"i": i}) for i in range(7)]
    cache = ImageCache(tmp_path / "cache")
    variant = runner.Variant("base", "m", [], [], {})
    for rank in (0, 1):
        monkeypatch.setattr(runner, "_distributed", lambda rank=rank: (rank, 2, None))
        runner.generate_missing(variant, jobs, suite, sets, cache, "cpu", False)
    assert sorted(drawn) == list(range(7))
    assert all(cache.get(key).shape == (4, 4, 3) for _, key, _ in jobs)


def test_limit_one_skips_fid_with_a_note(quick_world: Path, random_lora: Path, tmp_path: Path):
    """`--limit 1` draws one image per prompt set and model; FID (undefined below two images) is skipped with a note, not an error."""
    from t2i_unlearn.evaluation import evaluate

    results = evaluate(str(quick_world), "toy_striped", tmp_path / "r", lora=[str(random_lora)], limit=1, steps=1, cache_dir=tmp_path / "cache")
    assert results["run"]["generated_images"] == {"base": 3, "unlearned": 3} and results["run"]["image_size"] == [32, 32]
    unrelated = results["prompt_sets"]["unrelated"]["results"]["unlearned"]
    assert "fid" not in unrelated and "at least 2 images per side, got 1 and 1" in unrelated["fid_skipped"]
    assert "fid" not in results["summary"]["unlearned"] and "prior_preservation" in results["summary"]["unlearned"]
    md = (tmp_path / "r" / "report.md").read_text()
    assert "FID needs at least 2 images per side" in md and "size 32×32 (the model's default)" in md and "-×-" not in md


def test_default_label_names_the_method(tmp_path: Path):
    import json

    from t2i_unlearn.evaluation.runner import default_label

    duo, esd, bare = tmp_path / "duo_run" / "lora", tmp_path / "esd", tmp_path / "mine"
    for d in (duo, esd, bare):
        d.mkdir(parents=True)
    (duo / "manifest.json").write_text(json.dumps({"command": "t2i-unlearn train duo"}))
    (esd / "manifest.json").write_text(json.dumps({"command": ["t2i-unlearn", "train", "esd", "--lr", "1e-3"], "concept": {"name": "toy_striped"}}))
    assert default_label("toy", [str(duo)]) == "DUO"
    assert default_label("toy", [str(esd), str(bare)]) == "ESD: toy_striped + mine"
    assert default_label("models/sd14", []) == "sd14"
