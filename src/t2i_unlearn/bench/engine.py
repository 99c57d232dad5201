"""The bench engine: run a :class:`~t2i_unlearn.bench.plan.BenchPlan` as cached stages in one folder.

Stages, in order (each one the package's own API, each writing one artifact folder under ``out``)::

    pairs                  data/pairs.generate_pairs       (only if a method takes pair data)
    method:<m>             the method's registered train()  -> methods/<m>/
    attack:<m>:<a>         attacks.run_attack               -> attacks/<m>/<a>/
    eval:<m>               evaluation.evaluate              -> eval/<m>/ (plain prompts + every attack set of <m>)
    then results.json, results.md, dsr_vs_preservation.png, report.html (+ picture.png when the suite asks)

A stage is cached by its inputs: its record ``.bench/stages/<stage>.json`` holds a key (hash of its
settings and of its upstream stages' keys); a stage whose record has the same key and whose folder is
complete is reused without loading anything, and one whose key changed (a preset edited or upgraded since)
is run again from an emptied folder, with the stages downstream of it. Every artifact is written atomically by the API that
makes it (and resumed in place by those that can: pair data, DUO), so ``kill -9`` and the same command
again continues where it stopped. Images go through the shared image cache (``out/cache`` unless told
otherwise): the base model's images are drawn once for every row.

Several processes (``accelerate launch --num_processes N -m t2i_unlearn.cli bench ...``): the pair,
training and attack stages are dealt round-robin to the processes, each run single-process (a stage
waits for the records of the stages it needs); then every process joins each evaluation, which splits
its images; the main process writes the results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2i_unlearn.bench.plan import PLAIN, STATE, BenchPlan, bench_request, check_output, plan_dict
from t2i_unlearn.errors import UserError
from t2i_unlearn.utils.io import atomic_write_json, command_line, hardware, package_versions

logger = logging.getLogger(__name__)

RESULTS_FORMAT = "t2i_unlearn.bench_results"
_DIST_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE")
WAIT_POLL_S = 1.0


@dataclass
class Stage:
    """One cached step of a bench run."""

    id: str
    kind: str
    key: str
    folder: Path
    deps: list[str] = field(default_factory=list)
    run: Callable[[], dict[str, Any]] | None = None


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _jsonable(config: Any) -> Any:
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return config


def _accepted(func: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """The keyword arguments ``func`` takes (all of them when it has ``**kwargs`` that reach further down)."""
    import inspect

    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        target = getattr(func, "__wrapped__", None)
        return kwargs if target is None else _accepted(target, **kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def _slug(stage_id: str) -> str:
    return stage_id.replace(":", "__")


def _rank_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def _single_process() -> Iterator[None]:
    """Hide a multi-process launch from the APIs a stage calls, so that each stage runs in this process alone."""
    saved = {k: os.environ.pop(k) for k in _DIST_VARS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _reset_accelerate() -> None:
    """Forget accelerate's process state made by single-process stages, so evaluation sees the real launch."""
    import sys

    if "accelerate" in sys.modules:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)


class BenchRun:
    """The stages of one plan in one folder; :meth:`run` executes (or reuses) them and writes the results."""

    def __init__(self, plan: BenchPlan, out: Path, cache_dir: Path, progress: bool, echo: Callable[[str], None]):
        self.plan = plan
        self.out = out
        self.cache_dir = cache_dir
        self.progress = progress
        self.echo = echo
        self.state = out / STATE / "stages"
        self.rank, self.world = _rank_world()

    # ---- stages --------------------------------------------------------------------------------

    def record_path(self, stage: Stage) -> Path:
        """Where a stage's record lives."""
        return self.state / f"{_slug(stage.id)}.json"

    def record(self, stage_id: str) -> dict[str, Any] | None:
        """A stage's record, or None."""
        try:
            return json.loads((self.state / f"{_slug(stage_id)}.json").read_text())
        except (OSError, ValueError):
            return None

    def is_done(self, stage: Stage) -> bool:
        """Whether ``stage`` finished before with the same key and its folder is still complete."""
        rec = self.record(stage.id)
        if not (rec and rec.get("key") == stage.key and rec.get("status") == "done"):
            return False
        folders = [Path(p) for p in rec.get("result", {}).get("artifacts", [])] or [stage.folder]
        return all((f / "manifest.json").exists() for f in folders)

    def stages(self) -> list[Stage]:
        """Every stage of the plan, in dependency order."""
        from t2i_unlearn.attacks import AttackBudget

        plan, out = self.plan, self.out
        stages: list[Stage] = []
        pairs_key = None
        if any(m.entry.data == "pairs" for m in plan.methods):
            pairs = plan.suite.pairs
            pairs_key = _hash(["pairs", plan.model, plan.concept.model_dump(mode="json"), pairs.model_dump()])
            folder = out / "pairs"

            def run_pairs(folder: Path = folder) -> dict[str, Any]:
                from t2i_unlearn.data.pairs import generate_pairs

                stats = generate_pairs(
                    plan.model,
                    plan.concept,
                    folder,
                    num_pairs=pairs.num_pairs,
                    seed=pairs.seed,
                    device=plan.device,
                    batch_size=pairs.batch_size,
                    progress=self.progress,
                    command="t2i-unlearn bench (pairs)",
                )
                return {"pairs": stats.get("pairs")}

            stages.append(Stage("pairs", "pairs", pairs_key, folder, run=run_pairs))
        method_keys: dict[str, str] = {}
        for m in plan.methods:
            if m.entry.is_base:
                method_keys[m.name] = _hash(["base", plan.model])
                continue
            deps = ["pairs"] if m.entry.data == "pairs" else []
            key = _hash(
                ["method", plan.model, m.entry.registry_name, _jsonable(m.config), plan.concept.model_dump(mode="json"), pairs_key if deps else None]
            )
            method_keys[m.name] = key
            folder = out / "methods" / m.name

            def run_method(m: Any = m, folder: Path = folder) -> dict[str, Any]:
                from t2i_unlearn.methods import get_method

                method = get_method(m.entry.registry_name)
                data = out / "pairs" if m.entry.data == "pairs" else plan.concept
                kwargs = _accepted(method.train, progress=self.progress, command=f"t2i-unlearn bench (method {m.name})", device=plan.device)
                paths = method.train(plan.model, data, folder, m.config, **kwargs)
                return {"artifacts": [str(Path(p).resolve()) for p in paths]}

            stages.append(Stage(f"method:{m.name}", "method", key, folder, deps, run_method))
        for m in plan.methods:
            for a in plan.attacks:
                deps = [] if m.entry.is_base else [f"method:{m.name}"]
                key = _hash(["attack", method_keys[m.name], a.entry.model_dump(mode="json"), a.sources, plan.concept.model_dump(mode="json")])
                folder = out / "attacks" / m.name / a.name

                def run_attack_stage(m: Any = m, a: Any = a, folder: Path = folder) -> dict[str, Any]:
                    from t2i_unlearn.attacks import run_attack

                    path = run_attack(
                        a.entry.registry_name,
                        plan.model,
                        plan.concept,
                        folder,
                        lora=self.artifacts(m.name),
                        budget=AttackBudget(**a.entry.budget.model_dump()),
                        seed=a.entry.seed,
                        settings=dict(a.entry.settings),
                        prompts=a.sources,
                        images_per_prompt=a.entry.images_per_prompt,
                        device=plan.device,
                        progress=self.progress,
                        command=f"t2i-unlearn bench (attack {a.name} on {m.name})",
                    )
                    manifest = json.loads((Path(path).parent / "manifest.json").read_text())
                    return {"attack_set": str(Path(path).resolve()), "success": manifest.get("success"), "budget_used": manifest.get("budget_used")}

                stages.append(Stage(f"attack:{m.name}:{a.name}", "attack", key, folder, deps, run_attack_stage))
        ev = plan.suite.eval
        for m in plan.methods:
            deps = ([] if m.entry.is_base else [f"method:{m.name}"]) + [f"attack:{m.name}:{a.name}" for a in plan.attacks]
            upstream = [s.key for s in stages if s.id in deps]
            key = _hash(
                [
                    "eval",
                    method_keys[m.name],
                    upstream,
                    plan.eval_suite.model_dump(mode="json"),
                    ev.model_dump(),
                    bench_request(plan)["prompt_files"],
                    _replay_counts(plan),
                ]
            )
            folder = out / "eval" / m.name
            stages.append(Stage(f"eval:{m.name}", "eval", key, folder, deps, lambda m=m, folder=folder: self.run_eval(m, folder)))
        return stages

    def artifacts(self, method: str) -> list[str]:
        """The artifact folders a method's stage wrote ([] for the base model)."""
        rec = self.record(f"method:{method}")
        return list(rec["result"]["artifacts"]) if rec else []

    def run_eval(self, m: Any, folder: Path) -> dict[str, Any]:
        """Evaluate one row: the suite's prompt sets and every attack set made against it."""
        from t2i_unlearn.evaluation import evaluate

        plan, ev = self.plan, self.plan.suite.eval
        attack_sets = [self.record(f"attack:{m.name}:{a.name}")["result"]["attack_set"] for a in plan.attacks]
        results = evaluate(
            plan.model,
            plan.suite.path(ev.suite),
            folder,
            lora=self.artifacts(m.name),
            cache_dir=self.cache_dir,
            device=plan.device,
            prompt_files=plan.prompt_files or None,
            attacks=attack_sets,
            attack_images_per_prompt=_replay_counts(plan),
            limit=ev.limit,
            steps=ev.steps,
            batch_size=ev.batch_size,
            clip_model=ev.clip_model,
            label=m.entry.display,
            progress=self.progress,
            overwrite=True,
        )
        return {"role": results.get("role", "main")}

    def _wait(self, deps: list[str]) -> None:
        """Block until every stage in ``deps`` is done with its current key (another process may be running it)."""
        for dep in deps:
            key = self.keys[dep]
            while True:
                rec = self.record(dep)
                if rec and rec.get("key") == key and rec.get("status") == "done":
                    break
                if rec and rec.get("key") == key and rec.get("status") == "failed" and rec.get("time", 0) >= self.started:
                    raise UserError(f"stage {dep} failed in another process: {rec.get('error')}")
                time.sleep(WAIT_POLL_S)

    def _execute(self, stage: Stage, index: int, total: int, write: bool = True) -> None:
        label = f"[{index}/{total}] {stage.id}"
        if self.is_done(stage):
            if write:
                self._mark(stage, "done", self.record(stage.id)["result"], 0.0, reused=True)
            self.echo(f"{label}: reused")
            return
        rec = self.record(stage.id)
        if write and stage.kind != "eval" and rec and rec.get("key") != stage.key and stage.folder.exists():
            # made with other inputs (a preset or the model changed since): the folder is stale, and the API
            # that writes it would refuse it; start the stage over, and record its new key first so that an
            # interruption from here on resumes the new run instead of deleting it again
            try:
                shutil.rmtree(stage.folder)
            except OSError as exc:
                error = f"{label}: its inputs changed since the last run, and its folder {stage.folder} cannot be emptied: {exc}"
                self._mark(stage, "failed", {}, 0.0, error=error)  # under the new key: processes waiting on it stop too
                raise UserError(error) from exc
            self._mark(stage, "running", {}, 0.0)
            self.echo(f"{label}: its inputs changed since the last run; emptied {stage.folder} and starting it over")
        self.echo(f"{label}: running")
        t0 = time.perf_counter()
        try:
            assert stage.run is not None
            result = stage.run()
        except BaseException as exc:
            if write:
                self._mark(stage, "failed", {}, time.perf_counter() - t0, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise
        seconds = time.perf_counter() - t0
        if write:
            self._mark(stage, "done", result, seconds)
        self.echo(f"{label}: done in {seconds:.0f} s")

    def _mark(self, stage: Stage, status: str, result: dict[str, Any], seconds: float, reused: bool = False, error: str | None = None) -> None:
        body = {
            "stage": stage.id,
            "key": stage.key,
            "status": status,
            "result": result,
            "seconds": round(seconds, 1),
            "time": time.time(),
            "reused": reused,
            "process": self.rank,
        }
        if error:
            body["error"] = error
        atomic_write_json(self.record_path(stage), body)

    # ---- the run -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any] | None:
        """Run or reuse every stage; on the main process write and return the results (None elsewhere)."""
        self.started = time.time() - 5.0
        stages = self.stages()
        self.keys = {s.id: s.key for s in stages}
        total = len(stages)
        by_id = {s.id: i + 1 for i, s in enumerate(stages)}
        prep = [s for s in stages if s.kind != "eval"]
        evals = [s for s in stages if s.kind == "eval"]
        t_start = time.perf_counter()
        mine = prep[self.rank :: self.world] if self.world > 1 else prep
        with _single_process():
            for stage in mine:
                self._wait(stage.deps)
                self._execute(stage, by_id[stage.id], total)
        if self.world > 1:
            self._wait([s.id for s in prep])
            _reset_accelerate()
            from accelerate import PartialState

            PartialState(cpu=True).wait_for_everyone()
        todo = [s for s in evals if not self.is_done(s)]
        for stage in evals:
            if stage in todo or self.rank == 0:
                self._execute(stage, by_id[stage.id], total, write=self.rank == 0)
        if self.world > 1:
            from accelerate import PartialState

            PartialState(cpu=True).wait_for_everyone()
            if self.rank != 0:
                return None
        results = collect_results(self, stages)
        records = [self.record(s.id) or {} for s in stages]  # every process's stages, with their times
        results["run"] = {
            "stages": [
                {"stage": s.id, "status": "reused" if r.get("reused") else "ran", "seconds": r.get("seconds"), "process": r.get("process", 0)}
                for s, r in zip(stages, records, strict=True)
            ],
            "processes": self.world,
            "seconds": round(time.perf_counter() - t_start, 1),
            "command": command_line(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": {**package_versions(), "python": sys.version.split()[0]},
            "platform": platform.platform(),
            "hardware": hardware(),
        }
        write_outputs(self, results)
        return results


def _replay_counts(plan: BenchPlan) -> list[int]:
    """Images per attack prompt when a row's evaluation replays each attack set: as many seeds as the attack judged its own success at."""
    return [a.entry.images_per_prompt for a in plan.attacks]


def _pooled_dsr(entries: list[dict[str, Any]]) -> dict[str, Any]:
    from t2i_unlearn.metrics import wilson_interval

    n = sum(e["n"] for e in entries)
    flagged = sum(e["flagged"] for e in entries)
    lo, hi = wilson_interval(n - flagged, n)
    return {"dsr": (n - flagged) / n if n else None, "n": n, "flagged": flagged, "ci95": [lo, hi]}


def collect_results(run: BenchRun, stages: list[Stage]) -> dict[str, Any]:
    """``results.json``: per cell DSR with its Wilson interval; per method prior preservation, drift, FID, attribute accuracy."""
    plan = run.plan
    cells: dict[str, dict[str, Any]] = {}
    methods: dict[str, Any] = {}
    for m in plan.methods:
        ev = json.loads((run.out / "eval" / m.name / "results.json").read_text())
        variant = "unlearned" if "unlearned" in ev["variants"] else "model"
        summary = ev["summary"][variant]
        sets = ev["prompt_sets"]
        plain = [
            s["results"][variant]["dsr"] for name, s in sets.items() if not name.startswith("attack:") and "dsr" in s["results"].get(variant, {})
        ]
        row: dict[str, Any] = {PLAIN: _pooled_dsr(plain)}
        by_source = {str(Path(s["source"]).resolve()): s for name, s in sets.items() if name.startswith("attack:")}
        for a in plan.attacks:
            rec = run.record(f"attack:{m.name}:{a.name}")["result"]
            entry = by_source[str(Path(rec["attack_set"]).resolve())]
            cell = _pooled_dsr([entry["results"][variant]["dsr"]])
            success = rec.get("success") or {}
            cell["attack_success_on_search"] = success.get("success_rate")
            cell["attack_success_fresh_seeds"] = success.get("success_rate_fresh_seeds")
            row[a.name] = cell
        cells[m.name] = row
        base = variant == "model"
        methods[m.name] = {
            "label": m.entry.display,
            "method": m.entry.registry_name,
            "config": _jsonable(m.config) if m.config is not None else None,
            "prior_preservation": 1.0 if base else summary.get("prior_preservation"),
            "dotted_drift_mean": 0.0 if base else summary.get("close_drift_mean"),
            "dotted_drift_std": 0.0 if base else summary.get("close_drift_std"),
            "fid": summary.get("fid"),
            "attribute_accuracy": summary.get("clip_score"),
            "attribute_metric": ev.get("metric_backends", {}).get("clip_score", {}).get("metric"),
            "eval_run": str((run.out / "eval" / m.name).resolve()),
        }
    plan_json = plan_dict(plan)
    return {
        "format": RESULTS_FORMAT,
        "version": 1,
        "suite": plan.suite.name,
        "model": plan.model,
        "concept": plan.concept.name,
        "eval_suite": plan.eval_suite.name,
        "judge": plan_json["judge"],
        "columns": plan.columns,
        "column_labels": {PLAIN: "plain prompts", **{a.name: a.entry.display for a in plan.attacks}},
        "methods": methods,
        "cells": cells,
        "skipped": plan.skipped,
        "plan": {k: plan_json[k] for k in ("methods", "attacks", "prompt_sets")},
    }


def write_outputs(run: BenchRun, results: dict[str, Any]) -> None:
    """results.json, results.md, the scatter, the before/after picture (when the suite asks) and report.html."""
    from t2i_unlearn.report.bench import write_bench_report

    picture = None
    if run.plan.suite.picture is not None:
        from t2i_unlearn.bench.picture import write_picture

        picture = write_picture(run.plan, results, run.out, run.cache_dir)
    grids = {results["methods"][m]["label"]: sorted((run.out / "eval" / m).glob("grid_*.png")) for m in results["methods"]}
    write_bench_report(results, run.out, grids, picture)


def run_bench(
    plan: BenchPlan,
    out: str | Path,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """Run ``plan`` in ``out`` (reusing every finished stage); return the results (None on non-main processes).

    ``out`` follows the output rule (:func:`check_output`); ``overwrite`` starts over. ``cache_dir``:
    the image cache (default ``out/cache``). ``echo`` receives one line per stage (the CLI prints them).
    """
    from t2i_unlearn.utils.io import ensure_writable_dir

    rank, world = _rank_world()
    claim = check_output(plan, out, overwrite) if rank == 0 else None
    out = Path(out).expanduser()
    if claim is not None and claim.status == "replace":
        import shutil

        shutil.rmtree(out)
    if rank == 0:
        ensure_writable_dir(out / STATE / "stages")
        atomic_write_json(out / STATE / "request.json", bench_request(plan))
    elif world > 1:
        while not (out / STATE / "request.json").exists():
            time.sleep(WAIT_POLL_S)
    run = BenchRun(plan, out, Path(cache_dir).expanduser() if cache_dir else out / "cache", progress, echo or (lambda line: logger.info("%s", line)))
    if rank != 0:
        run.echo = lambda line: logger.info("%s", line)
    return run.run()
