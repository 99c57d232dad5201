"""CLI commands of evaluation: ``eval`` and ``report compare``.

    t2i-unlearn eval --model M [--lora L ...] --suite S --out R [--prompt-file SET=PATH ...] [--attack A.json ... [--attack-images-per-prompt N]]
    t2i-unlearn report compare R1 R2 ... --out C

Several processes: ``accelerate launch --num_processes N -m t2i_unlearn.cli eval ...`` deals the
batches of images to generate; the main process computes the metrics and writes the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from t2i_unlearn.cli.config_flags import key_values
from t2i_unlearn.utils.validate import nonempty_path

report_app = typer.Typer(no_args_is_help=True, help="Reports of evaluation runs.")


def eval_cmd(
    model: Annotated[str, typer.Option(help="toy, toy:quick, a pipeline directory or a hub id (the base model).")],
    suite: Annotated[str, typer.Option(help="Suite preset (toy_striped, toy_defaced, nudity, violence) or YAML file.")],
    out: Annotated[Path, typer.Option(parser=nonempty_path("--out"), help="Run folder: results.json, report.html, report.md, PNGs.")],
    lora: Annotated[list[str] | None, typer.Option(help="LoRA folder or .safetensors file (repeat); without one the model itself is evaluated.")] = None,
    lora_weight: Annotated[list[float] | None, typer.Option(help="Weight per LoRA (default 1).")] = None,
    prompt_file: Annotated[list[str] | None, typer.Option(help="SET=PATH: the file of a prompt set (required for sets with file: null).")] = None,
    attack: Annotated[list[str] | None, typer.Option(help="Attack-set JSON (repeat): DSR under each attack.")] = None,
    attack_images_per_prompt: Annotated[
        int, typer.Option(min=1, help="Images per attack prompt, at the prompt's seed + 0, 1, ... (the attack's own success uses its images_per_prompt).")
    ] = 1,
    cache: Annotated[Path | None, typer.Option(parser=nonempty_path("--cache"), help="Image cache folder (default: the user cache).")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N prompts of every set (quick looks).")] = None,
    steps: Annotated[int | None, typer.Option(help="Override the suite's sampling steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the suite's generation batch size.")] = None,
    clip_model: Annotated[str | None, typer.Option(help="CLIP model directory (or hub id) for the CLIP score.")] = None,
    judge_option: Annotated[list[str] | None, typer.Option(help="KEY=VALUE judge option (q16: clip_model=DIR, embeddings=FILE).")] = None,
    label: Annotated[str | None, typer.Option(help="Name in reports (default: the method in the adapter's manifest, else its folder's name).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds (another run, or any folder).")] = False,
) -> None:
    """Evaluate a model (and its unlearning LoRA against the base model) on a suite; write results.json and the report."""
    from t2i_unlearn.evaluation import evaluate

    results = evaluate(
        model,
        suite,
        out,
        lora=lora,
        lora_weights=lora_weight,
        cache_dir=cache,
        device=device,
        prompt_files=key_values(prompt_file, "--prompt-file"),
        attacks=attack,
        attack_images_per_prompt=attack_images_per_prompt,
        limit=limit,
        steps=steps,
        batch_size=batch_size,
        clip_model=clip_model,
        judge_options=key_values(judge_option, "--judge-option") or None,
        label=label,
        progress=True,
        overwrite=overwrite,
    )
    if results.get("role") == "worker":
        return
    for variant in results["variants"]:
        s = results["summary"][variant]
        parts = [f"{k} {100 * v:.1f}%" if k == "dsr" else f"{k} {v:.4f}" for k, v in s.items() if isinstance(v, float)]
        parts += [f"dsr under {a.removeprefix('attack:')} {100 * v:.1f}%" for a, v in (s.get("dsr_attacks") or {}).items()]
        typer.echo(f"{variant}: " + "; ".join(parts))
    typer.echo(f"report: {Path(out) / 'report.html'}\nresults: {Path(out) / 'results.json'}")


@report_app.command("compare")
def report_compare(
    runs: Annotated[list[Path], typer.Argument(parser=nonempty_path("a RUNS argument"), help="Run folders written by 'eval'.")],
    out: Annotated[Path, typer.Option(parser=nonempty_path("--out"), help="Folder for compare.html, compare.md and compare.png.")] = Path("compare"),
    label: Annotated[list[str] | None, typer.Option(help="Name per run (repeat, in order).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds (another comparison, or any folder).")] = False,
) -> None:
    """Put several evaluation runs in one table and one DSR-vs-prior-preservation plot."""
    from t2i_unlearn.report import compare_runs

    path = compare_runs([str(r) for r in runs], out, labels=label, overwrite=overwrite)
    typer.echo(f"wrote {path}")
