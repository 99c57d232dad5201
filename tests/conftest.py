"""Shared fixtures: the ``quick`` toy world (built once, cached like a user's) and CLI helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from t2i_unlearn.errors import UserError


@pytest.fixture(scope="session")
def quick_world() -> Path:
    """A complete ``quick`` toy world; built on first use (about 2.5 minutes on 2 idle cores) and reused afterwards."""
    from t2i_unlearn.toy.build import build_world
    from t2i_unlearn.toy.world import default_world_dir

    target = Path(os.environ.get("T2I_UNLEARN_TEST_WORLD", default_world_dir("quick")))
    try:
        return build_world(target, preset="quick", progress=False)
    except UserError:
        # A stale world from an older recipe: build it again.
        shutil.rmtree(target, ignore_errors=True)
        return build_world(target, preset="quick", progress=False)


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``t2i-unlearn`` in a subprocess, as a user would.

    No time limit: on a loaded machine a command may take many times its usual time, and a test
    must not fail for that (CI bounds the whole job instead).
    """
    return subprocess.run(
        [sys.executable, "-m", "t2i_unlearn.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


# Runs the CLI with os.replace wrapped: once the path given as first argument has been renamed into
# place, it says so on a line of its own and waits on stdin, so the test kills it exactly there.
_HOLD_AFTER_RENAME = """
import os, runpy, sys
target = os.path.abspath(sys.argv.pop(1))
real_replace = os.replace
def replace(src, dst, *args, **kwargs):
    real_replace(src, dst, *args, **kwargs)
    if os.path.abspath(os.fspath(dst)) == target:
        print("\\n@renamed-into-place@", flush=True)
        sys.stdin.read()
os.replace = replace
sys.argv[0] = "t2i-unlearn"
runpy.run_module("t2i_unlearn.cli", run_name="__main__", alter_sys=True)
"""


def kill9_after(target: Path, *args: str, tmp: Path) -> None:
    """Run ``t2i-unlearn *args`` until ``target`` has been renamed into place, then ``kill -9`` it right there.

    Synchronised on the event itself (the child reports the rename and waits), not on time, so the
    kill lands at the same point however loaded the machine is. Fails if the command ends first.
    """
    import signal

    err = tmp / "kill9.stderr"
    with open(err, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD_AFTER_RENAME, str(target), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        assert proc.stdout is not None
        held = any(line.strip() == "@renamed-into-place@" for line in proc.stdout)  # stops at the marker, or at EOF when the child ends
        proc.kill()
        proc.wait()
    assert held, f"the command ended before writing {target}: {err.read_text()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
