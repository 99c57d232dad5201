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
    """``--help`` of each command in the tree, then errors about missing paths, all in one process: none imports torch & co."""
    code = f"""
        import sys
        import click, typer
        from t2i_unlearn.cli import app, main

        def walk(cmd, path):
            yield path
            for name, sub in sorted(getattr(cmd, "commands", {{}}).items()):
                yield from walk(sub, [*path, name])

        runs = [[*path, "--help"] for path in walk(typer.main.get_command(app), [])]
        missing = {str(tmp_path / "missing")!r}
        runs += [
            ["train", "duo", "--model", "toy", "--data", missing, "--out", missing + "_out"],
            ["train", "esd", "--model", "toy", "--concept", missing + ".yaml", "--out", missing + "_out"],
            ["train", "duo", "--model", "toy", "--data", missing, "--out", missing + "_out", "--beta", "-1"],
        ]
        for argv in runs:
            sys.argv = ["t2i-unlearn", *argv]
            try:
                main()
            except SystemExit as exc:
                print(" ".join(argv[:3]), "->", exc.code, file=sys.stderr)
        print(len(runs), [m for m in {HEAVY!r} if m in sys.modules])
        """
    r = _python(code)
    assert r.returncode == 0, r.stderr[-2000:]
    count, loaded = r.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) >= 20, r.stdout  # every command and group of the tree
    assert loaded == "[]", (loaded, r.stderr[-2000:])
    assert r.stderr.count("-> 0") == int(count) - 3 and r.stderr.count("-> 2") == 3, r.stderr[-2000:]
    assert f"error: --data {tmp_path / 'missing'} does not exist" in r.stderr
    assert "does not exist" in r.stderr.split("train esd")[-2] or "no concept" in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("args", [["--help"], ["train", "duo", "--help"], ["train", "duo", "--model", "toy", "--data", "missing", "--out", "o"]])
def test_importtime_shows_no_heavy_import(tmp_path: Path, args: list[str]) -> None:
    """The same, read from ``python -X importtime`` of the real command line."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "t2i_unlearn.cli", *args], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode in (0, 2), r.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "typer" in imported and "t2i_unlearn.cli" in imported  # the probe itself works
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_threads_and_the_openmp_wait_policy_reach_torch() -> None:
    """``--threads N`` sizes torch's pool; OMP_WAIT_POLICY=PASSIVE is set before torch loads unless the user chose one."""
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
        print(torch.get_num_threads(), os.environ.get("OMP_WAIT_POLICY"), file=sys.stderr)
        """
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    runs = {
        "threads": _python(code, "--threads", "3", env={**env, "OMP_NUM_THREADS": "1"}),
        "default": subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=600),
        "user policy": _python(code, "--threads", "2", env={**env, "OMP_WAIT_POLICY": "ACTIVE"}),
        "user threads": _python(code, env={**env, "OMP_NUM_THREADS": "1"}),
    }
    seen = {name: r.stderr.strip().splitlines()[-1].split() for name, r in runs.items()}
    assert seen["threads"] == ["3", "PASSIVE"], runs["threads"].stderr[-1000:]
    assert seen["default"][1] == "PASSIVE" and int(seen["default"][0]) >= 1, runs["default"].stderr[-1000:]
    assert seen["user policy"] == ["2", "ACTIVE"], runs["user policy"].stderr[-1000:]
    assert seen["user threads"] == ["1", "PASSIVE"], runs["user threads"].stderr[-1000:]  # without --threads, torch's own choice


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
