"""CLI commands of the bench: ``bench`` and ``demo``.

    t2i-unlearn bench --suite toy-full|nudity|demo|FILE.yaml [--out D] [--model M] [--device cuda]
        [--prompts-file P] [--coco-file C] [--prompt-file SET=PATH ...] [--cache DIR] [--dry-run] [--overwrite]
    t2i-unlearn demo [--out t2i_unlearn_demo] [--fresh]

Several processes: ``accelerate launch --num_processes N -m t2i_unlearn.cli bench ...`` deals the
training and attack stages to the processes and splits each evaluation's images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from t2i_unlearn.cli.config_flags import key_values
from t2i_unlearn.utils.validate import check_device, check_file, check_not_empty, nonempty_path

_SUITE = "Bench suite: demo, toy-full, nudity, or a YAML file (docs/bench.md)."


def _echo(line: str) -> None:
    """A stage line, flushed at once so that it lands in order with the progress bars (also when stdout is a file)."""
    import sys

    typer.echo(line)
    sys.stdout.flush()


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


def _finish(results: dict | None, out: Path) -> None:
    """Print the table and where the report is (main process only)."""
    if results is None:
        return
    from t2i_unlearn.report.bench import short_table

    typer.echo("")
    typer.echo(short_table(results))
    for line in results.get("skipped", []):
        typer.echo(f"skipped: {line}")
    picture = next(iter(sorted(out.glob("before_after*.png"))), None)
    if picture is not None:
        typer.echo(f"before/after picture: {picture}")
    typer.echo(f"report: {out / 'report.html'}\nresults: {out / 'results.json'} (table: {out / 'results.md'})")


def bench_cmd(
    suite: Annotated[str, typer.Option(help=_SUITE)],
    out: Annotated[
        Path | None,
        typer.Option(parser=nonempty_path("--out"), help="Bench folder (default: bench_runs/<suite>): stages, results.json, results.md, report.html."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model (default: the suite's): toy, toy:quick, a pipeline directory or a hub id.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: the suite's, else cpu).")] = None,
    prompts_file: Annotated[
        Path | None, typer.Option(parser=nonempty_path("--prompts-file"), help="The suite's target prompt set (e.g. the I2P CSV for nudity).")
    ] = None,
    coco_file: Annotated[Path | None, typer.Option(parser=nonempty_path("--coco-file"), help="MS-COCO captions file for the suite's coco set.")] = None,
    prompt_file: Annotated[list[str] | None, typer.Option(help="SET=PATH: the file of any prompt set of the evaluation suite (repeat).")] = None,
    cache: Annotated[Path | None, typer.Option(parser=nonempty_path("--cache"), help="Image cache folder (default: <out>/cache).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Resolve everything and write plan.json with the expected cost; load no model.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds (another bench run, or any folder) and start over.")] = False,
) -> None:
    """Run a bench suite: methods x attacks on one model, each cell cached and resumable; write results and the report."""
    from t2i_unlearn.bench.plan import check_output, make_plan

    check_not_empty(suite, "--suite")
    check_device(device)
    for flag, path in (("--prompts-file", prompts_file), ("--coco-file", coco_file)):
        if path is not None:
            check_file(path, flag)
    plan = make_plan(
        suite,
        model=model,
        device=device,
        prompt_files=key_values(prompt_file, "--prompt-file"),
        prompts_file=str(prompts_file) if prompts_file else None,
        coco_file=str(coco_file) if coco_file else None,
        light=dry_run,
    )
    out = out or Path("bench_runs") / plan.suite.name
    if cache is not None:
        from t2i_unlearn.utils.io import check_folder_location

        check_folder_location(cache, "--cache")  # the engine reaches it only at the first evaluation
    if dry_run:
        from t2i_unlearn.bench.plan import format_plan, write_plan

        path = write_plan(plan, out, overwrite)
        typer.echo(format_plan(plan))
        typer.echo(f"plan: {path}")
        return
    if _rank() == 0:
        check_output(plan, out, overwrite)  # every refusal before torch loads
    from t2i_unlearn.bench.engine import run_bench

    results = run_bench(plan, out, cache_dir=cache, overwrite=overwrite, progress=True, echo=_echo)
    _finish(results, out)


def demo(
    out: Annotated[Path, typer.Option(parser=nonempty_path("--out"), help="Folder of everything the demo makes (reused by the next run).")] = Path(
        "t2i_unlearn_demo"
    ),
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over: delete what --out holds and run every stage again.")] = False,
) -> None:
    """The main job on the shipped toy world: erase "striped" with DUO (ESD as baseline), attack, evaluate, report."""
    from t2i_unlearn.bench.plan import check_output, make_plan

    plan = make_plan("demo")
    if _rank() == 0:
        claim = check_output(plan, out, fresh, flag="--fresh")
        stages = plan.stage_count()
        state = "reusing finished stages" if claim.status in ("done", "partial") else "starting"
        typer.echo(f"demo: {plan.concept.name} on the toy world ({plan.model}); {stages} stages, {state}; folder {out}")
    from t2i_unlearn.bench.engine import run_bench

    results = run_bench(plan, out, overwrite=fresh, progress=True, echo=_echo)
    _finish(results, out)
