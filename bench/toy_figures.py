"""Run the commands behind the toy world's figures (README and docs), in dependency order, on several lanes.

    python bench/toy_figures.py [--jobs bench/toy_figures.yaml] [--lanes 2] [--only NAME ...] [--list]

When the toy world changes, every figure measured on it is measured again (the old ones are replaced, not mixed
in); this is the list of those commands and the order they need. Each job of ``--jobs`` (a YAML list of
``name``, ``needs``, ``run``: a shell command run from the repository root, the one written beside its figures
in the docs) runs once its ``needs`` are done, with ``OMP_NUM_THREADS=1`` (one thread a lane: on a shared
2-core machine two one-thread jobs do more than one two-thread job) and ``T2I_UNLEARN_CACHE=runs/figures/cache``
(so ``--model toy`` is the shipped world, not a world built into the user's cache, and no image is reused from
another world). Its output goes to ``runs/figures/logs/NAME.log``, and a job is done once
``runs/figures/done/NAME.json`` is written (command, exit status, wall seconds, the world's manifest hash): a
run that is stopped and started again goes on with the jobs not done. A job done on another world than the
shipped one, or with another command than the list now gives, is not reused: the run stops and names it. A failed
job stops the run once the running lanes end.

Ctrl-C or SIGTERM stops the running jobs' whole process trees (each job runs in a session of its own); they are
not done and run again next time. While a run goes on, ``runs/figures/running.json`` holds its pid and its jobs'
process groups: a second run refuses to start beside it, or beside a job an earlier run left running.

``--only NAME`` runs those jobs and what they need; ``--list`` prints the jobs and whether each is done.
Docs: docs/toy_world.md, "Measuring the figures again".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from t2i_unlearn.utils.io import atomic_write_json  # noqa: E402 (torch-free)

STATE = Path("runs/figures")
RUNNING = STATE / "running.json"  # the driver's pid and each running job's process group, while a run goes on
WORLD_MANIFEST = Path("src/t2i_unlearn/toy/assets/full/manifest.json")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def load_jobs(path: Path) -> dict[str, dict]:
    import yaml

    try:
        items = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        fail(f"cannot read jobs file {path}: {exc.__class__.__name__}")
    if not isinstance(items, list):
        fail(f"{path} must hold a list of jobs (name, needs, run)")
    jobs: dict[str, dict] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("run"), str):
            fail(f"{path}: job {i + 1} needs a 'name' and a 'run' (strings)")
        needs = item.get("needs") or []
        if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
            fail(f"{path}: job {item['name']!r}: 'needs' must be a list of job names")
        if item["name"] in jobs:
            fail(f"{path}: job {item['name']!r} is listed twice")
        if set(item) - {"name", "needs", "run", "note"}:
            fail(f"{path}: job {item['name']!r} has unknown keys {sorted(set(item) - {'name', 'needs', 'run', 'note'})}")
        jobs[item["name"]] = {"needs": needs, "run": " ".join(item["run"].split())}
    for name, job in jobs.items():
        for need in job["needs"]:
            if need not in jobs:
                fail(f"{path}: job {name!r} needs {need!r}, which is not a job")
            if list(jobs).index(need) > list(jobs).index(name):
                fail(f"{path}: job {name!r} needs {need!r}, which is listed after it (list jobs in dependency order)")
    return jobs


def world_hash(root: Path) -> str:
    path = root / WORLD_MANIFEST
    if not path.exists():
        fail(f"no shipped toy world at {WORLD_MANIFEST}")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def closure(jobs: dict[str, dict], only: list[str]) -> list[str]:
    wanted: set[str] = set()

    def add(name: str) -> None:
        if name not in wanted:
            wanted.add(name)
            for need in jobs[name]["needs"]:
                add(need)

    for name in only:
        if name not in jobs:
            fail(f"no job {name!r}; see --list")
        add(name)
    return [n for n in jobs if n in wanted]


def done_record(state: Path, name: str) -> dict | None:
    path = state / "done" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _alive(pid: int, group: bool = False) -> bool:
    """Whether the process (or any process of the group) still runs. Zombies do not count: where nothing reaps orphans
    (a container whose first process is not an init) a stopped job's processes stay listed as zombies."""
    if group and Path("/proc/self/stat").exists():
        return any(state != "Z" for state in _group_states(pid))
    try:
        os.killpg(pid, 0) if group else os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not group and Path(f"/proc/{pid}/stat").exists():
        return _stat(Path(f"/proc/{pid}/stat"))[0] != "Z"
    return True


def _stat(path: Path) -> tuple[str, int]:
    """(state, process group) from a /proc/PID/stat file; the command name in it may hold spaces and parentheses."""
    fields = path.read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[2])


def _group_states(pgid: int) -> list[str]:
    states = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, group = _stat(stat)
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we read it
        if group == pgid:
            states.append(state)
    return states


def check_no_other_run() -> None:
    """Refuse to start while another run, or a job an earlier run left behind, is still going (they would share folders)."""
    if not RUNNING.exists():
        return
    try:
        state = json.loads(RUNNING.read_text())
    except ValueError:
        return
    driver = int(state.get("driver") or 0)
    if driver > 0 and driver != os.getpid() and _alive(driver):
        fail(f"another run of bench/toy_figures.py (pid {state['driver']}) is going; wait for it or stop it first")
    for name, group in state.get("jobs", {}).items():
        if _alive(int(group), group=True):
            fail(f"job {name!r} of an earlier run is still running (process group {group}); let it end or stop it (kill -- -{group})")


def write_running(running: dict) -> None:
    atomic_write_json(RUNNING, {"driver": os.getpid(), "jobs": {name: proc.pid for name, (proc, _, _) in running.items()}})


def stop_jobs(running: dict) -> None:
    """Stop every running job's whole process group (each job runs in a session of its own)."""
    for proc, _, _ in running.values():
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc, _, log in running.values():
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=Path, default=Path("bench/toy_figures.yaml"))
    parser.add_argument("--lanes", type=int, default=2)
    parser.add_argument("--only", action="append", default=[], metavar="NAME")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.lanes < 1:
        fail("--lanes must be >= 1")
    os.chdir(ROOT)
    jobs = load_jobs(args.jobs)
    order = closure(jobs, args.only) if args.only else list(jobs)
    world = world_hash(ROOT)
    records = {name: done_record(STATE, name) for name in order}
    for name, record in records.items():
        if record is not None and record.get("world") != world:
            fail(f"job {name!r} was done on another toy world ({record.get('world')}, now {world}); move {STATE} aside to start over")
        if record is not None and record.get("command") != jobs[name]["run"]:
            fail(f"job {name!r} was done with another command than {args.jobs} now gives; delete {STATE}/done/{name}.json to run it again")
    if args.list:
        for name, record in records.items():
            status = f"done ({record['seconds']:.0f} s)" if record else "to run"
            print(f"{name:32s} {status:18s} needs: {', '.join(jobs[name]['needs']) or '-'}")
        return

    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    check_no_other_run()
    env = dict(os.environ, OMP_NUM_THREADS="1", T2I_UNLEARN_CACHE=str(ROOT / STATE / "cache"))
    done = {name for name, record in records.items() if record is not None}
    todo = [n for n in order if n not in done]
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    failed: list[str] = []
    print(f"{len(order) - len(todo)} of {len(order)} jobs done; world {world}; {args.lanes} lane(s)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"stopped: the running jobs ({', '.join(running) or 'none'}) were stopped and will run again"))
    write_running(running)
    try:
        run_jobs(args.lanes, jobs, todo, done, running, failed, env, world)
    except (KeyboardInterrupt, SystemExit):
        stop_jobs(running)
        raise
    finally:
        RUNNING.unlink(missing_ok=True)
    if failed:
        fail(f"{len(failed)} job(s) failed: {', '.join(failed)}")
    print("all jobs done", flush=True)


def run_jobs(lanes: int, jobs: dict[str, dict], todo: list[str], done: set[str], running: dict, failed: list[str], env: dict[str, str], world: str) -> None:
    """Start jobs whose needs are ``done`` on free lanes until none is left or one failed; ``done`` grows as jobs end."""
    while todo or running:
        for name, (proc, start, log) in list(running.items()):
            if proc.poll() is None:
                continue
            seconds = time.time() - start
            log.close()
            del running[name]
            write_running(running)
            if proc.returncode == 0:
                record = {"command": jobs[name]["run"], "rc": 0, "seconds": round(seconds, 1), "world": world, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
                atomic_write_json(STATE / "done" / f"{name}.json", record)
                done.add(name)
                print(f"done   {name} ({seconds:.0f} s)", flush=True)
            else:
                failed.append(name)
                print(f"FAILED {name} (exit {proc.returncode}, {seconds:.0f} s): see {STATE}/logs/{name}.log", flush=True)
        if not failed:
            # jobs are listed after what they need: with no job running and none failed, the first one to do is ready
            ready = [n for n in todo if all(need in done for need in jobs[n]["needs"])]
            while ready and len(running) < lanes:
                name = ready.pop(0)
                todo.remove(name)
                log = open(STATE / "logs" / f"{name}.log", "w")  # closed when the job ends
                log.write(f"$ {jobs[name]['run']}\n")
                log.flush()
                proc = subprocess.Popen(["/bin/bash", "-c", jobs[name]["run"]], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                running[name] = (proc, time.time(), log)
                write_running(running)
                print(f"start  {name}", flush=True)
        elif not running:
            break
        time.sleep(2)


if __name__ == "__main__":
    main()
