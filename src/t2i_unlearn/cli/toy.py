"""CLI commands of the toy world: ``toy build`` and ``toy show`` (the demo on it: :mod:`.bench`).

Usage::

    t2i-unlearn toy build [--preset quick|full] [--out W] [--seed S] [--overwrite]
    t2i-unlearn toy show [--preset P] [--out D] [--seed S] [--overwrite]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from t2i_unlearn.errors import UserError
from t2i_unlearn.utils.validate import nonempty_path

toy_app = typer.Typer(no_args_is_help=True, help="The toy world: a small Stable-Diffusion-format model and judges trained here on CPU.")


@toy_app.command("build")
def toy_build(
    preset: Annotated[str, typer.Option(help="quick (tests, ~2.5 min on 2 idle cores) or full (the bench, ~53 min).")] = "full",
    out: Annotated[Path | None, typer.Option(parser=nonempty_path("--out"), help="World directory (default: the user cache directory).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the whole build.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds (another world, or any folder) and build again.")] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", hidden=True, help="Old name of --overwrite that only ever deletes a toy world.")] = False,
) -> None:
    """Build the toy world (or resume an interrupted build), then print its quality table."""
    from t2i_unlearn.toy.world import claim_world, default_world_dir, get_preset, is_world_folder

    spec = get_preset(preset)
    if not 0 <= seed < 2**32:  # before --out is touched: the build's random streams take no other seed
        raise UserError(f"--seed must be between 0 and {2**32 - 1}, got {seed}")
    target = out or default_world_dir(preset, seed)
    if rebuild and not overwrite and target.is_dir() and any(target.iterdir()) and not is_world_folder(target):
        raise UserError(f"{target} is not a toy world; use an empty folder or --overwrite")
    claim = claim_world(target, spec, seed, overwrite or rebuild)  # every refusal before torch loads
    from t2i_unlearn.toy.quality import format_quality
    from t2i_unlearn.utils.io import DONE

    if claim.status == DONE:  # a complete world with these settings (already hash-checked): nothing to build
        world = claim.path
    else:
        from t2i_unlearn.toy.build import build_world

        world = build_world(target, preset=preset, seed=seed, progress=True, overwrite=overwrite or rebuild)
    table = json.loads((world / "quality.json").read_text())
    typer.echo(format_quality(table))
    typer.echo(f"world: {world}\nquality table: {world / 'quality.json'}")


@toy_app.command("show")
def toy_show(
    preset: Annotated[str, typer.Option(help="Which world to draw from.")] = "full",
    out: Annotated[Path, typer.Option(parser=nonempty_path("--out"), help="Folder for the grid: toy_samples.png, toy_samples.json, manifest.json.")] = Path(
        "toy_samples"
    ),
    seed: Annotated[int, typer.Option(help="First seed of the samples.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds (another grid, or any folder).")] = False,
) -> None:
    """Draw a grid of samples per concept group of the toy world, judged by its judges."""
    from t2i_unlearn.toy.show import show_world
    from t2i_unlearn.utils.validate import check_model_arg

    check_model_arg(f"toy:{preset}", "--preset")  # a mistyped preset or a world not built: one line, before torch loads
    path = show_world(f"toy:{preset}", out, seed=seed, overwrite=overwrite)
    typer.echo(f"wrote {path}")
