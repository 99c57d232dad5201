"""A bench plan: every method, attack, judge, prompt file and image count of a suite, resolved without torch.

:func:`make_plan` checks a suite against the registries and the files it names and returns a
:class:`BenchPlan`; the engine (:mod:`t2i_unlearn.bench.engine`) runs it, ``bench --dry-run`` only
writes it (``plan.json``) with the expected cost from the suite's ``costs`` block. Nothing here
imports torch or loads a model: every user mistake is one :class:`UserError` line first.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2i_unlearn.bench.spec import AttackEntry, BenchSuite, MethodEntry, load_bench_suite
from t2i_unlearn.errors import UserError
from t2i_unlearn.utils.io import DONE, OTHER, PARTIAL, OutputClaim, claim_output

logger = logging.getLogger(__name__)

PLAIN = "plain"
STATE = ".bench"  # the hidden folder of a bench run's own records


@dataclass
class MethodPlan:
    """A method row: its entry and its checked config (``None`` for the base model)."""

    entry: MethodEntry
    config: Any
    steps: int

    @property
    def name(self) -> str:
        """The row id."""
        return self.entry.name


@dataclass
class AttackPlan:
    """An attack column: its entry, checked config, budget and source prompts."""

    entry: AttackEntry
    config: Any
    sources: list[str]
    iterations: int

    @property
    def name(self) -> str:
        """The column id."""
        return self.entry.name


@dataclass
class BenchPlan:
    """A resolved bench: what runs, on which model, and how many images it draws."""

    suite: BenchSuite
    model: str
    device: str
    concept: Any  # ConceptSpec
    eval_suite: Any  # evaluation SuiteSpec
    prompt_files: dict[str, str]
    methods: list[MethodPlan]
    attacks: list[AttackPlan]
    skipped: list[str] = field(default_factory=list)
    set_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """``plain`` and every attack id, in order."""
        return [PLAIN, *(a.name for a in self.attacks)]

    def stage_count(self) -> int:
        """Stages of a run: pair data (if a method takes it), one per trained method, one per attack cell, one evaluation per method."""
        pairs = int(any(m.entry.data == "pairs" for m in self.methods))
        return pairs + sum(not m.entry.is_base for m in self.methods) + len(self.methods) * (len(self.attacks) + 1)

    def cells(self) -> list[tuple[str, str]]:
        """Every (method, column) pair."""
        return [(m.name, c) for m in self.methods for c in self.columns]


def _config_module(method: str) -> Any:
    """``t2i_unlearn.methods.<method>_config`` when it exists (config modules import no torch), else None."""
    try:
        return importlib.import_module(f"t2i_unlearn.methods.{method}_config")
    except ModuleNotFoundError:
        return None


def resolve_method(entry: MethodEntry, suite: BenchSuite, light: bool) -> Any:
    """The checked config of a method entry; :class:`UserError` for an unknown method, preset or setting.

    The config is checked through the method's torch-free ``<method>_config`` module when it has one,
    so that every refusal of a run comes before torch loads. ``light`` (dry runs): never build the
    registry entry (that may import torch); without a config module, check only the preset.
    """
    from t2i_unlearn.methods import METHODS, get_method

    name = entry.registry_name
    if name not in METHODS:
        raise UserError(f"unknown method {name!r} (methods: {', '.join(sorted(METHODS))}; base for the model itself)")
    config = suite.path(entry.config) if entry.config else None
    module = _config_module(name)
    if module is not None and hasattr(module, "load_config"):
        return module.load_config(config, dict(entry.settings))
    if light:
        from t2i_unlearn.methods.config import PRESETS

        if config and not Path(config).exists() and not (PRESETS / f"{name}_{config}.yaml").exists():
            raise UserError(f"no {name} config file or preset {config!r}")
        return {"preset": config, **entry.settings}
    return get_method(name).load_config(config, dict(entry.settings))


def _steps(config: Any) -> int:
    """Training steps of a method config (``max_steps`` or ``iterations``; 0 for closed-form edits)."""
    for key in ("max_steps", "iterations"):
        value = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
        if isinstance(value, int):
            return value
    return 0


def _attack_iterations(entry: AttackEntry, config: Any) -> int:
    if entry.budget.iterations is not None:
        return entry.budget.iterations
    for key in ("generations", "steps", "iterations"):
        if hasattr(config, key):
            return int(getattr(config, key))
    return 0


def make_plan(
    suite: str | Path,
    model: str | None = None,
    device: str | None = None,
    prompt_files: dict[str, str] | None = None,
    prompts_file: str | None = None,
    coco_file: str | None = None,
    light: bool = False,
) -> BenchPlan:
    """Resolve bench suite ``suite``: methods and attacks from their registries, the concept, the evaluation suite
    and its prompt files, and the images each prompt set draws.

    ``model``/``device`` override the suite's; ``prompt_files`` (``SET: PATH``), ``prompts_file`` (the
    suite's ``eval.target_set``) and ``coco_file`` (``eval.coco_set``) fill the evaluation suite's
    sets. Raises :class:`UserError` (one line) for anything unknown or missing. No torch.
    """
    from t2i_unlearn.attacks import ATTACKS, AttackBudget, attack_config
    from t2i_unlearn.concepts import load_concept
    from t2i_unlearn.evaluation.prompts import load_prompt_set
    from t2i_unlearn.evaluation.suites import load_suite, prompt_file_path
    from t2i_unlearn.methods import METHODS
    from t2i_unlearn.utils.validate import check_device, check_model_arg

    spec = load_bench_suite(suite)
    model = model or spec.model
    if not model:
        raise UserError(f"bench suite {spec.name} names no model: pass --model")
    check_model_arg(model)
    if device is None:
        check_device(spec.device, f"bench suite {suite}: device")
    concept = load_concept(spec.path(spec.concept))
    eval_suite = load_suite(spec.path(spec.eval.suite))
    sets = ", ".join(eval_suite.prompt_sets)
    for name in spec.picture.sets if spec.picture else []:
        if name not in eval_suite.prompt_sets:
            raise UserError(f"bench suite {suite}: picture set {name!r} is not a prompt set of evaluation suite {eval_suite.name} (sets: {sets})")
    files = {k: spec.path(v) for k, v in spec.eval.prompt_files.items()}
    for flag, set_name, value in (("--prompts-file", spec.eval.target_set, prompts_file), ("--coco-file", spec.eval.coco_set, coco_file)):
        if value is not None:
            if not set_name:
                raise UserError(f"bench suite {spec.name} has no {'target_set' if flag == '--prompts-file' else 'coco_set'} for {flag}")
            files[set_name] = value
    files.update(prompt_files or {})
    unknown = sorted(set(files) - set(eval_suite.prompt_sets))
    if unknown:
        raise UserError(
            f"prompt file for set {unknown[0]!r}, which evaluation suite {eval_suite.name} does not have (sets: {', '.join(eval_suite.prompt_sets)})"
        )
    set_sizes = {}
    for name, ps_spec in eval_suite.prompt_sets.items():
        path = prompt_file_path(eval_suite, name, files)
        if not path.is_file():
            raise UserError(f"prompt file {path} (set {name}) does not exist")
        cap = [x for x in (spec.eval.limit, ps_spec.limit) if x is not None]
        ps = load_prompt_set(path, name=name, fmt=ps_spec.format, categories=ps_spec.categories or None, limit=min(cap) if cap else None)
        set_sizes[name] = len(ps.items) * ps_spec.images_per_prompt

    methods, skipped = [], []
    for entry in spec.methods:
        if entry.is_base:
            methods.append(MethodPlan(entry, None, 0))
            continue
        if entry.optional and entry.registry_name not in METHODS:
            skipped.append(f"{entry.name}: method {entry.registry_name!r} is not registered (optional in the suite)")
            continue
        try:
            config = resolve_method(entry, spec, light)
        except UserError as exc:
            raise UserError(f"bench suite {suite}, method {entry.name}: {exc}") from exc
        methods.append(MethodPlan(entry, config, _steps(config)))
    attacks = []
    if spec.attacks and (not concept.prompts or concept.judge is None):
        raise UserError(f"concept {concept.name} has no prompts or no judge; attacks need both")
    for entry in spec.attacks:
        if entry.registry_name not in ATTACKS:
            raise UserError(f"bench suite {suite}: unknown attack {entry.registry_name!r} (attacks: {', '.join(sorted(ATTACKS))})")
        try:
            config = attack_config(entry.registry_name, entry.settings)
            AttackBudget(**entry.budget.model_dump())
        except UserError as exc:
            raise UserError(f"bench suite {suite}, attack {entry.name}: {exc}") from exc
        sources = list(entry.prompts) if entry.prompts else [p.safe for p in concept.prompts]
        attacks.append(AttackPlan(entry, config, sources, _attack_iterations(entry, config)))
    return BenchPlan(spec, model, device or spec.device or "cpu", concept, eval_suite, files, methods, attacks, skipped, set_sizes)


def _attack_images(a: AttackPlan) -> int:
    """Images an attack column draws per method: the prompts it writes, drawn at its seeds and at fresh seeds, then replayed."""
    cfg = a.config
    if hasattr(cfg, "attack_templates"):
        prompts = len(cfg.attack_templates) * cfg.images_per_template
        return prompts * a.entry.images_per_prompt * 3 + getattr(cfg, "num_images", 0)
    return len(a.sources) * a.entry.images_per_prompt * 3


def estimate(plan: BenchPlan) -> dict[str, Any]:
    """Cells, images and expected device hours from the suite's ``costs`` (figures and their source kept)."""
    costs = plan.suite.costs
    rows = []
    eval_images = sum(plan.set_sizes.values())
    pair_count = len(plan.concept.prompt_plan(plan.suite.pairs.num_pairs)) if plan.concept.prompts else 0
    needs_pairs = any(m.entry.data == "pairs" for m in plan.methods)
    total_s = pair_count * costs.per_pair_s if needs_pairs else 0.0
    base_images = eval_images  # the base model's images of every set, drawn once and shared through the image cache
    total_images = base_images
    for m in plan.methods:
        c = costs.methods.get(m.entry.registry_name)
        train_s = 0.0 if c is None else m.steps * (c.per_step_s or 0.0) + (c.per_run_s or 0.0)
        images = 0 if m.entry.is_base else eval_images
        attack_s = 0.0
        for a in plan.attacks:
            ac = costs.attacks.get(a.entry.registry_name)
            n = a.iterations * (len(a.sources) if ac is not None and ac.per_prompt else 1)
            attack_s += 0.0 if ac is None else n * (ac.per_step_s or 0.0) + (ac.per_run_s or 0.0)
            images += _attack_images(a)
        seconds = train_s + attack_s + images * costs.per_image_s
        total_s += seconds
        total_images += images
        rows.append({"method": m.name, "train_steps": m.steps, "train_s": train_s, "attack_s": attack_s, "images": images, "seconds": seconds})
    return {
        "cells": len(plan.cells()),
        "images": total_images,
        "eval_images_per_method": eval_images,
        "pairs": pair_count if needs_pairs else 0,
        "rows": rows,
        "seconds": total_s,
        "hours": total_s / 3600,
        "device": costs.device,
        "source": costs.source,
        "figures": costs.model_dump(),
    }


def _jsonable(config: Any) -> Any:
    if config is None or isinstance(config, dict):
        return config
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return str(config)


def plan_dict(plan: BenchPlan) -> dict[str, Any]:
    """``plan.json``: every resolved input, the cells and the cost estimate."""
    judge = plan.eval_suite.judge
    return {
        "format": "t2i_unlearn.bench_plan",
        "suite": plan.suite.name,
        "model": plan.model,
        "device": plan.device,
        "concept": plan.concept.name,
        "eval_suite": plan.eval_suite.name,
        "judge": judge.model_dump(mode="json"),
        "attack_judge": plan.concept.judge.model_dump(mode="json") if plan.concept.judge else None,
        "prompt_files": {name: str(Path(p).resolve()) for name, p in plan.prompt_files.items()},
        "prompt_sets": {name: {"images": n, "metrics": list(plan.eval_suite.prompt_sets[name].metrics)} for name, n in plan.set_sizes.items()},
        "methods": [
            {"name": m.name, "method": m.entry.registry_name, "label": m.entry.display, "config": _jsonable(m.config), "data": m.entry.data}
            for m in plan.methods
        ],
        "skipped": plan.skipped,
        "attacks": [
            {
                "name": a.name,
                "attack": a.entry.registry_name,
                "label": a.entry.display,
                "budget": a.entry.budget.model_dump(),
                "iterations": a.iterations,
                "config": _jsonable(a.config),
                "source_prompts": a.sources,
                "images_per_prompt": a.entry.images_per_prompt,
            }
            for a in plan.attacks
        ],
        "columns": plan.columns,
        "cells": [list(c) for c in plan.cells()],
        "estimate": estimate(plan),
    }


def format_plan(plan: BenchPlan) -> str:
    """The dry run's printed table: one row per method with its steps, images and expected hours."""
    est = estimate(plan)
    lines = [
        f"bench {plan.suite.name}: model {plan.model} on {plan.device}; concept {plan.concept.name}; eval suite {plan.eval_suite.name} "
        f"(judge {plan.eval_suite.judge.name}{'/' + plan.eval_suite.judge.preset if plan.eval_suite.judge.preset else ''})",
        "prompt sets: " + ", ".join(f"{k} {v} images" for k, v in plan.set_sizes.items()),
        f"columns: {', '.join(plan.columns)}",
        "",
        "| method | train steps | train h | attack h | images | total h |",
        "|---|---|---|---|---|---|",
    ]
    for r in est["rows"]:
        lines.append(
            f"| {r['method']} | {r['train_steps']} | {r['train_s'] / 3600:.2f} | {r['attack_s'] / 3600:.2f} | {r['images']} | {r['seconds'] / 3600:.2f} |"
        )
    lines.append("")
    lines.append(
        f"{est['cells']} cells, {est['images']} images (base images shared), {est['pairs']} pairs: about {est['hours']:.1f} hours on {est['device']}"
    )
    if est["source"]:
        lines.append(f"cost figures: {est['source']}")
    lines.extend(f"skipped: {s}" for s in plan.skipped)
    return "\n".join(lines)


def bench_request(plan: BenchPlan) -> dict[str, Any]:
    """What identifies a bench run (its folder is reused only for the same request)."""
    return {
        "suite": plan.suite.model_dump(mode="json", exclude={"source_dir", "costs"}),
        "model": plan.model,
        "device": plan.device,
        "prompt_files": {k: str(Path(v).expanduser().resolve()) for k, v in plan.prompt_files.items()},
    }


def _recogniser(request: dict[str, Any]) -> Callable[[Path], tuple[str, str]]:
    wanted = json.loads(json.dumps(request))

    def recognise(path: Path) -> tuple[str, str]:
        try:
            saved = json.loads((path / STATE / "request.json").read_text())
        except (OSError, ValueError):
            try:  # a folder where only a dry run has written its plan
                saved = json.loads((path / "plan.json").read_text())["request"]
            except (OSError, ValueError, KeyError, TypeError):
                return OTHER, "is not a bench run"
        if saved != wanted:
            return OTHER, "holds a bench run made with other settings"
        return (DONE if (path / "results.json").exists() else PARTIAL), ""

    return recognise


def check_output(plan: BenchPlan, out: str | Path, overwrite: bool = False, flag: str = "--overwrite") -> OutputClaim:
    """Claim ``out`` for ``plan`` (the output rule of :func:`~t2i_unlearn.utils.io.claim_output`), before torch loads.

    The same request finds its folder again and reuses (or continues) it; anything else non-empty is
    refused unless ``overwrite``; ``flag`` names it in the message (the demo's is ``--fresh``).
    """
    return claim_output(out, "a bench run", _recogniser(bench_request(plan)), overwrite, flag=flag)


def write_plan(plan: BenchPlan, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``plan.json`` into the bench folder ``out`` (the output rule: a folder of the same bench, or a new one)."""
    from t2i_unlearn.utils.io import atomic_write_json

    claim = check_output(plan, out, overwrite)
    body = {**plan_dict(plan), "request": bench_request(plan)}
    return atomic_write_json(claim.path / "plan.json", body)
