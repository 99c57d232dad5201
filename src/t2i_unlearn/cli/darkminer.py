"""CLI command of Dark Miner: ``train darkminer``.

    t2i-unlearn train darkminer --model M --concept C --out O [--config F] [--pool DIR] [--rounds N --threshold T ...]

Every DarkMinerConfig field is a flag (:mod:`t2i_unlearn.cli.config_flags`); a flag overrides the
config file (or preset), which overrides the defaults. The output loads like DUO's (``--lora O``) in
``generate``, ``eval`` and ``export``; ``O/attack_set/attack_set.json`` replays the mined embeddings
with ``eval --attack``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from t2i_unlearn.cli.config_flags import ResumeFlag, RunOverwriteFlag, TrainDeviceFlag, config_flags
from t2i_unlearn.errors import UserError
from t2i_unlearn.methods.darkminer_config import DarkMinerConfig, load_config
from t2i_unlearn.utils.validate import nonempty_path


@config_flags(DarkMinerConfig, panel="Dark Miner settings (override --config)")
def train_darkminer_cmd(
    model: Annotated[str, typer.Option(help="toy, toy:quick, a pipeline directory or a hub id (SD 1.x/2.x or SDXL).")],
    concept: Annotated[str, typer.Option(help="Concept preset (nudity, toy_striped, toy_circle ...) or YAML file: its unsafe prompts, judge and sampler.")],
    out: Annotated[
        Path, typer.Option(parser=nonempty_path("--out"), help="Output folder: LoRA, model card, manifest, mined embeddings, attack set, checkpoints.")
    ],
    config: Annotated[str | None, typer.Option(help="Dark Miner config YAML or preset (toy, nudity).")] = None,
    pool: Annotated[
        Path | None,
        typer.Option(
            parser=nonempty_path("--pool"),
            help="Concept images to mine on: a 'data pairs' folder (its unsafe half) or an image folder. Default: drawn by the base model.",
        ),
    ] = None,
    resume: ResumeFlag = False,
    overwrite: RunOverwriteFlag = False,
    device: TrainDeviceFlag = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Dark Miner: rounds of mining an embedding that draws the concept, verifying it, and circumventing it with a LoRA."""
    from t2i_unlearn.concepts import load_concept
    from t2i_unlearn.utils.validate import check_device, check_model_arg, check_not_empty

    check_not_empty(config, "--config")
    check_not_empty(concept, "--concept")
    check_device(device)
    cfg = load_config(config, overrides)
    spec = load_concept(concept)
    if spec.sub_concepts:
        raise UserError(f"concept {spec.name} has sub-concepts ({', '.join(spec.sub_concepts)}); Dark Miner erases one at a time: name one ({spec.name}/<sub>)")
    check_model_arg(model)
    if pool is not None and not pool.expanduser().is_dir():
        raise UserError(f"pool {pool} is not a folder of images (or a 'data pairs' folder)")
    from t2i_unlearn.methods import check_output, get_method

    check_output("darkminer", out, overwrite)  # before anything imports torch
    from t2i_unlearn.methods.darkminer import check_family

    check_family(model)  # SD3: one line, before torch loads the model

    outs = get_method("darkminer").train(model, spec, out, cfg, pool=pool, resume=resume, overwrite=overwrite, device=device, progress=True)
    for o in outs:
        if not (o / "manifest.json").exists():
            typer.echo(f"stopped after stage {cfg.stop_after_stage}; run the same command again to continue ({o})")
            continue
        typer.echo(f"wrote {o / 'pytorch_lora_weights.safetensors'}")
        typer.echo(f"mined embeddings as an attack set: {o / 'attack_set' / 'attack_set.json'}")
    typer.echo(f"use it with: t2i-unlearn eval --model {model} --lora {outs[0]} --suite SUITE --out RUN")
