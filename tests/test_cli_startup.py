"""The CLI's start-up: usage errors are Click's, --help and argument errors stay light, global options reach torch.

Everything here runs ``t2i-unlearn`` through its real entry point (``python -m t2i_unlearn.cli`` or
``t2i_unlearn.cli.main``) in a fresh subprocess, so that what the command imports is what a user's
shell would import.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from t2i_unlearn.cli.app import SPIN_COUNT
from tests.conftest import run_cli

HEAVY = ("torch", "diffusers", "transformers")


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "--out", "a.png"], "Missing option '--prompt'"),
        (["generate", "-p", "x", "--out", "a.png", "--bogus"], "No such option: --bogus"),
        (["generate", "-p", "x", "--out", "a.png", "--steps", "many"], "Invalid value for '--steps'"),
        (["train", "duo", "--model"], "Option '--model' requires an argument"),
        (["nosuch"], "No such command 'nosuch'"),
        (["--threads", "0", "toy", "--help"], "Invalid value for '--threads'"),
    ],
)
def test_usage_errors_exit_2_with_clicks_message(tmp_path: Path, args: list[str], message: str) -> None:
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr and "Error:" in r.stderr, r.stderr
    assert not any(name in r.stderr for name in ("MissingParameter", "NoSuchOption", "BadParameter", "UsageError", "Traceback")), r.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_of_every_command_and_argument_errors_import_nothing_heavy(tmp_path: Path) -> None:
    """``--help`` of each command in the tree, then errors about names, settings and paths, all in one process: none loads torch & co."""
    missing = str(tmp_path / "missing")
    foreign, a_file, lora = tmp_path / "foreign", tmp_path / "a_file.txt", tmp_path / "lora"
    errors = [
        (["train", "duo", "--model", "toy", "--data", missing, "--out", missing + "_out"], f"pair data folder {missing} does not exist"),
        (["train", "duo", "--model", "toy", "--data", str(tmp_path), "--out", missing + "_out", "--beta", "-1"], "beta must be positive"),
        (["train", "esd", "--model", "toy", "--concept", missing + ".yaml", "--out", missing + "_out"], f"concept file {missing}.yaml does not exist"),
        (["train", "uce", "--model", "toy", "--concept", "toy_striped", "--out", missing, "--config", "nope"], "no UCE config file or preset 'nope'"),
        (["train", "sld", "--model", "toy", "--concept", "toy_striped", "--out", missing, "--preset", "huge"], "preset must be one of"),
        (["train", "nope", "--model", "toy"], "unknown method 'nope'"),
        (["data", "pairs", "--model", "toy", "--concept", "nope", "--out", missing], "unknown concept 'nope'"),
        (["data", "pairs", "--model", "toy", "--concept", "toy_striped", "--out", missing, "--dtype", "fp8"], "--dtype must be one of"),
        (["generate", "-p", "x", "--out", missing + ".txt"], "must end in .png"),
        (["attack", "nope", "--model", "toy", "--concept", "toy_striped", "--out", missing], "unknown attack 'nope'"),
        (["eval", "--model", "toy", "--suite", "nope", "--out", missing], "unknown suite 'nope'"),
        (["toy", "build", "--preset", "huge", "--out", missing], "unknown toy preset 'huge'"),
        (["toy", "build", "--preset", "quick", "--out", str(tmp_path / "foreign")], "is not a toy world"),
        (["export", "--model", "toy", "--lora", missing, "--out", missing + "_e"], "does not exist"),
        # output folders and counts are checked before anything imports torch
        (["train", "esd", "--model", "toy", "--concept", "toy_striped", "--out", str(a_file)], "is a file, not a folder"),
        (["train", "uce", "--model", "toy", "--concept", "toy_striped", "--out", str(foreign)], "is not a UCE result"),
        (["train", "sld", "--model", "toy", "--concept", "toy_striped", "--out", str(foreign)], "is not an SLD result"),
        (["train", "darkminer", "--model", "toy", "--concept", "toy_striped", "--out", str(foreign)], "is not a Dark Miner run"),
        (["export", "--model", "toy", "--lora", str(lora), "--out", str(a_file)], "is a file, not a folder"),
        (["export", "--model", "toy", "--lora", str(lora), "--lora-weight", "1", "--lora-weight", "2", "--out", missing], "1 LoRAs but 2 LoRA weights"),
        (["bench", "--suite", "demo", "--out", str(a_file)], "is a file, not a folder"),
        (["bench", "--suite", "demo", "--out", missing, "--cache", str(a_file)], "is not a folder"),
        (["demo", "--out", str(a_file)], "use an empty folder or --fresh"),
        (["toy", "show", "--preset", "quik", "--out", missing], "unknown toy preset 'quik'"),
        (["toy", "show", "--preset", "quick", "--out", str(foreign)], "is not a toy sample grid"),
        (["toy", "build", "--preset", "quick", "--seed", "-1", "--out", missing], "--seed must be between 0"),
    ]
    a_file.write_text("a file")
    lora.mkdir()
    (lora / "pytorch_lora_weights.safetensors").write_bytes(b"")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("not a world")
    code = f"""
        import sys
        import typer
        from t2i_unlearn.cli import app, main

        def walk(cmd, path):
            yield path
            for name, sub in sorted(getattr(cmd, "commands", {{}}).items()):
                yield from walk(sub, [*path, name])

        helps = [[*path, "--help"] for path in walk(typer.main.get_command(app), [])]
        for argv in [*helps, *{[argv for argv, _ in errors]!r}]:
            print("run:", *argv, file=sys.stderr, flush=True)
            sys.argv = ["t2i-unlearn", *argv]
            try:
                main()
            except SystemExit as exc:
                print("exit:", exc.code, file=sys.stderr, flush=True)
        print(len(helps), [m for m in {HEAVY!r} if m in sys.modules])
        """
    r = _python(code)
    assert r.returncode == 0, r.stderr[-2000:]
    helps, loaded = r.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(helps) >= 18, r.stdout  # the root, every group and every command
    assert loaded == "[]", (loaded, r.stderr[-2000:])
    runs = r.stderr.split("run: ")[1:]
    assert len(runs) == int(helps) + len(errors)
    assert all(run.rstrip().endswith("exit: 0") for run in runs[: int(helps)]), runs
    assert "<bool>" not in r.stdout  # a plain flag (--overwrite, --resume, --debug) takes no value, and its help says none
    for run, (_, needle) in zip(runs[int(helps) :], errors, strict=True):
        lines = run.strip().splitlines()
        assert lines[-1] == "exit: 2" and lines[-2].startswith("error:") and needle in lines[-2], run


@pytest.mark.parametrize("args", [["--help"], ["train", "duo", "--help"], ["train", "duo", "--model", "toy", "--data", "missing", "--out", "o"]])
def test_importtime_shows_no_heavy_import(tmp_path: Path, args: list[str]) -> None:
    """The same, read from ``python -X importtime`` of the real command line."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "t2i_unlearn.cli", *args], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode in (0, 2), r.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "typer" in imported and "t2i_unlearn.cli" in imported  # the probe itself works
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_threads_and_the_openmp_wait_policy_reach_torch() -> None:
    """``--threads N`` sizes torch's pool; a short OpenMP spin (GOMP_SPINCOUNT) is set before torch loads unless the
    user chose a wait policy or a spin count."""
    code = """
        import os, sys
        from t2i_unlearn.cli import main
        threads_given = "--threads" in sys.argv
        sys.argv = ["t2i-unlearn", *sys.argv[1:], "toy", "--help"]
        try:
            main()
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        assert ("torch" in sys.modules) == threads_given  # only --threads loads torch before a command runs
        import torch
        print(torch.get_num_threads(), os.environ.get("OMP_WAIT_POLICY", "-"), os.environ.get("GOMP_SPINCOUNT", "-"), file=sys.stderr)
        """
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    runs = {
        "threads": _python(code, "--threads", "3", env={**env, "OMP_NUM_THREADS": "1"}),
        "default": subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=600),
        "user policy": _python(code, "--threads", "2", env={**env, "OMP_WAIT_POLICY": "PASSIVE"}),
        "user spin": _python(code, "--threads", "2", env={**env, "GOMP_SPINCOUNT": "0"}),
        "user threads": _python(code, env={**env, "OMP_NUM_THREADS": "1"}),
    }
    seen = {name: r.stderr.strip().splitlines()[-1].split() for name, r in runs.items()}
    assert seen["threads"] == ["3", "-", SPIN_COUNT], runs["threads"].stderr[-1000:]
    assert seen["default"][1:] == ["-", SPIN_COUNT] and int(seen["default"][0]) >= 1, runs["default"].stderr[-1000:]
    assert seen["user policy"] == ["2", "PASSIVE", "-"], runs["user policy"].stderr[-1000:]
    assert seen["user spin"] == ["2", "-", "0"], runs["user spin"].stderr[-1000:]
    assert seen["user threads"] == ["1", "-", SPIN_COUNT], runs["user threads"].stderr[-1000:]  # without --threads, torch's own choice


def test_error_line_comes_after_a_closed_progress_bar() -> None:
    """A command that fails half-way through a progress bar: the bar ends its line before ``error: ...``."""
    code = """
        import sys
        from tqdm import tqdm
        from t2i_unlearn.cli import app, main
        from t2i_unlearn.errors import UserError

        @app.command("fail-midway")
        def fail_midway() -> None:
            bar = tqdm(total=10, desc="working")
            bar.update(4)
            raise UserError("it broke half-way")

        sys.argv = ["t2i-unlearn", "fail-midway"]
        main()
        """
    r = _python(code)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1] == "error: it broke half-way", lines
    assert any("working" in line and "4/10" in line for line in lines[:-1]), lines
    assert r.stderr.count("error:") == 1


@pytest.mark.parametrize(
    ("raised", "rc", "last"),
    [
        ("RuntimeError('no attribute x')", 1, "error: RuntimeError: no attribute x (run with --debug for the traceback)"),
        ("typer.Abort()", 1, "aborted"),
    ],
)
def test_unexpected_errors_and_aborts_give_one_line(raised: str, rc: int, last: str) -> None:
    """An error that is not the user's (a bug, a library's failure) or an abort: one line, no traceback."""
    code = f"""
        import sys
        import typer
        from t2i_unlearn.cli import app, main

        @app.command("fail-inside")
        def fail_inside() -> None:
            raise {raised}

        sys.argv = ["t2i-unlearn", "fail-inside"]
        main()
        """
    r = _python(code)
    assert r.returncode == rc, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines == [last], r.stderr[-2000:]
