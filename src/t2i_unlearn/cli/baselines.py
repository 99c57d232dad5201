"""CLI commands of the baselines: ``train esd``, ``train uce``, ``train sld``.

    t2i-unlearn train esd --model M --concept C --out O [--config F] [--train-method noxattn --iterations N ...]
    t2i-unlearn train uce --model M --concept C --out O [--config F] [--guide TEXT --preserve TEXT ...]
    t2i-unlearn train sld --model M --concept C --out O [--preset MEDIUM] [--safety-concept TEXT]

Each reads the same concept specs as DUO and writes one folder that ``generate``, ``eval`` and
``export``-style loading take as ``--lora``. Flags override the config file (or preset), which
overrides the defaults (the authors' settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

_MODEL = "toy, toy:quick, a pipeline directory or a hub id (SD 1.x/2.x)."
_CONCEPT = "Concept preset (nudity, violence, toy_striped ...) or YAML file; its prompts are the ones erased."


def _run(name: str, model: str, concept: str, out: Path, config: str | None, overrides: dict[str, Any], overwrite: bool, device: str | None) -> None:
    from t2i_unlearn.concepts import load_concept
    from t2i_unlearn.utils.validate import check_model_arg

    check_model_arg(model)
    from t2i_unlearn.methods import get_method

    method = get_method(name)
    cfg = method.load_config(config, overrides)
    spec = load_concept(concept)
    outs = method.train(model, spec, out, cfg, overwrite=overwrite, device=device, progress=True, command=f"t2i-unlearn train {name}")
    for o in outs:
        typer.echo(f"wrote {o}")
    typer.echo(f"use it with: t2i-unlearn eval --model {model} --lora {outs[0]} --suite SUITE --out RUN")


def esd_cmd(
    model: Annotated[str, typer.Option(help=_MODEL)],
    concept: Annotated[str, typer.Option(help=_CONCEPT)],
    out: Annotated[Path, typer.Option(help="Output folder (LoRA for xattn/selfattn, weight delta otherwise; card and manifest).")],
    config: Annotated[str | None, typer.Option(help="ESD config YAML or preset (toy, nudity).")] = None,
    train_method: Annotated[str | None, typer.Option(help="Parameter group: noxattn (ESD-u), xattn (ESD-x), selfattn, full.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Optimiser steps.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    negative_guidance: Annotated[float | None, typer.Option(help="eta of the negative guidance target.")] = None,
    ddim_steps: Annotated[int | None, typer.Option(help="DDIM schedule length that x_t is sampled on.")] = None,
    sample_guidance: Annotated[float | None, typer.Option(help="CFG scale while sampling x_t.")] = None,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="Concept prompt to erase (repeat; default: the spec's unsafe prompts).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every draw.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds (another result, or any folder).")] = False,
    device: Annotated[str | None, typer.Option(help="cpu to force CPU (default: GPU when available).")] = None,
) -> None:
    """ESD: fine-tune a parameter group so the concept prompt predicts negative guidance away from it."""
    overrides = {
        "train_method": train_method,
        "iterations": iterations,
        "lr": lr,
        "negative_guidance": negative_guidance,
        "ddim_steps": ddim_steps,
        "sample_guidance": sample_guidance,
        "prompts": prompt or None,
        "seed": seed,
    }
    _run("esd", model, concept, out, config, overrides, overwrite, device)


def uce_cmd(
    model: Annotated[str, typer.Option(help=_MODEL)],
    concept: Annotated[str, typer.Option(help=_CONCEPT)],
    out: Annotated[Path, typer.Option(help="Output folder (exact LoRA on attn2.to_k/to_v; card and manifest).")],
    config: Annotated[str | None, typer.Option(help="UCE config YAML or preset (toy).")] = None,
    erase: Annotated[list[str] | None, typer.Option("--erase", help="Prompt to erase (repeat; default: the spec's unsafe prompts).")] = None,
    guide: Annotated[list[str] | None, typer.Option("--guide", help="Guide prompt (one per erased prompt, or one for all).")] = None,
    preserve: Annotated[list[str] | None, typer.Option("--preserve", help="Prompt to preserve (repeat; default: the spec's safe prompts).")] = None,
    erase_scale: Annotated[float | None, typer.Option(help="Weight of the erase terms.")] = None,
    preserve_scale: Annotated[float | None, typer.Option(help="Weight of the preserve terms.")] = None,
    lamb: Annotated[float | None, typer.Option(help="lambda: weight of staying close to the original weights.")] = None,
    tokens: Annotated[str | None, typer.Option(help="last (last word token) or last_to_end (it and every later position).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds (another result, or any folder).")] = False,
    device: Annotated[str | None, typer.Option(help="cpu to force CPU (default: GPU when available).")] = None,
) -> None:
    """UCE: closed-form edit of the cross-attention key/value projections, erasing the concept and preserving others."""
    overrides = {
        "erase_prompts": erase or None,
        "guide_prompts": guide or None,
        "preserve_prompts": preserve or None,
        "erase_scale": erase_scale,
        "preserve_scale": preserve_scale,
        "lamb": lamb,
        "tokens": tokens,
    }
    _run("uce", model, concept, out, config, overrides, overwrite, device)


def sld_cmd(
    model: Annotated[str, typer.Option(help=_MODEL)],
    concept: Annotated[str, typer.Option(help=_CONCEPT)],
    out: Annotated[Path, typer.Option(help="Output folder (sld_config.json, card and manifest).")],
    config: Annotated[str | None, typer.Option(help="SLD config YAML or preset (toy).")] = None,
    preset: Annotated[str | None, typer.Option(help="WEAK, MEDIUM, STRONG or MAX (diffusers' SafetyConfig).")] = None,
    safety_concept: Annotated[str | None, typer.Option(help="Text to steer away from (default: diffusers' I2P categories).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds (another result, or any folder).")] = False,
) -> None:
    """SLD: record safe-latent-diffusion settings (nothing is trained; they apply at sampling time)."""
    _run("sld", model, concept, out, config, {"preset": preset, "safety_concept": safety_concept}, overwrite, "cpu")
