"""Start-up time of the CLI: what a user waits for ``--help`` or a one-line error.

    python bench/bench_cli.py [--runs 10]

Times, as fresh processes, ``t2i-unlearn --help``, ``t2i-unlearn train duo --help`` and a missing-path
error (``train duo --data <missing>``, exit 2), next to ``python -c "import typer"`` (the floor: the
interpreter and the CLI library). The cases alternate run by run, so that a change in the machine's
load hits them alike. The CLI runs as ``python -m t2i_unlearn.cli`` from this checkout's ``src``.
Prints the median, min and max wall time per case, the load average, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _cases(tmp: Path) -> dict[str, tuple[list[str], int]]:
    """Name -> (argv, expected exit code)."""
    cli = [sys.executable, "-m", "t2i_unlearn.cli"]
    return {
        'python -c "import typer"': ([sys.executable, "-c", "import typer"], 0),
        "t2i-unlearn --help": ([*cli, "--help"], 0),
        "t2i-unlearn train duo --help": ([*cli, "train", "duo", "--help"], 0),
        "missing-path error": ([*cli, "train", "duo", "--model", "toy", "--data", str(tmp / "missing"), "--out", str(tmp / "out")], 2),
    }


def _time(argv: list[str], expected: int, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != expected:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode} (expected {expected}): {proc.stderr[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="Runs per case (default 10).")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        cases = _cases(Path(tmp))
        for argv, expected in cases.values():  # warm the file cache once
            _time(argv, expected, env)
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, (argv, expected) in cases.items():
                times[name].append(_time(argv, expected, env))
        load_after = os.getloadavg()
    print(f"{'case':32} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, values in times.items():
        print(f"{name:32} {statistics.median(values):9.3f} {min(values):7.3f} {max(values):7.3f}")
    print(f"load average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, after {' '.join(f'{x:.2f}' for x in load_after)}")
    medians = {name: round(statistics.median(values), 3) for name, values in times.items()}
    print(json.dumps({"runs": args.runs, "median_s": medians, "load_before": load_before, "load_after": load_after}))


if __name__ == "__main__":
    main()
