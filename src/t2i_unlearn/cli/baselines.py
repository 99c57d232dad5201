"""CLI commands of the baselines: ``train esd``, ``train uce``, ``train sld``.

    t2i-unlearn train esd --model M --concept C --out O [--config F] [--train-method noxattn --iterations N ...]
    t2i-unlearn train uce --model M --concept C --out O [--config F] [--guide TEXT --preserve TEXT ...]
    t2i-unlearn train sld --model M --concept C --out O [--preset MEDIUM] [--safety-concept TEXT]

Each reads the same concept specs as DUO and writes one folder that ``generate``, ``eval`` and
``export``-style loading take as ``--lora``. Each field of the method's config dataclass is a flag
(:mod:`t2i_unlearn.cli.config_flags`); flags override the config file (or preset), which overrides
the defaults (the authors' settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from t2i_unlearn.cli.config_flags import ResultOverwriteFlag, TrainDeviceFlag, config_flags
from t2i_unlearn.methods.esd_config import ESDConfig
from t2i_unlearn.methods.sld_config import SLDConfig
from t2i_unlearn.methods.uce_config import UCEConfig
from t2i_unlearn.utils.validate import nonempty_path

_MODEL = "toy, toy:quick, a pipeline directory or a hub id (SD 1.x/2.x)."
_CONCEPT = "Concept preset (nudity, violence, toy_striped ...) or YAML file; its prompts are the ones erased."


def _run(
    name: str, config_class: type, model: str, concept: str, out: Path, config: str | None, overrides: dict[str, Any], overwrite: bool, device: str | None
) -> None:
    """Check the settings and the concept (light), then train (imports torch)."""
    from t2i_unlearn.concepts import load_concept
    from t2i_unlearn.methods.config import load_method_config
    from t2i_unlearn.utils.validate import check_device, check_model_arg, check_not_empty

    check_not_empty(config, "--config")
    check_not_empty(concept, "--concept")
    check_device(device)
    cfg = load_method_config(config_class, name, config, overrides)
    spec = load_concept(concept)
    check_model_arg(model)
    from t2i_unlearn.methods import check_output, get_method

    check_output(name, out, overwrite)  # before get_method imports torch
    outs = get_method(name).train(model, spec, out, cfg, overwrite=overwrite, device=device, progress=True, command=f"t2i-unlearn train {name}")
    for o in outs:
        typer.echo(f"wrote {o}")
    typer.echo(f"use it with: t2i-unlearn eval --model {model} --lora {outs[0]} --suite SUITE --out RUN")


@config_flags(ESDConfig, panel="ESD settings (override --config)")
def esd_cmd(
    model: Annotated[str, typer.Option(help=_MODEL)],
    concept: Annotated[str, typer.Option(help=_CONCEPT)],
    out: Annotated[
        Path, typer.Option(parser=nonempty_path("--out"), help="Output folder (LoRA for xattn/selfattn, weight delta otherwise; card and manifest).")
    ],
    config: Annotated[str | None, typer.Option(help="ESD config YAML or preset (toy, nudity).")] = None,
    overwrite: ResultOverwriteFlag = False,
    device: TrainDeviceFlag = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """ESD: fine-tune a parameter group so the concept prompt predicts negative guidance away from it."""
    _run("esd", ESDConfig, model, concept, out, config, overrides, overwrite, device)


@config_flags(UCEConfig, panel="UCE settings (override --config)")
def uce_cmd(
    model: Annotated[str, typer.Option(help=_MODEL)],
    concept: Annotated[str, typer.Option(help=_CONCEPT)],
    out: Annotated[Path, typer.Option(parser=nonempty_path("--out"), help="Output folder (exact LoRA on attn2.to_k/to_v; card and manifest).")],
    config: Annotated[str | None, typer.Option(help="UCE config YAML or preset (toy).")] = None,
    overwrite: ResultOverwriteFlag = False,
    device: TrainDeviceFlag = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """UCE: closed-form edit of the cross-attention key/value projections, erasing the concept and preserving others."""
    _run("uce", UCEConfig, model, concept, out, config, overrides, overwrite, device)


@config_flags(SLDConfig, panel="SLD settings (override --config)")
def sld_cmd(
    model: Annotated[str, typer.Option(help=_MODEL)],
    concept: Annotated[str, typer.Option(help=_CONCEPT)],
    out: Annotated[Path, typer.Option(parser=nonempty_path("--out"), help="Output folder (sld_config.json, card and manifest).")],
    config: Annotated[str | None, typer.Option(help="SLD config YAML or preset (toy).")] = None,
    overwrite: ResultOverwriteFlag = False,
    *,
    overrides: dict[str, Any],
) -> None:
    """SLD: record safe-latent-diffusion settings (nothing is trained; they apply at sampling time)."""
    _run("sld", SLDConfig, model, concept, out, config, overrides, overwrite, "cpu")
