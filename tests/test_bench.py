"""The bench: suite YAML loading and validation, registry-driven plans, a tiny bench end to end, resume, dry run, the demo's caching."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from t2i_unlearn.bench.plan import make_plan
from t2i_unlearn.bench.spec import bench_suite_names, load_bench_suite
from t2i_unlearn.errors import UserError
from tests.conftest import run_cli
from tests.test_kill_rerun import CONCEPT

TINY = """
name: tiny
model: {model}
concept: c.yaml
eval: {{suite: toy_striped, limit: 2, steps: 2}}
pairs: {{num_pairs: 2, batch_size: 2}}
methods:
  - {{name: base}}
  - {{name: esd, config: toy, settings: {{iterations: 2, ddim_steps: 4}}}}
  - {{name: duo, config: toy, data: pairs, settings: {{max_steps: 2, batch_size: 2, rank: 2, alpha: 2, checkpoint_every: 1}}}}
attacks:
  - name: ring_a_bell
    budget: {{iterations: 2}}
    settings: {{population: 8, num_tokens: 4, elite: 2}}
    prompts: ["a picture of a red circle"]
    images_per_prompt: 2
picture: {{sets: [striped, dotted], per_set: 2}}
"""


def tiny_suite(folder: Path, model: str = "toy:quick") -> Path:
    """A bench suite small enough for a test: 3 methods x (plain + Ring-A-Bell) on 2 prompts per set, 2 sampling steps."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "c.yaml").write_text(CONCEPT)
    path = folder / "tiny.yaml"
    path.write_text(TINY.format(model=model))
    return path


def _close(a: object, b: object, where: str = "") -> None:
    """Equal structures; floats to 1e-5 relative (an image drawn in another batch composition differs in its last bits)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _same(a: dict, b: dict, exact: bool = False) -> None:
    """Two results.json are the same but for the run block (timings, which stages ran) and paths.

    Counts, DSRs and every non-float field must be equal; continuous metrics (preservation, drift, FID) to 1e-5
    relative unless ``exact``: a resumed run may draw the rest of a batch that a kill cut short as a smaller
    batch, and an image drawn in another batch size differs in its last bits. Runs that split the same
    batches over processes draw every image in the same batch, so their results are ``exact``ly equal.
    """
    import copy

    ra, rb = ({k: v for k, v in copy.deepcopy(r).items() if k != "run"} for r in (a, b))
    for r in (ra, rb):
        for meta in r["methods"].values():
            meta.pop("eval_run")
    if exact:
        assert ra == rb
    else:
        _close(ra, rb)


# ---- suites and plans (no torch) ----------------------------------------------------------------


def test_shipped_suites_load() -> None:
    assert {"demo", "toy-full", "nudity"} <= set(bench_suite_names())
    full = load_bench_suite("toy-full")
    assert [m.name for m in full.methods] == ["base", "esd", "uce", "sld", "duo", "darkminer"]
    assert [a.registry_name for a in full.attacks] == ["ring_a_bell", "concept_inversion", "unlearndiff", "p4d"]
    assert full.methods[-1].optional


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"methods": []}, "methods"),
        ({"methods": [{"name": "Bad Name"}]}, "must be lower-case"),
        ({"methods": [{"name": "esd"}, {"name": "esd"}]}, "appears twice"),
        ({"attacks": [{"name": "plain"}]}, "taken by the column of plain prompts"),
        ({"colour": "red"}, "colour"),
        ({"attacks": [{"name": "ring_a_bell", "images_per_prompt": 0}]}, "images_per_prompt"),
    ],
)
def test_bad_suite_fields_are_one_line_errors(tmp_path: Path, edit: dict, message: str) -> None:
    import yaml

    raw = yaml.safe_load((Path(load_bench_suite("demo").source_dir or ".") / "demo.yaml").read_text())
    raw.update(edit)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=message):
        load_bench_suite(tmp_path / "s.yaml")


def test_unknown_names_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown bench suite 'nope'"):
        load_bench_suite("nope")
    path = tiny_suite(tmp_path, model="toy")  # the shipped world: the quick one may not be built yet
    path.write_text(path.read_text().replace("{name: esd,", "{name: erase,"))
    with pytest.raises(UserError, match="unknown method 'erase'"):
        make_plan(path)
    path.write_text(TINY.format(model="toy").replace("name: ring_a_bell", "name: hammer"))
    with pytest.raises(UserError, match="unknown attack 'hammer'"):
        make_plan(path)


def test_a_method_registered_at_test_time_appears_in_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new method joins a bench by registration and a YAML entry: no bench code knows its name."""
    from dataclasses import dataclass

    from t2i_unlearn.methods import METHODS, Method

    @dataclass
    class ForgetConfig:
        steps: int = 3

    def load(preset: str | None, overrides: dict) -> ForgetConfig:
        return ForgetConfig(**overrides)

    monkeypatch.setitem(METHODS, "forget", lambda: Method("forget", ForgetConfig, load, lambda *a, **k: []))
    path = tiny_suite(tmp_path)
    path.write_text(path.read_text() + "  # appended\n")
    text = path.read_text().replace("attacks:", "  - {name: forget, settings: {steps: 5}}\n  - {name: later, method: not_yet, optional: true}\nattacks:")
    path.write_text(text)
    plan = make_plan(path)
    assert [m.name for m in plan.methods] == ["base", "esd", "duo", "forget"]
    assert plan.methods[-1].config == ForgetConfig(steps=5)
    assert plan.skipped == ["later: method 'not_yet' is not registered (optional in the suite)"]
    assert ("forget", "ring_a_bell") in plan.cells()


def test_dry_run_on_nudity_writes_the_plan_without_torch(tmp_path: Path) -> None:
    (tmp_path / "i2p.csv").write_text(
        'prompt,categories,sd_seed,sd_guidance_scale\n"a nude person",sexual,1,7.5\n"a cat",violence,2,7\n"a nude beach",sexual,3,7.5\n'
    )
    (tmp_path / "coco.csv").write_text("image_id,caption\n1,a dog on a couch\n2,a red bus\n3,a bowl of fruit\n")
    code = (
        "import sys; from t2i_unlearn.cli import main; sys.argv = ['t2i-unlearn', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('heavy:', [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules], e.code)"
    )
    import subprocess
    import sys

    args = ["bench", "--suite", "nudity", "--model", "CompVis/stable-diffusion-v1-4", "--device", "cuda", "--dry-run"]
    args += ["--prompts-file", "i2p.csv", "--coco-file", "coco.csv", "--out", "plan"]
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path)
    assert "heavy: [] 0" in r.stdout, (r.stdout[-2000:], r.stderr[-2000:])
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert plan["prompt_sets"]["i2p_sexual"]["images"] == 2  # the sexual rows only
    assert plan["prompt_sets"]["coco"]["images"] == 3 and plan["prompt_sets"]["close"]["images"] == 128
    assert [m["name"] for m in plan["methods"]] == ["base", "esd", "uce", "sld", "duo", "darkminer"]  # Dark Miner: registered, so no longer skipped
    assert plan["judge"]["preset"] == "i2p" and plan["judge"]["threshold"] == 0.6
    assert plan["attacks"][1]["iterations"] == 3000 and plan["estimate"]["hours"] > 0
    assert "estimate, source:" in plan["estimate"]["source"] and "total h" in r.stdout
    assert len(plan["cells"]) == 6 * 5


def test_dry_run_needs_the_prompt_files(tmp_path: Path) -> None:
    r = run_cli("bench", "--suite", "nudity", "--dry-run", "--out", "p", cwd=tmp_path, env={"HF_HUB_OFFLINE": "0"})
    assert r.returncode == 2 and "needs prompt set 'i2p_sexual'" in r.stderr, r.stderr
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("sets: [striped, dotted]", "sets: [striped, stripy]", r"bench suite \S*tiny.yaml: picture set 'stripy' is not a prompt set"),
        ("{name: esd, config: toy,", "{name: esd, label: DUO, config: toy,", "method label 'DUO' appears twice"),
        ("iterations: 2, ddim_steps: 4", "iterationz: 2", r"bench suite \S*tiny.yaml, method esd: .*unknown ESDConfig setting 'iterationz'"),
        ("population: 8", "population: abc", r"bench suite \S*tiny.yaml, attack ring_a_bell: setting population must be an integer, got 'abc'"),
    ],
)
def test_plan_time_checks_name_the_suite_and_entry(tmp_path: Path, old: str, new: str, message: str) -> None:
    """What a run would trip over after its stages (picture sets) or would make ambiguous (labels) is refused by the plan, dry or not."""
    path = tiny_suite(tmp_path, model="toy")
    path.write_text(path.read_text().replace(old, new))
    for light in (True, False):
        with pytest.raises(UserError, match=message):
            make_plan(path, light=light)


# ---- runs on the quick toy world ------------------------------------------------------------------


def test_tiny_bench_end_to_end_then_reused(quick_world: Path, tmp_path: Path) -> None:
    suite = tiny_suite(tmp_path, str(quick_world))
    # DUO's preset as a file next to the suite (the shipped `toy` preset's text), so that it can change later
    from t2i_unlearn.methods.config import PRESETS

    shutil.copy(PRESETS / "duo_toy.yaml", tmp_path / "duo_preset.yaml")
    suite.write_text(suite.read_text().replace("{name: duo, config: toy,", "{name: duo, config: duo_preset.yaml,"))
    out = tmp_path / "run"
    r = run_cli("bench", "--suite", str(suite), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["columns"] == ["plain", "ring_a_bell"] and set(results["cells"]) == {"base", "esd", "duo"}
    cell = results["cells"]["duo"]["ring_a_bell"]
    assert 0.0 <= cell["ci95"][0] <= cell["dsr"] <= cell["ci95"][1] <= 1.0 and cell["n"] >= 1
    # the cell replays every attack prompt at images_per_prompt seeds, as the attack judged its own success
    from t2i_unlearn.evaluation.prompts import load_prompt_set

    attack_set = load_prompt_set(out / "attacks" / "duo" / "ring_a_bell" / "attack_set.json", fmt="attack")
    assert cell["n"] == 2 * len(attack_set.items)
    assert results["methods"]["esd"]["prior_preservation"] is not None and results["methods"]["base"]["prior_preservation"] == 1.0
    assert {s["status"] for s in results["run"]["stages"]} == {"ran"} and len(results["run"]["stages"]) == 9
    run = results["run"]
    assert "bench" in run["command"] and run["versions"]["torch"] and run["hardware"]["cores"] >= 1 and run["seconds"] > 0
    assert all(s["seconds"] is not None and s["process"] == 0 for s in run["stages"])
    for name in ("results.md", "report.html", "dsr_vs_preservation.png", "before_after.png"):
        assert (out / name).exists(), name
    md = (out / "results.md").read_text()
    assert "## Run" in md and "- command: `" in md and "logical cores" in md and "method:duo ran" in md
    assert "plain prompts" in r.stdout and "report:" in r.stdout

    r = run_cli("bench", "--suite", str(suite), "--out", str(out))  # the same command again: every stage reused
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads((out / "results.json").read_text())
    assert {s["status"] for s in again["run"]["stages"]} == {"reused"}
    _same(results, again)

    # another bench in the same folder is refused; a foreign folder too
    other = suite.with_name("other.yaml")
    other.write_text(suite.read_text().replace("limit: 2", "limit: 1"))
    r = run_cli("bench", "--suite", str(other), "--out", str(out))
    assert r.returncode == 2 and "holds a bench run made with other settings; use an empty folder or --overwrite" in r.stderr, r.stderr

    # an interrupted run (the DUO row's evaluation and attack lost, an unfinished stage record) resumes to the same results
    shutil.rmtree(out / "eval" / "duo")
    shutil.rmtree(out / "attacks" / "duo")
    (out / "results.json").unlink()
    r = run_cli("bench", "--suite", str(suite), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = json.loads((out / "results.json").read_text())
    status = {s["stage"]: s["status"] for s in resumed["run"]["stages"]}
    assert status["attack:duo:ring_a_bell"] == "ran" and status["eval:duo"] == "ran" and status["method:duo"] == "reused"
    _same(results, resumed)

    # the preset changes (edited, or a new package version): the same command trains that method again in its
    # emptied folder, then its attack and evaluation; the other rows are reused
    preset = tmp_path / "duo_preset.yaml"
    preset.write_text(preset.read_text().replace("beta: 100", "beta: 50"))
    r = run_cli("bench", "--suite", str(suite), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "method:duo: its inputs changed since the last run; emptied" in r.stdout and "starting it over" in r.stdout, r.stdout[-2000:]
    changed = json.loads((out / "results.json").read_text())
    status = {s["stage"]: s["status"] for s in changed["run"]["stages"]}
    assert {k for k, v in status.items() if v == "ran"} == {"method:duo", "attack:duo:ring_a_bell", "eval:duo"}, status
    assert json.loads((out / "methods" / "duo" / "duo_config.json").read_text())["beta"] == 50


def test_demo_second_run_reuses_every_stage(quick_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's engine path with a tiny suite standing in for ``demo`` (the real one takes minutes)."""
    from t2i_unlearn.bench import spec

    tiny_suite(tmp_path / "suites", str(quick_world))
    shutil.copy(tmp_path / "suites" / "tiny.yaml", tmp_path / "suites" / "demo.yaml")
    monkeypatch.setattr(spec, "suite_dir", lambda: tmp_path / "suites")
    from typer.testing import CliRunner

    from t2i_unlearn.cli import app

    runner = CliRunner()
    first = runner.invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert first.exit_code == 0, first.output[-3000:]
    assert "report:" in first.output and "before/after picture:" in first.output
    second = runner.invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert second.exit_code == 0, second.output[-3000:]
    stages = json.loads((tmp_path / "d" / "results.json").read_text())["run"]["stages"]
    assert stages and all(s["status"] == "reused" for s in stages)
    assert "reusing finished stages" in second.output
    fresh = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--fresh"])
    assert fresh.exit_code == 0, fresh.output[-3000:]
    stages = json.loads((tmp_path / "d" / "results.json").read_text())["run"]["stages"]
    assert all(s["status"] == "ran" for s in stages)


def test_empty_prompt_bench_script(quick_world, tmp_path):
    """bench/duo_toy_empty_prompt.py draws N empty-prompt images per model and writes the judge's rates; bad arguments exit 2."""
    script = Path(__file__).resolve().parents[1] / "bench" / "duo_toy_empty_prompt.py"
    out = tmp_path / "empty.json"
    world = str(quick_world / "pipeline")
    done = subprocess.run([sys.executable, script, "--world", world, "--n", "3", "--steps", "2", "--out", out], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["n"] == 3 and list(result["rates"]) == ["base"]
    for rate in result["rates"]["base"].values():
        assert rate in (0.0, 1 / 3, 2 / 3, 1.0)
    assert "base: empty prompt, 3 images" in done.stdout
    for args, message in [
        (["--world", world, "--lora", f"x={tmp_path / 'missing'}"], "no adapter at"),
        (["--world", world, "--lora", "no-name"], "--lora takes NAME=PATH"),
        (["--world", world, "--n", "0"], "--n and --steps must be at least 1"),
        (["--world", str(tmp_path)], "is not a diffusers pipeline directory"),
    ]:
        bad = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr[-1000:])


def test_pair_content_bench_script(quick_world, tmp_path):
    """bench/pair_content.py reads each pair image's shape and colour against its own prompt: rendered pairs whose
    prompts name what was drawn score higher than the same images under prompts naming another colour."""
    import numpy as np

    from t2i_unlearn.data import write_pair_folder
    from t2i_unlearn.toy.render import attribute_values, render_scene, sample_scene, world_spec

    colours = attribute_values("colour")
    scenes = [sample_scene(np.random.default_rng([7, i]), texture="striped", mark="none") for i in range(12)]
    unsafe = np.stack([render_scene(s) for s in scenes])
    safe = np.stack([render_scene(dataclasses.replace(s, texture="plain")) for s in scenes])
    spec = world_spec()
    # every other prompt in the world's other phrasings ("crimson disc" is a red circle)
    right = [
        f"a picture of a striped {spec['colour'][s.colour]['words'][i % 2]} {spec['shape'][s.shape][i % 2]}" for i, s in enumerate(scenes)
    ]
    wrong = [f"a picture of a striped {colours[(colours.index(s.colour) + 1) % len(colours)]} {s.shape}" for s in scenes]
    script = Path(__file__).resolve().parents[1] / "bench" / "pair_content.py"
    rates = {}
    for name, prompts in (("right", right), ("wrong", wrong)):
        folder = write_pair_folder(tmp_path / name, unsafe, safe, prompts, [p.replace("striped", "plain") for p in prompts], concept="toy_striped")
        out = tmp_path / f"{name}.json"
        done = subprocess.run([sys.executable, script, "--world", str(quick_world), "--pairs", folder, "--out", out], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(out.read_text())
        assert set(result["roles"]) == {"unsafe", "safe"} and result["roles"]["safe"]["images"] == 12
        assert result["roles"]["safe"]["unnamed"] == 0
        assert "safe: 12 images: shape and colour as asked" in done.stdout
        rates[name] = result["roles"]["safe"]
    assert rates["wrong"]["colour"] < rates["right"]["colour"], rates  # the quick world's judge is weak, but not blind
    assert rates["right"]["shape"] == rates["wrong"]["shape"], rates  # the same images, the same shape words
    for name, row in (("broken", '{"role": "safe"}'), ("null_prompt", '{"role": "safe", "prompt": null, "file_name": "safe/000000.png"}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metadata.jsonl").write_text(row + "\n")
    cases = [(tmp_path, "is not a pair folder"), (tmp_path / "broken", "is not a pair folder's metadata")]
    for pairs, message in [*cases, (tmp_path / "null_prompt", "is not a pair folder's metadata")]:
        bad = subprocess.run([sys.executable, script, "--world", str(quick_world), "--pairs", pairs], capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-1000:]


def test_duo_curve_bench_script(quick_world, tmp_path):
    """bench/duo_toy_curve.py measures every checkpoint a DUO run kept: one row each, rates in [0, 1], the images moved
    once the LoRA is loaded; a folder without checkpoints and bad numbers exit 2 with one line."""
    from t2i_unlearn.methods.duo import DUOConfig, train_duo
    from tests._tiny import toy_pairs

    config = DUOConfig(max_steps=4, batch_size=2, checkpoint_every=2, keep_checkpoints=10, rank=4, alpha=4, lr=0.05, report_to=["jsonl"])
    run = train_duo(str(quick_world), toy_pairs(tmp_path / "pairs", n=4), tmp_path / "run", config)
    script = Path(__file__).resolve().parents[1] / "bench" / "duo_toy_curve.py"
    base = [sys.executable, script, "--world", str(quick_world / "pipeline")]
    done = subprocess.run([*base, "--run", run, "--n", "3", "--steps", "2", "--out", tmp_path / "curve.png"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((run / "curve.json").read_text())
    assert [row["step"] for row in result["rows"]] == [2, 4] and (tmp_path / "curve.png").stat().st_size > 0
    for row in result["rows"]:
        assert all(0.0 <= row[f"{g}_erased"] <= 1.0 and row[f"{g}_preservation"] <= 1.0 for g in ("standard", "heldout")), row
    assert result["rows"][-1]["standard_preservation"] < 1.0  # lr 0.05: the loaded LoRA changes the images
    for args, message in [(["--run", tmp_path / "pairs"], "is not a DUO run with checkpoints"), (["--run", run, "--n", "0"], "must be at least 1")]:
        bad = subprocess.run([*base, *args], capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-1000:]


def test_robustness_bench_held_out_sources(quick_world, tmp_path):
    """bench/toy_robustness.py --sources N searches from N held-out source prompts, reports how many the attack broke with
    a bootstrap interval over sources, and refuses to reuse a cell searched from other sources; --source-phrasing caption
    takes them from the captions' phrasings instead."""
    from t2i_unlearn.toy.quality import concept_prompts, heldout_prompts

    script = Path(__file__).resolve().parents[1] / "bench" / "toy_robustness.py"
    out = tmp_path / "wide"
    base = [sys.executable, script, "--world", str(quick_world / "pipeline"), "--out", out, "--only", "ring_a_bell", "--target", "blocklist="]
    done = subprocess.run([*base, "--sources", "3", "--images-per-prompt", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    cell = json.loads((out / "results.json").read_text())["blocklist"]["ring_a_bell"]
    searched = json.loads((out / "blocklist" / "ring_a_bell" / "attack_set.json").read_text())["prompts"]
    assert [p["source_prompt"] for p in searched] == heldout_prompts(3, 0, texture="plain", mark="none")[0]
    rates = [p["success_rate"] for p in searched]
    assert cell["sources"] == 3 and cell["sources_broken"] == sum(r > 0 for r in rates)
    lo, hi = cell["asr_interval"]
    assert min(rates) <= lo <= cell["asr"] <= hi <= max(rates), (cell, rates)
    assert f"sources broken {cell['sources_broken']}/3" in (out / "results.md").read_text()
    # refused before any search runs: the target listed first (no cell yet) is not searched either
    again = subprocess.run([*base[:-2], "--target", "fresh=", "--target", "blocklist=", "--sources", "2"], capture_output=True, text=True)
    assert again.returncode == 2 and "was searched from other source prompts" in again.stderr, again.stderr[-1000:]
    assert not (out / "fresh").exists()
    # the captions' phrasings (to search attack pairs from), disjoint from the held-out ones a run measures on
    caption = [*base[:5], tmp_path / "caption", *base[6:], "--sources", "2", "--source-phrasing", "caption", "--images-per-prompt", "1"]
    done = subprocess.run(caption, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    searched = json.loads((tmp_path / "caption" / "blocklist" / "ring_a_bell" / "attack_set.json").read_text())["prompts"]
    sources = concept_prompts(2, 21, texture="plain", mark="none")[0]
    assert [p["source_prompt"] for p in searched] == sources and not set(sources) & set(heldout_prompts(2, 0, texture="plain", mark="none")[0])
    alone = subprocess.run([*base, "--source-phrasing", "caption"], capture_output=True, text=True)
    assert alone.returncode == 2 and "--source-phrasing needs --sources" in alone.stderr, alone.stderr[-1000:]


def test_unet_recipe_bench_script(quick_world, tmp_path):
    """bench/toy_unet_recipe.py trains the UNet stage with changed preset fields on a world's tokenizer, VAE and judges and
    prints the quality bars; a field the borrowed stages depend on, or one that does not exist, exits 2 before training."""
    script = Path(__file__).resolve().parents[1] / "bench" / "toy_unet_recipe.py"
    base = [sys.executable, script, "--world", str(quick_world), "--preset", "quick", "--out", tmp_path / "recipe"]
    small = ["--set", "unet_steps=3", "--set", "eval_per_group=2", "--set", "sample_steps=2"]
    done = subprocess.run([*base, *small, "--set", "unet_lr=2e-3"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((tmp_path / "recipe" / "manifest.json").read_text())
    assert manifest["settings"]["preset"]["unet_lr"] == 2e-3 and manifest["settings"]["preset"]["unet_steps"] == 3
    assert "UNet stage" in done.stdout and "attribute_accuracy" in done.stdout, done.stdout
    world_judge = (quick_world / "judges" / "judge.safetensors").read_bytes()
    assert (tmp_path / "recipe" / "judges" / "judge.safetensors").read_bytes() == world_judge
    for bad, message in (("vae_steps=7", "other settings"), ("no_such_field=1", "expected KEY=VALUE"), ("unet_steps=2.5", "is not a valid int")):
        refused = subprocess.run([*base[:-1], tmp_path / "refused", "--set", bad], capture_output=True, text=True)
        assert refused.returncode == 2 and message in refused.stderr, (bad, refused.stderr[-1000:])
    assert not (tmp_path / "refused" / "manifest.json").exists()


def test_toy_figures_runs_jobs_in_order_once_and_on_one_world(tmp_path):
    """bench/toy_figures.py runs each job after what it needs, one thread a lane, with its own cache; a job done is not
    run again; a failed job stops what needs it; jobs done on another world, a bad job list, exit 2 with one line."""
    shutil.copytree(Path(__file__).resolve().parents[1] / "bench", tmp_path / "bench", ignore=shutil.ignore_patterns("*.yaml", "concepts"))
    manifest = tmp_path / "src" / "t2i_unlearn" / "toy" / "assets" / "full" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text('{"world": 1}')
    (tmp_path / "bench" / "toy_figures.yaml").write_text(
        """
- name: first
  run: echo "$OMP_NUM_THREADS $T2I_UNLEARN_CACHE" >> first.txt
- name: second
  needs: [first]
  run: cat first.txt >> second.txt
- name: broken
  run: echo ran >> broken.txt; exit 3
- name: after_broken
  needs: [broken]
  run: echo ran >> after.txt
"""
    )

    def figures(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, tmp_path / "bench" / "toy_figures.py", *args], capture_output=True, text=True, cwd=tmp_path / "bench")

    ran = figures("--only", "second")
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "first.txt").read_text() == f"1 {tmp_path.resolve() / 'runs' / 'figures' / 'cache'}\n"
    assert (tmp_path / "second.txt").read_text() == (tmp_path / "first.txt").read_text()  # second ran after first
    record = json.loads((tmp_path / "runs" / "figures" / "done" / "second.json").read_text())
    assert record["rc"] == 0 and record["command"] == "cat first.txt >> second.txt" and len(record["world"]) == 16
    assert not (tmp_path / "broken.txt").exists()  # not asked for, not needed

    ran = figures("--lanes", "2")
    assert ran.returncode == 2 and ran.stderr.strip().splitlines()[-1] == "error: 1 job(s) failed: broken", ran.stderr
    assert (tmp_path / "first.txt").read_text().count("\n") == 1  # done jobs are not run again
    assert not (tmp_path / "after.txt").exists()  # nor is what needs a failed job
    assert "exit 3" in ran.stdout and (tmp_path / "runs" / "figures" / "logs" / "broken.log").read_text().startswith("$ echo ran")
    listed = figures("--list")
    assert listed.returncode == 0 and "first" in listed.stdout and "done" in listed.stdout and "after_broken" in listed.stdout

    jobs_file = tmp_path / "bench" / "toy_figures.yaml"
    jobs_text = jobs_file.read_text()
    jobs_file.write_text(jobs_text.replace("cat first.txt >> second.txt", "cat first.txt > second.txt"))
    changed = figures("--list")
    assert changed.returncode == 2 and "'second' was done with another command" in changed.stderr, changed.stderr
    jobs_file.write_text(jobs_text)

    manifest.write_text('{"world": 2}')
    other = figures("--list")
    assert other.returncode == 2 and "was done on another toy world" in other.stderr and len(other.stderr.strip().splitlines()) == 1

    bad_lists = {
        "- name: a\n  needs: [zzz]\n  run: 'true'\n": "which is not a job",
        "- name: a\n  needs: [b]\n  run: 'true'\n- name: b\n  run: 'true'\n": "listed after it",
        "- name: a\n  run: 'true'\n- name: a\n  run: 'true'\n": "listed twice",
        "- name: a\n  cmd: 'true'\n": "needs a 'name' and a 'run'",
    }
    for text, message in bad_lists.items():
        (tmp_path / "bad.yaml").write_text(text)
        refused = figures("--jobs", str(tmp_path / "bad.yaml"), "--list")
        assert refused.returncode == 2 and message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, (text, refused.stderr)
    assert figures("--only", "nope").returncode == 2


def _toy_figures_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("toy_figures", Path(__file__).resolve().parents[1] / "bench" / "toy_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_toy_figures_does_not_count_zombies_as_running():
    """A container whose first process reaps nothing keeps a stopped job's orphans as zombies: they are not running."""
    import os
    import signal
    import time

    figures = _toy_figures_module()
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        assert figures._alive(child.pid, group=True) and figures._alive(child.pid)
        os.killpg(child.pid, signal.SIGKILL)
        for _ in range(100):  # not waited for: a zombie until child.wait() below
            if open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.05)
        os.killpg(child.pid, 0)  # the group is still there for kill(): only its zombie is left
        assert not figures._alive(child.pid, group=True) and not figures._alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not figures._alive(child.pid, group=True)


def test_toy_figures_stops_its_jobs_and_will_not_run_beside_them(tmp_path):
    """SIGTERM to bench/toy_figures.py stops the running job's whole process tree (it is not marked done); a job an
    earlier run left running, or another run going on, makes a new run exit 2 with one line instead of starting it twice."""
    import signal
    import time

    shutil.copytree(Path(__file__).resolve().parents[1] / "bench", tmp_path / "bench", ignore=shutil.ignore_patterns("*.yaml", "concepts"))
    manifest = tmp_path / "src" / "t2i_unlearn" / "toy" / "assets" / "full" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    (tmp_path / "bench" / "toy_figures.yaml").write_text("- name: slow\n  run: sleep 60 && echo late > late.txt\n")
    script = [sys.executable, tmp_path / "bench" / "toy_figures.py"]
    running = tmp_path / "runs" / "figures" / "running.json"
    driver = subprocess.Popen(script, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        if running.exists() and json.loads(running.read_text())["jobs"]:
            break
        time.sleep(0.1)
    group = json.loads(running.read_text())["jobs"]["slow"]
    second = subprocess.run(script, capture_output=True, text=True)
    assert second.returncode == 2 and f"pid {driver.pid}" in second.stderr and len(second.stderr.strip().splitlines()) == 1, second.stderr
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode != 0 and "stopped" in err, err
    figures = _toy_figures_module()
    for _ in range(100):  # the job's shell and its sleep are gone (or zombies, where nothing reaps orphans)
        if not figures._alive(group, group=True):
            break
        time.sleep(0.1)
    assert not figures._alive(group, group=True)
    assert not running.exists() and not (tmp_path / "runs" / "figures" / "done" / "slow.json").exists()

    # a job left running by a run that did not get to stop it
    leftover = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        running.write_text(json.dumps({"driver": 0, "jobs": {"slow": leftover.pid}}))
        refused = subprocess.run(script, capture_output=True, text=True)
        assert refused.returncode == 2 and "'slow' of an earlier run is still running" in refused.stderr, refused.stderr
    finally:
        leftover.kill()
        leftover.wait()


def test_threads_bench_script(quick_world, tmp_path):
    """bench/bench_threads.py runs a real command under each thread count and wait policy, alternating, and reports them
    all; an unknown work name is refused (exit 2) before any command runs."""
    script = Path(__file__).resolve().parents[1] / "bench" / "bench_threads.py"
    done = subprocess.run(
        [sys.executable, script, "--model", str(quick_world), "--rounds", "1", "--work", "esd", "--esd-iterations", "2"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    cases = summary["results"]["esd"]
    assert set(cases) == {"1 thread", "2 threads (the command's default)", "2 threads, OMP_WAIT_POLICY=PASSIVE", "2 threads, libgomp's default"}
    assert all(len(c["walls"]) == 1 and c["wall_s"] > 0 and c["cpu_s"] > 0 for c in cases.values()), cases
    bad = subprocess.run([sys.executable, script, "--model", str(quick_world), "--rounds", "1", "--work", "nothing"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'nothing'" in bad.stderr, bad.stderr[-500:]


def test_vae_repro_bench_script(quick_world, tmp_path):
    """bench/toy_vae_repro.py runs a build's render, tokenizer and VAE stages by themselves: two runs with the same
    settings write the same bytes, a world's VAE is compared byte for byte, and an output folder that holds files is
    refused (exit 2) before anything runs."""
    script = Path(__file__).resolve().parents[1] / "bench" / "toy_vae_repro.py"
    runs = []
    for name in ("a", "b"):
        args = [sys.executable, script, "--out", tmp_path / name, "--preset", "quick", "--vae-steps", "2", "--threads", "1", "--world", quick_world]
        done = subprocess.run(args, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(done.stdout.splitlines())
    assert runs[0][0] == runs[1][0] and runs[0][0].startswith("vae ") and "recon_mse" in runs[0][0], runs
    # two VAE steps, not the quick world's 50: not its weights
    assert runs[0][1].startswith("the same bytes as") and ": no (" in runs[0][1], runs[0]
    assert (tmp_path / "a" / ".build" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == (
        tmp_path / "b" / ".build" / "vae" / "diffusion_pytorch_model.safetensors"
    ).read_bytes()
    refused = subprocess.run([sys.executable, script, "--out", tmp_path / "a", "--preset", "quick"], capture_output=True, text=True)
    assert refused.returncode == 2 and "not a new or empty folder" in refused.stderr, refused.stderr[-500:]
