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
    """A complete ``quick`` toy world; built on first use (about 2 minutes) and reused afterwards."""
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
    """Run ``t2i-unlearn`` in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "t2i_unlearn.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=600,
    )
