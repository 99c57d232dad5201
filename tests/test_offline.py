"""`generate --model toy` with the network unreachable writes nothing outside its output and the package cache.

onnxruntime (imported by diffusers when it loads any pipeline, and by nudenet) writes a telemetry device
id under ~/.cache and sends events unless ``ORT_DISABLE_TELEMETRY`` is set before it starts; the package
sets it. The command runs with HOME in a fresh folder, the hub offline, every proxy pointing at a closed
local port and, where the machine allows it (root), in a network namespace of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Variables that would move caches out of HOME, where the test could not see what is written.
_MOVED = ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE",
          "TRANSFORMERS_CACHE", "TORCH_HOME", "MPLCONFIGDIR", "ORT_DISABLE_TELEMETRY")  # fmt: skip


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file() or p.is_dir()}


def _no_network_prefix() -> list[str]:
    """``unshare -n`` when this machine lets us make a network namespace (root), else nothing."""
    exe = shutil.which("unshare")
    if exe and subprocess.run([exe, "-n", "true"], capture_output=True).returncode == 0:
        return [exe, "-n"]
    return []


def test_generate_toy_offline_writes_only_its_output(tmp_path: Path) -> None:
    home, work, cache = tmp_path / "home", tmp_path / "work", tmp_path / "cache"
    for d in (home, work, cache):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _MOVED}
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection fails at once
    env.update(HOME=str(home), T2I_UNLEARN_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", NO_PROXY="", no_proxy="")
    env.update({k: closed for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")})
    before_home, before_work = _snapshot(home), _snapshot(work)
    cmd = [*_no_network_prefix(), sys.executable, "-m", "t2i_unlearn.cli", "generate", "--model", "toy", "--prompt", "a red circle", "--seed", "0"]
    res = subprocess.run([*cmd, "--out", "out/img.png"], cwd=work, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (work / "out" / "img.png").stat().st_size > 0
    assert _snapshot(home) == before_home, f"written under HOME: {sorted(set(_snapshot(home)) - set(before_home))}"
    after = {k: v for k, v in _snapshot(work).items() if not (k == "out" or k.startswith("out/"))}
    assert after == before_work, f"written beside the output: {sorted(set(after) - set(before_work))}"
