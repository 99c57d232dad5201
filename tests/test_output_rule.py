"""The output rule (utils.io.claim_output) and the cheap argument checks (utils.validate), without a model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t2i_unlearn.errors import UserError
from t2i_unlearn.utils.io import DONE, OTHER, PARTIAL, claim_output, make_manifest, manifest_recogniser
from t2i_unlearn.utils.validate import check_model_arg, is_hub_id


def _write_result(path: Path, request: dict) -> None:
    path.mkdir(parents=True)
    (path / "result.txt").write_text("r")
    (path / "manifest.json").write_text(json.dumps(make_manifest("t", request, artifact="thing", request=request)))


def test_absent_and_empty_are_new(tmp_path: Path) -> None:
    assert claim_output(tmp_path / "a", "a thing").status == "new"
    (tmp_path / "e").mkdir()
    claim = claim_output(tmp_path / "e", "a thing")
    assert claim.status == "new" and claim.existed
    assert not (tmp_path / "a").exists()  # claiming creates nothing


def test_same_request_is_reused_other_is_refused_naming_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "r"
    _write_result(out, {"x": 1})
    assert claim_output(out, "a thing", manifest_recogniser("thing", {"x": 1}, "a thing")).status == DONE
    assert claim_output(out, "a thing", manifest_recogniser("thing", {"x": 1}, "a thing", same=PARTIAL)).status == PARTIAL
    with pytest.raises(UserError, match=r"holds a thing made with other settings; use an empty folder or --overwrite$"):
        claim_output(out, "a thing", manifest_recogniser("thing", {"x": 2}, "a thing"))
    with pytest.raises(UserError, match=r"is not another thing; use an empty folder or --overwrite$"):
        claim_output(out, "another thing", manifest_recogniser("other", {"x": 1}, "another thing"))
    assert claim_output(out, "a thing", manifest_recogniser("thing", {"x": 2}, "a thing"), overwrite=True).status == "replace"


def test_foreign_folder_and_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="is not empty; use an empty folder or --overwrite"):
        claim_output(tmp_path / "f", "a thing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder; use an empty folder or --overwrite"):
        claim_output(tmp_path / "file", "a thing")
    with pytest.raises(UserError, match="already exists; use another file name or --overwrite"):
        claim_output(tmp_path / "file", "an image", kind="file")
    with pytest.raises(UserError, match=r"must end in \.png or \.jpg"):
        claim_output(tmp_path / "x.gif", "an image", kind="file", suffixes=(".png", ".jpg"))
    with pytest.raises(UserError, match=r"is not writable \(.*file is a file, not a folder\)"):
        claim_output(tmp_path / "file" / "sub", "a thing")
    assert (tmp_path / "f" / "mine.txt").read_text() == "keep"


def test_refusals_name_the_commands_own_flag(tmp_path: Path) -> None:
    """The demo's flag is ``--fresh``: its refusals say so."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"is a file, not a folder; use an empty folder or --fresh$"):
        claim_output(tmp_path / "file", "a bench run", flag="--fresh")


def test_a_folder_is_never_claimed_as_a_file(tmp_path: Path) -> None:
    """An empty folder named ``x.png`` is not a new image (the final rename onto it would fail), not even with --overwrite."""
    (tmp_path / "x.png").mkdir()
    for overwrite in (False, True):
        with pytest.raises(UserError, match=r"x.png is a folder, not a file; use another file name$"):
            claim_output(tmp_path / "x.png", "an image", overwrite=overwrite, kind="file", suffixes=(".png",))
    (tmp_path / "x.png" / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="is a folder, not a file"):
        claim_output(tmp_path / "x.png", "an image", overwrite=True, kind="file")
    assert (tmp_path / "x.png" / "mine.txt").read_text() == "keep"


def test_marker_recogniser_refuses_only_what_the_full_check_would(tmp_path: Path) -> None:
    """The first look before torch: a folder with one of the markers passes on to the command's own check."""
    from t2i_unlearn.utils.io import marker_recogniser

    look = marker_recogniser("a run", ("manifest.json", "checkpoints"))
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert claim_output(tmp_path / "run", "a run", look).status == PARTIAL
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"is not a run; use an empty folder or --overwrite$"):
        claim_output(tmp_path / "mine", "a run", look)


def test_check_folder_location_creates_nothing(tmp_path: Path) -> None:
    from t2i_unlearn.utils.io import check_folder_location

    assert check_folder_location(tmp_path / "a" / "b", "--cache") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    for path in (tmp_path / "f", tmp_path / "f" / "sub"):
        with pytest.raises(UserError, match=r"^--cache .* is not a folder \(.*f is a file\)$"):
            check_folder_location(path, "--cache")


def test_toy_show_follows_the_output_rule(tmp_path: Path) -> None:
    """``toy show`` (shipped world): a folder of its own, redrawn for the same request; anything else needs --overwrite."""
    from t2i_unlearn.toy.show import show_world

    out = tmp_path / "grid"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match=r"mine is not a toy sample grid; use an empty folder or --overwrite$"):
        show_world("toy", tmp_path / "mine", per_row=1)
    assert show_world("toy", out, per_row=1) == out / "toy_samples.png"
    assert sorted(os.listdir(out)) == ["manifest.json", "toy_samples.json", "toy_samples.png"]
    show_world("toy", out, per_row=1)  # the same request: drawn again and replaced
    with pytest.raises(UserError, match=r"holds a toy sample grid made with other settings; use an empty folder or --overwrite$"):
        show_world("toy", out, seed=1, per_row=1)
    show_world("toy", out, seed=1, per_row=1, overwrite=True)
    assert json.loads((out / "manifest.json").read_text())["request"]["seed"] == 1
    assert sorted(os.listdir(tmp_path)) == ["grid", "mine"] and (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_staged_appears_only_when_complete_and_replaces(tmp_path: Path) -> None:
    out = tmp_path / "r"
    claim = claim_output(out, "a thing")
    with pytest.raises(RuntimeError):
        with claim.staged() as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("stop")
    assert sorted(os.listdir(tmp_path)) == []  # nothing left, not even a temporary folder
    with claim.staged() as tmp:
        (tmp / "done.txt").write_text("1")
    assert sorted(os.listdir(out)) == ["done.txt"]
    claim = claim_output(out, "a thing", overwrite=True)
    with claim.staged() as tmp:
        (tmp / "new.txt").write_text("2")
    assert sorted(os.listdir(out)) == ["new.txt"] and sorted(os.listdir(tmp_path)) == ["r"]


def test_overwrite_replaces_a_file_by_a_folder(tmp_path: Path) -> None:
    (tmp_path / "r").write_text("a file")
    with claim_output(tmp_path / "r", "a thing", overwrite=True).staged() as tmp:
        (tmp / "done.txt").write_text("1")
    assert sorted(os.listdir(tmp_path)) == ["r"] and (tmp_path / "r" / "done.txt").exists()


def test_in_place_failure_leaves_no_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    with pytest.raises(UserError):
        with claim_output(out, "a thing").in_place():
            raise UserError("bad model")
    assert not out.exists() and not out.parent.exists()  # nor the parent this run created
    out.mkdir(parents=True)
    with pytest.raises(UserError):
        with claim_output(out, "a thing").in_place():
            raise UserError("bad model")
    assert out.is_dir()  # it was there (empty) before: left as found


def test_leftovers_of_a_killed_run_are_swept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = tmp_path / f".r.tmp-{dead.stdout.strip()}-abc"
    stale.mkdir()
    (stale / "half.txt").write_text("half")
    claim_output(tmp_path / "r", "a thing")
    assert not stale.exists()


def test_recogniser_partial_is_resumed(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "x").write_text("1")
    assert claim_output(tmp_path / "p", "a thing", lambda p: (PARTIAL, "")).status == PARTIAL
    with pytest.raises(UserError, match="holds junk; use an empty folder or --overwrite"):
        claim_output(tmp_path / "p", "a thing", lambda p: (OTHER, "holds junk"))
    assert claim_output(tmp_path / "p", "a thing", lambda p: (DONE, ""), overwrite=True).status == "replace"


@pytest.mark.parametrize(
    "text,ok",
    [
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", True),
        ("CompVis/stable-diffusion-v1-4", True),
        ("owner/name.v2_x", True),
        ("owner/-name", False),
        ("owner/name-", False),
        ("owner/na--me", False),
        ("owner/na..me", False),
        ("owner/name/extra", False),
        ("noslash", False),
        ("own er/name", False),
        ("owner/" + "n" * 100, False),
    ],
)
def test_hub_id_syntax(text: str, ok: bool) -> None:
    assert is_hub_id(text) is ok


def test_model_argument_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert check_model_arg("toy") == "toy"  # the shipped world
    with pytest.raises(UserError, match="unknown toy preset"):
        check_model_arg("toy:bogus")
    assert check_model_arg("owner/name") == "owner/name"  # a hub id: no local owner/ folder
    (tmp_path / "runs").mkdir()
    with pytest.raises(UserError, match="no such directory in runs/"):
        check_model_arg("runs/duo")  # a local runs/ exists: a mistyped path, not a repository
    with pytest.raises(UserError, match="neither an existing directory nor a hub id"):
        check_model_arg("./typo/pipeline")
    with pytest.raises(UserError, match="neither an existing directory nor a hub id"):
        check_model_arg("not a model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE=1 and it is not in the Hugging Face cache"):
        check_model_arg("owner/name")
    (tmp_path / "hf" / "models--owner--name").mkdir(parents=True)
    assert check_model_arg("owner/name") == "owner/name"  # cached: offline use is fine


def test_checks_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from t2i_unlearn.utils import io, validate\n"
        "from t2i_unlearn.attacks import attack_config, check_attack\n"
        "from t2i_unlearn.data import pair_folders\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
