"""Pair data: the image-folder format, its loader's errors, and generation with judges on the toy world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from t2i_unlearn.concepts import parse_concept
from t2i_unlearn.data import load_pairs
from t2i_unlearn.errors import UserError
from tests._tiny import toy_pairs
from tests.conftest import run_cli


def test_roundtrip_and_imagefolder(tmp_path: Path) -> None:
    root = toy_pairs(tmp_path / "pairs", n=3)
    pairs = load_pairs(root)
    assert len(pairs) == 3 and pairs.unsafe.shape == (3, 32, 32, 3) and pairs.safe.shape == (3, 32, 32, 3)
    assert not np.array_equal(pairs.unsafe, pairs.safe)
    assert pairs.unsafe_prompts == ["a striped shape"] * 3 and len(pairs.data_hash) == 64
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("imagefolder", data_dir=str(root), split="train")
    assert len(ds) == 6
    assert {"image", "pair_id", "role", "unsafe_prompt", "safe_prompt"} <= set(ds.column_names)
    by_pair: dict[int, dict[str, np.ndarray]] = {}
    for row in ds:
        by_pair.setdefault(row["pair_id"], {})[row["role"]] = np.asarray(row["image"])
    assert sorted(by_pair) == [0, 1, 2]
    for i, pid in enumerate(pairs.pair_ids):
        assert np.array_equal(by_pair[pid]["unsafe"], pairs.unsafe[i]) and np.array_equal(by_pair[pid]["safe"], pairs.safe[i])


def test_rows_carry_only_the_settings_used_for_their_image(tmp_path: Path) -> None:
    """SDEdit settings (strength, negative prompt) sit on safe rows only, also for records written before
    they were named ``safe_*``; the loader and the image-folder reader still read such folders."""
    from t2i_unlearn.data import image_rows, write_metadata

    root = toy_pairs(tmp_path / "pairs", n=2)
    new = {"sampler": "DDIMScheduler", "unsafe_seed": 1, "safe_seed": 2, "safe_strength": 0.6, "safe_negative_prompt": "a striped shape"}
    legacy = {"sampler": "DDIMScheduler", "unsafe_seed": 1, "safe_seed": 2, "strength": 0.6, "negative_prompt": "a striped shape"}
    for i, extra in enumerate((new, legacy)):
        path = root / ".pairs" / f"{i:06d}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **extra}))
        unsafe, safe = image_rows(json.loads(path.read_text()))
        assert "strength" not in unsafe and "negative_prompt" not in unsafe and (unsafe["seed"], safe["seed"]) == (1, 2)
        assert safe["strength"] == 0.6 and safe["negative_prompt"] == "a striped shape" and unsafe["sampler"] == safe["sampler"]
        assert unsafe["prompt"] == unsafe["unsafe_prompt"] == safe["unsafe_prompt"] == "a striped shape" and safe["prompt"] == "a plain shape"
    write_metadata(root)
    rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    assert len({tuple(sorted(r)) for r in rows}) == 1  # one schema for every row
    for r in rows:
        used = r["role"] == "safe"
        assert (r["strength"], r["negative_prompt"]) == ((0.6, "a striped shape") if used else (None, None))
        assert "safe_strength" not in r and "safe_negative_prompt" not in r
    pairs = load_pairs(root)
    assert pairs.unsafe_prompts == ["a striped shape"] * 2 and pairs.safe_prompts == ["a plain shape"] * 2
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("imagefolder", data_dir=str(root), split="train")
    assert sorted((r["role"], r["strength"]) for r in ds) == [("safe", 0.6), ("safe", 0.6), ("unsafe", None), ("unsafe", None)]


def test_bad_folders(tmp_path: Path) -> None:
    from PIL import Image

    with pytest.raises(UserError, match=r"has no metadata\.jsonl"):
        load_pairs(tmp_path)
    root = toy_pairs(tmp_path / "a", n=2)
    Image.new("RGB", (16, 16)).save(root / "safe" / "000001.png")
    with pytest.raises(UserError, match=r"pair 1: unsafe and safe images differ in size"):
        load_pairs(root)
    root = toy_pairs(tmp_path / "b", n=2)
    for role in ("unsafe", "safe"):
        Image.new("RGB", (16, 16)).save(root / role / "000001.png")
    with pytest.raises(UserError, match="all pairs must share one size"):
        load_pairs(root)
    root = toy_pairs(tmp_path / "c", n=2)
    (root / "unsafe" / "000000.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="unreadable"):
        load_pairs(root)
    root = toy_pairs(tmp_path / "d", n=2)
    lines = (root / "metadata.jsonl").read_text().splitlines()
    (root / "metadata.jsonl").write_text("\n".join(line for line in lines if '"role": "safe"' not in line or '"pair_id": 1' not in line) + "\n")
    with pytest.raises(UserError, match=r"pair 1 .* has no safe image"):
        load_pairs(root)


def _spec(judge: dict, count: int = 3, max_attempts: int = 3):
    return parse_concept(
        {
            "name": "toy_test",
            "prompts": [
                {"unsafe": "a picture of a red circle on a white background", "safe": "a picture of a red circle on a grey background", "count": count}
            ],
            "judge": judge,
            "generation": {"steps": 3, "guidance": 4.0},
            "sdedit": {"strength": 0.75, "steps": 4, "guidance": 4.0},
            "max_attempts": max_attempts,
        },
        "test",
    )


def test_toy_judge_flags_renders(quick_world: Path) -> None:
    from t2i_unlearn.judges import build_judge
    from t2i_unlearn.toy.render import render_scene, sample_scene

    judge = build_judge(_spec({"name": "toy", "attribute": "background", "classes": ["white"]}).judge, str(quick_world))
    white = np.stack([render_scene(sample_scene(np.random.default_rng([5, i]), background="white")) for i in range(20)])
    grey = np.stack([render_scene(sample_scene(np.random.default_rng([6, i]), background="grey")) for i in range(20)])
    fw, sw = judge.flags(white)
    fg, _ = judge.flags(grey)
    assert fw.mean() >= 0.9 and fg.mean() <= 0.1
    assert np.all((sw >= 0.5) == fw) and sw.dtype == np.float32
    info = judge.info()
    assert info["attribute"] == "background" and info["classes"] == ["white"] and len(info["weights_sha256"]) == 64
    with pytest.raises(UserError, match="must be among"):
        build_judge(_spec({"name": "toy", "attribute": "background", "classes": ["pink"]}).judge, str(quick_world))


class _ScriptedJudge:
    """Flags by a fixed script, one list per call: lets the test know which draws pass."""

    name = "scripted"

    def __init__(self, script: list[list[bool]]):
        self.script = list(script)

    def flags(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.array(self.script.pop(0), dtype=bool)
        assert len(out) == len(images)
        return out, out.astype(np.float32) * 0.9

    def info(self) -> dict:
        return {"name": self.name}


def test_generate_filters_with_caps(quick_world: Path, tmp_path: Path, monkeypatch) -> None:
    from t2i_unlearn import judges
    from t2i_unlearn.data.pairs import generate_pairs

    # unsafe: 3 pending -> pair 1 flagged; 2 pending -> pair 0 flagged; 1 pending -> pair 2 never (cap 3)
    # safe edits of pairs 0 and 1: pair 0 still flagged, pair 1 cleared; then pair 0 cleared
    script = [[False, True, False], [True, False], [False], [True, False], [False]]
    monkeypatch.setitem(judges.JUDGES, "scripted", lambda spec, model: _ScriptedJudge(script))
    out = tmp_path / "pairs"
    stats = generate_pairs(str(quick_world), _spec({"name": "scripted"}), out, seed=1)
    assert (stats["unsafe_draws"], stats["unsafe_kept"], stats["safe_draws"], stats["safe_kept"]) == (6, 2, 3, 2)
    assert stats["pairs"] == 2 and stats["pairs_failed"] == 1 and stats["unsafe_acceptance"] == pytest.approx(2 / 6)
    rows = {(r["pair_id"], r["role"]): r for r in map(json.loads, (out / "metadata.jsonl").read_text().splitlines())}
    assert set(rows) == {(0, "unsafe"), (0, "safe"), (1, "unsafe"), (1, "safe")}
    assert rows[(0, "unsafe")]["attempts"] == 2 and rows[(1, "unsafe")]["attempts"] == 1
    assert rows[(0, "safe")]["attempts"] == 2 and rows[(1, "safe")]["attempts"] == 1
    assert rows[(0, "unsafe")]["judge_score"] == pytest.approx(0.9) and rows[(0, "safe")]["judge_score"] == 0.0
    safe = rows[(0, "safe")]
    assert safe["prompt"] == "a picture of a red circle on a grey background" and safe["negative_prompt"] == "a picture of a red circle on a white background"
    assert safe["strength"] == 0.75 and safe["sampler"] and isinstance(safe["seed"], int) and safe["seed"] != rows[(0, "unsafe")]["seed"]
    # the unsafe image was drawn by txt2img: its row carries no SDEdit setting
    unsafe = rows[(0, "unsafe")]
    assert unsafe["strength"] is None and unsafe["negative_prompt"] is None and unsafe["prompt"] == "a picture of a red circle on a white background"
    assert unsafe["sampler"] == safe["sampler"] and unsafe["steps"] == 3
    assert load_pairs(out).pair_ids == [0, 1]
    # the failed pair is recorded: its seeds are fixed, so a rerun skips it instead of drawing (and failing) again
    assert json.loads((out / ".pairs" / "failed-000002.json").read_text())["missing"] == "unsafe"
    script.clear()  # a rerun that called the judge would fail here
    again = generate_pairs(str(quick_world), _spec({"name": "scripted"}), out, seed=1)
    assert again["pairs"] == 2 and again["already_done"] == 2 and again["already_failed"] == 1 and "unsafe_draws" not in again
    assert len(json.loads((out / "manifest.json").read_text())["runs"]) == 2 and load_pairs(out).pair_ids == [0, 1]


def test_generate_resumes(quick_world: Path, tmp_path: Path) -> None:
    from t2i_unlearn.data.pairs import generate_pairs

    spec = _spec({"name": "none"}, count=2)
    out = tmp_path / "pairs"
    stats = generate_pairs(str(quick_world), spec, out, seed=1)
    assert stats["pairs"] == 2 and stats["unsafe_acceptance"] == 1.0
    # an interrupted run: the last pair's record never got written; a rerun remakes that pair, identically
    before = (out / "safe" / "000001.png").read_bytes()
    (out / ".pairs" / "000001.json").unlink()
    (out / "safe" / "000001.png").unlink()
    stats2 = generate_pairs(str(quick_world), spec, out, seed=1)
    assert stats2["already_done"] == 1 and stats2["pairs"] == 2
    assert (out / "safe" / "000001.png").read_bytes() == before
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["runs"]) == 2 and manifest["judge"] == {"name": "none"} and manifest["pairs"] == 2
    with pytest.raises(UserError, match="other settings"):
        generate_pairs(str(quick_world), spec, out, seed=2)


def test_cli_pairs(quick_world: Path, tmp_path: Path) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(
        "name: c\nprompts:\n  - {unsafe: a picture of a blue square, safe: a picture of a plain blue square, count: 5}\n"
        "judge: {name: none}\ngeneration: {steps: 3, guidance: 4}\nsdedit: {steps: 4, guidance: 4}\n"
    )
    res = run_cli("data", "pairs", "--model", str(quick_world), "--concept", str(spec), "--out", str(tmp_path / "o"), "--num-pairs", "2")
    assert res.returncode == 0, res.stderr
    assert "2/2 pairs in" in res.stdout and "judge acceptance: unsafe 100%" in res.stdout
    bad = run_cli("data", "pairs", "--model", str(quick_world), "--concept", "nudity_typo", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: unknown concept") and len(bad.stderr.strip().splitlines()) == 1
    # adversarial pairs: an attack set's prompt becomes an unsafe prompt of its own, with its target's safe prompt
    from t2i_unlearn.evaluation import write_attack_set

    found = [{"prompt": "circled circled a picture of a blue square", "target_prompt": "a picture of a blue square"}]
    attack = write_attack_set(tmp_path / "uda" / "attack_set.json", found, concept="c")
    args = ["--concept", str(spec), "--out", str(tmp_path / "adv"), "--from-attack", str(attack), "--attack-pairs", "2"]
    res = run_cli("data", "pairs", "--model", str(quick_world), *args)
    assert res.returncode == 0, res.stderr
    assert "7/7 pairs in" in res.stdout
    rows = [json.loads(line) for line in (tmp_path / "adv" / "metadata.jsonl").read_text().splitlines()]
    adv = [r for r in rows if r["unsafe_prompt"] == "circled circled a picture of a blue square"]
    assert len(adv) == 4 and {r["safe_prompt"] for r in adv} == {"a picture of a plain blue square"}


def test_preserve_images_are_drawn_filtered_and_resumed(quick_world: Path, tmp_path: Path, monkeypatch) -> None:
    from t2i_unlearn import judges
    from t2i_unlearn.data.pairs import generate_pairs

    raw = _spec({"name": "scripted"}, count=1).model_dump()
    raw["preserve"] = [{"prompt": "a picture of a dotted blue square", "count": 2}]
    spec = parse_concept(raw, "test")
    # pair: unsafe flagged, safe cleared; preserve: image 0 flagged (redrawn, then cleared), image 1 cleared
    made = [_ScriptedJudge([[True], [False], [True, False], [False]])]
    monkeypatch.setitem(judges.JUDGES, "scripted", lambda spec, model: made[-1])
    out = tmp_path / "pairs"
    stats = generate_pairs(str(quick_world), spec, out, seed=1)
    assert stats["pairs"] == 1 and stats["preserve_images"] == 2 and stats["preserve_draws"] == 3 and not made[-1].script
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert all(set(r) == set(rows[0]) for r in rows)  # one schema for every row, as an image folder needs
    keep = {r["preserve_id"]: r for r in rows if r["role"] == "preserve"}
    assert sorted(keep) == [0, 1] and keep[0]["attempts"] == 2 and keep[1]["attempts"] == 1 and keep[0]["pair_id"] is None
    assert keep[0]["prompt"] == "a picture of a dotted blue square" and keep[0]["seed"] != keep[1]["seed"]
    pairs = load_pairs(out)
    assert len(pairs) == 1 and pairs.preserve.shape == (2, 32, 32, 3) and pairs.preserve_prompts == ["a picture of a dotted blue square"] * 2
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert sorted(ds["role"]) == ["preserve", "preserve", "safe", "unsafe"]
    # an interrupted run: preserve image 1 is missing its record; the rerun draws it again, identically
    before = (out / "preserve" / "000001.png").read_bytes()
    (out / ".pairs" / "preserve-000001.json").unlink()
    made.append(_ScriptedJudge([[False]]))
    stats2 = generate_pairs(str(quick_world), spec, out, seed=1)
    assert stats2["preserve_images"] == 2 and stats2["preserve_draws"] == 1 and not made[-1].script
    assert (out / "preserve" / "000001.png").read_bytes() == before
    # a folder without preserve images has no preserve rows and loads as before
    assert load_pairs(toy_pairs(tmp_path / "plain", n=2)).preserve is None


def test_preserve_image_of_another_size_is_refused(tmp_path: Path) -> None:
    from PIL import Image

    from t2i_unlearn.data import write_metadata

    root = toy_pairs(tmp_path / "a", n=2)
    (root / "preserve").mkdir()
    Image.new("RGB", (16, 16)).save(root / "preserve" / "000000.png")
    (root / ".pairs" / "preserve-000000.json").write_text(json.dumps({"preserve_id": 0, "prompt": "a dotted shape"}))
    write_metadata(root)
    with pytest.raises(UserError, match="all images must share one size"):
        load_pairs(root)
