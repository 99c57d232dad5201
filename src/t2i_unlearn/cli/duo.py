"""CLI commands of the DUO flow: ``data pairs``, ``train duo``, ``export``.

    t2i-unlearn data pairs --model M --concept C --out D [--num-pairs N] [--seed S]
    t2i-unlearn train duo --model M --data D --out O [--config F] [--max-steps N --beta B ...]
    t2i-unlearn export --model M --lora O [--lora O2 ...] --out E

Every DUOConfig field is a flag (derived from the dataclass, see :mod:`t2i_unlearn.cli.config_flags`); a
flag overrides the config file (or preset), which overrides the defaults (the authors' nudity run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from t2i_unlearn.cli.config_flags import ResumeFlag, RunOverwriteFlag, TrainDeviceFlag, config_flags
from t2i_unlearn.errors import UserError
from t2i_unlearn.methods.duo_config import DUOConfig, load_config
from t2i_unlearn.utils.validate import nonempty_path

data_app = typer.Typer(no_args_is_help=True, help="Make training data.")


_DTYPES = ("fp32", "fp16", "bf16")


def _dtype(name: str) -> Any:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


@data_app.command("pairs")
def data_pairs(
    model: Annotated[str, typer.Option(help="toy, toy:quick, a pipeline directory or a hub id.")],
    concept: Annotated[str, typer.Option(help="Concept preset (nudity, violence, toy_striped ...), YAML file, or name/sub (violence/blood).")],
    out: Annotated[Path, typer.Option(parser=nonempty_path("--out"), help="Pair folder (one subfolder per sub-concept for composite concepts).")],
    num_pairs: Annotated[int | None, typer.Option(help="Pairs to make (default: the spec's counts; per sub-concept).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every draw.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Pairs made, judged and written per round (each image is drawn by a pipeline call of its own).")] = 8,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
    dtype: Annotated[str, typer.Option(help="fp32, fp16 or bf16 (GPU).")] = "fp32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds (other pairs, or any folder) and start over.")] = False,
    from_attack: Annotated[
        list[Path] | None,
        typer.Option(
            help="Attack set (attack_set.json of UnlearnDiffAtk or P4D) whose prompts become unsafe prompts too, with the safe prompt of "
            "the concept prompt each was searched from: adversarial pairs. Repeatable."
        ),
    ] = None,
    attack_pairs: Annotated[int, typer.Option(help="Pairs per distinct attack prompt (with --from-attack).")] = 4,
) -> None:
    """Make (unsafe, safe) image pairs: txt2img + judge, then SDEdit + judge. Resumable: run it again to continue."""
    from t2i_unlearn.concepts import load_concept, with_attack_prompts
    from t2i_unlearn.data.pairs import check_pairs_request, generate_pairs
    from t2i_unlearn.utils.io import claim_output
    from t2i_unlearn.utils.validate import check_at_least, check_device, check_file, check_not_empty

    if dtype not in _DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(_DTYPES)}")
    check_device(device)
    check_not_empty(concept, "--concept")
    if from_attack:
        check_at_least(attack_pairs, 1, "--attack-pairs")
    for path in from_attack or []:
        check_file(path, "--from-attack", suggest="attack_set.json")
    spec = load_concept(concept)
    if from_attack:
        spec = with_attack_prompts(spec, list(from_attack), attack_pairs)
    leaves = spec.leaves()
    targets = {name: out / name.split("/", 1)[1] if len(leaves) > 1 else out for name in leaves}
    if len(leaves) > 1:  # the parent folder holds only the sub-concepts' pair folders
        subs = {t.name for t in targets.values()}
        claim_output(out, "pair data", lambda p: ("partial", "") if all(c.name in subs for c in p.iterdir()) else ("other", "holds no pair data"), overwrite)
    for name, leaf in leaves.items():  # every check before the first model is loaded
        check_pairs_request(model, leaf, targets[name], num_pairs, seed, batch_size, overwrite)
    for name, leaf in leaves.items():
        target = targets[name]
        stats = generate_pairs(
            model, leaf, target, num_pairs=num_pairs, seed=seed, device=device, dtype=_dtype(dtype), batch_size=batch_size, progress=True, overwrite=overwrite
        )
        rates = ""
        if "unsafe_acceptance" in stats:
            rates = (
                f"; judge acceptance: unsafe {stats['unsafe_acceptance']:.0%} ({stats['unsafe_kept']}/{stats['unsafe_draws']}),"
                f" safe {stats['safe_acceptance']:.0%} ({stats['safe_kept']}/{stats['safe_draws']})"
            )
        failed = f", {stats['pairs_failed']} failed" if stats.get("pairs_failed") else ""
        keep = f"; {stats['preserve_images']} preserve images" if stats.get("preserve_images") else ""
        typer.echo(f"{name}: {stats['pairs']}/{stats['requested']} pairs in {target}{failed}{rates}{keep}")


@config_flags(DUOConfig, panel="DUO settings (override --config)")
def train_duo_cmd(
    model: Annotated[str, typer.Option(help="toy, toy:quick, a pipeline directory or a hub id.")],
    data: Annotated[Path, typer.Option(parser=nonempty_path("--data"), help="Pair folder from 'data pairs' (or a folder of sub-concept pair folders).")],
    out: Annotated[Path, typer.Option(parser=nonempty_path("--out"), help="Output folder of the LoRA (one subfolder per sub-concept).")],
    config: Annotated[str | None, typer.Option(help="DUO config YAML or preset (nudity, violence, sd3, toy, toy_authors, toy_mined).")] = None,
    resume: ResumeFlag = False,
    overwrite: RunOverwriteFlag = False,
    device: TrainDeviceFlag = None,
    *,
    overrides: dict[str, Any],
) -> None:
    """Train DUO LoRA(s) on pair data."""
    from t2i_unlearn.data import pair_folders
    from t2i_unlearn.utils.validate import check_device, check_model_arg, check_not_empty

    check_not_empty(config, "--config")
    check_device(device)
    cfg = load_config(config, overrides)
    check_model_arg(model)
    pair_folders(data)  # a file, a missing folder or an unfinished 'data pairs' run: one line, before torch is imported
    if cfg.mine_rounds:
        from t2i_unlearn.methods.darkminer import check_family

        check_family(model, "DUO's mine_rounds (Dark Miner's mining stage)")  # SD3: one line, before the model loads
    from t2i_unlearn.methods import get_method

    outs = get_method("duo").train(model, data, out, cfg, resume=resume, overwrite=overwrite, device=device, progress=True)
    for o in outs:
        typer.echo(f"wrote {o / 'pytorch_lora_weights.safetensors'}")
    if len(outs) > 1:
        typer.echo("combine them with: t2i-unlearn generate " + " ".join(f"--lora {o}" for o in outs) + " ...")


def export_cmd(
    model: Annotated[str, typer.Option(help="Base model: toy, a pipeline directory or a hub id.")],
    lora: Annotated[list[str], typer.Option(help="LoRA folder or .safetensors file, or a train --out folder (repeat to combine).")],
    out: Annotated[Path, typer.Option(parser=nonempty_path("--out"), help="Output folder: pipeline/ and model.safetensors (SD 1.x, SDXL, SD3).")],
    lora_weight: Annotated[list[float] | None, typer.Option(help="Weight per LoRA (default 1).")] = None,
    single_file: Annotated[bool, typer.Option("--single-file/--no-single-file", help="Also write a single-file checkpoint for A1111/ComfyUI.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds (another export, or any folder).")] = False,
) -> None:
    """Fuse LoRA(s) into the base model: a full diffusers pipeline folder plus a single-file checkpoint."""
    from t2i_unlearn.utils.validate import check_adapters, check_model_arg

    check_model_arg(model)  # before torch loads (export_pipeline checks them again)
    check_adapters(lora)
    if lora_weight and len(lora_weight) != len(lora):
        raise UserError(f"{len(lora)} LoRAs but {len(lora_weight)} LoRA weights")
    from t2i_unlearn.utils.io import claim_output, marker_recogniser

    claim_output(out, "an export", marker_recogniser("an export", ("manifest.json",)), overwrite)  # before adapters imports torch
    from t2i_unlearn.adapters import export_pipeline

    written = export_pipeline(model, lora, out, weights=lora_weight, single_file=single_file, overwrite=overwrite)
    for kind, path in written.items():
        typer.echo(f"wrote {kind}: {path}")
