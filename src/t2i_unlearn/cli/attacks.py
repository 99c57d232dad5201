"""CLI command of the attacks: ``t2i-unlearn attack NAME``.

    t2i-unlearn attack ring_a_bell --model M [--lora L] --concept C --out A [--iterations N --queries Q --time S] [--seed S]

Writes ``A/attack_set.json`` (+ ``embeddings.safetensors`` for Concept Inversion) and
``A/manifest.json``; ``t2i-unlearn eval --attack A/attack_set.json`` replays the set on any model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from t2i_unlearn.errors import UserError
from t2i_unlearn.utils.validate import nonempty_path


def _parse_settings(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set takes KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def attack_cmd(
    name: Annotated[str, typer.Argument(help="ring_a_bell, concept_inversion, unlearndiff or p4d.")],
    model: Annotated[str, typer.Option(help="Attacked model: toy, toy:quick, a pipeline directory or a hub id (SD 1.x/2.x).")],
    concept: Annotated[str, typer.Option(help="Concept preset (nudity, toy_striped ...) or YAML file: its prompt pairs and judge.")],
    out: Annotated[Path, typer.Option(parser=nonempty_path("--out"), help="Output folder (attack_set.json, manifest.json, embeddings).")],
    lora: Annotated[list[str] | None, typer.Option(help="Unlearning adapter of the attacked model (repeat to combine).")] = None,
    base_model: Annotated[str | None, typer.Option(help="Unconstrained model for concept images / P4D targets (default: --model without --lora).")] = None,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="Source prompt (repeat; default: the concept's safe prompts).")] = None,
    iterations: Annotated[int | None, typer.Option(help="Budget: optimisation steps per search (default: the attack's setting).")] = None,
    queries: Annotated[int | None, typer.Option(help="Budget: model evaluations in the whole run.")] = None,
    time: Annotated[float | None, typer.Option("--time", help="Budget: seconds of search in the whole run.")] = None,
    setting: Annotated[list[str] | None, typer.Option("--set", help="Attack setting KEY=VALUE (repeat; lists as a|b|c).")] = None,
    images_per_prompt: Annotated[int, typer.Option(help="Images per attack prompt when measuring the success rate.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the search and of the attack prompts' images.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps ...")] = "cpu",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds (another attack set, or any folder).")] = False,
) -> None:
    """Search adversarial prompts that bring the concept back; write a replayable attack set."""
    from t2i_unlearn.attacks import AttackBudget, check_attack
    from t2i_unlearn.utils.validate import check_device

    check_device(device)
    budget = AttackBudget(iterations=iterations, queries=queries, time_s=time)
    request = {
        "lora": lora,
        "budget": budget,
        "seed": seed,
        "settings": _parse_settings(setting),
        "prompts": prompt,
        "images_per_prompt": images_per_prompt,
        "base_model": base_model,
        "overwrite": overwrite,
    }
    check_attack(name, model, concept, out, **request)  # every input, before torch is imported

    from t2i_unlearn.attacks import run_attack

    path = run_attack(name, model, concept, out, device=device, progress=True, command=f"t2i-unlearn attack {name}", **request)
    import json

    manifest = json.loads((path.parent / "manifest.json").read_text())
    used = manifest["budget_used"]
    s = manifest["success"]
    typer.echo(
        f"attack success rate on the attacked model: {manifest['attack_success_rate']:.1%} ({s['images']} images); "
        f"{s['success_rate_distinct']:.1%} of {s['distinct_images']} distinct images; "
        f"at fresh seeds {s['success_rate_fresh_seeds_distinct']:.1%} of {s['distinct_images_fresh_seeds']} distinct images"
    )
    typer.echo(f"used: {used['iterations']} iterations, {used['queries']} queries, {used['time_s']:.1f} s")
    typer.echo(f"wrote {path}\nreplay it with: t2i-unlearn eval --model MODEL [--lora L] --suite SUITE --attack {path} --out RUN")
