"""Two torch threads against one, under each OpenMP wait policy: what `--threads` and the policy cost on CPU.

    python bench/bench_threads.py [--model toy] [--rounds 3] [--work esd pairs duo] [--busy]

Runs whole CLI commands on the toy world as fresh processes, the cases alternating round by round (the order
reversed every other round), so that a change in the machine's load hits them alike:

- ``1 thread``: ``--threads 1`` (no OpenMP worker threads, so no wait policy applies);
- ``2 threads (the command's default)``: ``--threads 2`` with neither ``OMP_WAIT_POLICY`` nor ``GOMP_SPINCOUNT``
  set, so the command's own choice applies (``cli/app.py``: worker threads spin ``GOMP_SPINCOUNT`` = 10,000 times
  for the next operation, then sleep);
- ``2 threads, OMP_WAIT_POLICY=PASSIVE``: worker threads sleep as soon as an operation ends (the command's
  default until 2026-12-02);
- ``2 threads, libgomp's default``: the same command without the CLI's entry point setting anything (the Typer
  app called directly), so OpenMP's own default applies (torch's CPU wheels ship GNU libgomp).

Work (each a real command; ``pairs`` is made once with one thread before the rounds, for ``duo``):
``esd`` (``train esd --config toy``: 50 iterations at batch 1), ``pairs`` (``data pairs --num-pairs 16``: one image
per pipeline call, then SDEdit), ``duo`` (``train duo --config toy --max-steps 40``). ``--busy`` runs a one-thread
``data pairs`` job beside every case the whole time (a second job on the machine); there a case's CPU seconds
beyond its wall time are taken from that neighbour. Prints the median wall and CPU
(user + system) seconds per case and work, and one JSON line. Docs: docs/bench.md ("Threads").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
POLICY_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
# the Typer app without main(): nothing sets an OpenMP variable
APP_ONLY = "import sys; from t2i_unlearn.cli.app import app; sys.exit(app(prog_name='t2i-unlearn'))"

WORKS = ("esd", "pairs", "duo")
CASES = {
    "1 thread": (1, {}, False),
    "2 threads (the command's default)": (2, {}, False),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}, False),
    "2 threads, libgomp's default": (2, {}, True),
}


def _work(name: str, model: str, out: Path, pairs: Path, n_pairs: int = 16, esd_iterations: int | None = None) -> list[str]:
    if name == "esd":
        more = ["--iterations", str(esd_iterations), "--ddim-steps", "4"] if esd_iterations else []
        return ["train", "esd", "--model", model, "--concept", "toy_striped", "--config", "toy", *more, "--out", str(out), "--overwrite"]
    if name == "pairs":
        return ["data", "pairs", "--model", model, "--concept", "toy_striped", "--num-pairs", str(n_pairs), "--out", str(out), "--overwrite"]
    if name == "duo":
        return ["train", "duo", "--model", model, "--data", str(pairs), "--config", "toy", "--max-steps", "40", "--out", str(out), "--overwrite"]
    raise ValueError(f"unknown work {name!r}")  # argparse's choices refuse it before anything runs


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in POLICY_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, **extra}


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one command, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _command(case: str, args: list[str]) -> list[str]:
    threads, _, app_only = CASES[case]
    head = [sys.executable, "-c", APP_ONLY] if app_only else [sys.executable, "-m", "t2i_unlearn.cli"]
    return [*head, "--threads", str(threads), *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", nargs="+", choices=WORKS, default=list(WORKS))
    parser.add_argument("--busy", action="store_true", help="run a one-thread data pairs job beside every case")
    parser.add_argument("--esd-iterations", type=int, default=None, help="ESD's iterations, with 4 DDIM steps (default: the preset's); for a quick check")
    args = parser.parse_args()

    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pairs = tmp / "pairs"
        if "duo" in args.work:
            _run(_command("1 thread", _work("pairs", args.model, pairs, pairs)), _env({}))
        names = list(CASES)
        for r in range(args.rounds):
            for case in names if r % 2 == 0 else names[::-1]:
                for work in args.work:
                    background = None
                    if args.busy:
                        # 400 pairs outlast any case; the job is stopped when the case ends
                        bg_argv = [sys.executable, "-m", "t2i_unlearn.cli", "--threads", "1", *_work("pairs", args.model, tmp / "bg", pairs, 400)]
                        background = subprocess.Popen(bg_argv, env=_env({"OMP_NUM_THREADS": "1"}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        time.sleep(5)  # past its start-up, so the case runs beside its steady work
                    try:
                        wall, cpu = _run(_command(case, _work(work, args.model, tmp / "out", pairs, esd_iterations=args.esd_iterations)), _env(CASES[case][1]))
                    finally:
                        if background is not None:
                            background.kill()
                            background.wait()
                    cell = results.setdefault(work, {}).setdefault(case, {"wall": [], "cpu": []})
                    cell["wall"].append(wall)
                    cell["cpu"].append(cpu)
                    print(f"round {r + 1} {work:5s} {case}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    summary = {}
    print(f"\nmedians over {args.rounds} rounds{' (beside a one-thread job)' if args.busy else ''}; load average now {load}")
    for work, cases in results.items():
        base = statistics.median(cases["1 thread"]["wall"]) if "1 thread" in cases else None
        for case, cell in cases.items():
            wall, cpu = statistics.median(cell["wall"]), statistics.median(cell["cpu"])
            ratio = f"  ({wall / base:.2f}x the one-thread wall)" if base else ""
            print(f"{work:5s} {case:44s} {wall:7.1f} s wall {cpu:7.1f} s CPU{ratio}")
            summary.setdefault(work, {})[case] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "walls": [round(w, 2) for w in cell["wall"]]}
    print(json.dumps({"rounds": args.rounds, "busy": args.busy, "cpu_count": os.cpu_count(), "load": load, "results": summary}))


if __name__ == "__main__":
    main()
