"""The ``t2i-unlearn`` command: a thin Typer app over the Python API.

Known problems (:class:`~t2i_unlearn.errors.UserError`) are printed as one line on stderr with exit
code 2; anything else is a bug and shows its traceback only with ``--debug``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from t2i_unlearn.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Remove unsafe concepts from text-to-image diffusion models, attack and evaluate them.")
toy_app = typer.Typer(no_args_is_help=True, help="The toy world: a small Stable-Diffusion-format model and judges trained here on CPU.")
app.add_typer(toy_app, name="toy")
from t2i_unlearn.cli_attacks import register as _register_attacks  # noqa: E402
from t2i_unlearn.cli_baselines import register as _register_baselines  # noqa: E402
from t2i_unlearn.cli_duo import register as _register_duo  # noqa: E402
from t2i_unlearn.cli_eval import register as _register_eval  # noqa: E402

_register_duo(app)
_register_eval(app)
_register_attacks(app)
_register_baselines(app)

_STATE = {"debug": False}


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    _STATE["debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose or debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not (verbose or debug):
        _quiet_libraries()


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    import warnings

    warnings.filterwarnings("ignore")
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - both are dependencies
        pass


def _out_file(path: Path) -> Path:
    from t2i_unlearn.utils.io import ensure_writable_dir

    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise UserError(f"output file {path} must end in .png, .jpg or .webp")
    ensure_writable_dir(path.parent if str(path.parent) else Path("."))
    return path


@toy_app.command("build")
def toy_build(
    preset: Annotated[str, typer.Option(help="quick (tests, <= 3 min) or full (the bench, <= 30 min).")] = "full",
    out: Annotated[Path | None, typer.Option(help="World directory (default: the user cache directory).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the whole build.")] = 0,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Delete an existing world there and build again.")] = False,
) -> None:
    """Build the toy world (or resume an interrupted build), then print its quality table."""
    import shutil

    from t2i_unlearn.toy.build import build_world, get_preset
    from t2i_unlearn.toy.quality import format_quality
    from t2i_unlearn.toy.world import default_world_dir

    get_preset(preset)
    target = out or default_world_dir(preset, seed)
    if rebuild and target.exists():
        if not (target / "manifest.json").exists() and not (target / ".build").exists():
            raise UserError(f"{target} does not look like a toy world; refusing to delete it")
        shutil.rmtree(target)
    world = build_world(target, preset=preset, seed=seed, progress=True)
    table = json.loads((world / "quality.json").read_text())
    typer.echo(format_quality(table))
    typer.echo(f"world: {world}\nquality table: {world / 'quality.json'}")


@toy_app.command("show")
def toy_show(
    preset: Annotated[str, typer.Option(help="Which world to draw from.")] = "full",
    out: Annotated[Path, typer.Option(help="Folder for the grids.")] = Path("t2i_unlearn_demo"),
    seed: Annotated[int, typer.Option(help="First seed of the samples.")] = 0,
) -> None:
    """Draw a grid of samples per concept group of the toy world, judged by its judges."""
    from t2i_unlearn.toy.show import show_world

    path = show_world(f"toy:{preset}", out, seed=seed)
    typer.echo(f"wrote {path}")


@app.command()
def generate(
    prompt: Annotated[list[str], typer.Option("--prompt", "-p", help="Prompt (repeat for several).")],
    out: Annotated[Path, typer.Option(help="Output image (.png/.jpg/.webp); several images are tiled into a grid.")],
    model: Annotated[str, typer.Option(help="toy, toy:quick, a pipeline directory or a hub id.")] = "toy",
    lora: Annotated[list[str] | None, typer.Option(help="LoRA directory or file (repeat to combine).")] = None,
    lora_weight: Annotated[list[float] | None, typer.Option(help="Weight per LoRA (default 1).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first image; image i uses seed + i.")] = 0,
    num_images: Annotated[int, typer.Option("--num-images", "-n", help="Images per prompt.")] = 1,
    steps: Annotated[int, typer.Option(help="Sampling steps.")] = 25,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 4.0,
    negative_prompt: Annotated[str | None, typer.Option(help="Negative prompt.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps ...")] = "cpu",
) -> None:
    """Generate one image, or a grid (several prompts or --num-images), with any supported model."""
    from t2i_unlearn.models import generate_images, image_grid, load_pipeline
    from t2i_unlearn.utils.io import atomic_save_image

    if num_images < 1:
        raise UserError("--num-images must be at least 1")
    if steps < 1:
        raise UserError("--steps must be at least 1")
    out = _out_file(out)
    pipe = load_pipeline(model, lora=lora, lora_weights=lora_weight, device=device)
    prompts = [p for p in prompt for _ in range(num_images)]
    seeds = [seed + i for i in range(len(prompts))]
    negatives = [negative_prompt] * len(prompts) if negative_prompt else None
    images = generate_images(pipe, prompts, seeds, steps=steps, guidance=guidance, negative_prompts=negatives, progress=True)
    atomic_save_image(out, images[0] if len(images) == 1 else image_grid(images, cols=num_images if len(prompt) > 1 else None))
    typer.echo(f"wrote {out}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's pictures and tables.")] = Path("t2i_unlearn_demo"),
    preset: Annotated[str, typer.Option(help="Toy world preset.")] = "full",
) -> None:
    """The main job on the toy world: get the world (shipped, cached or built), print its quality and show what it draws."""
    from t2i_unlearn.toy.build import build_world
    from t2i_unlearn.toy.quality import format_quality
    from t2i_unlearn.toy.show import show_world
    from t2i_unlearn.toy.world import default_world_dir, find_world

    try:
        world = find_world(preset)
    except UserError:
        typer.echo(f"no {preset} toy world yet: building it (resumable; progress below)")
        world = build_world(default_world_dir(preset), preset=preset, progress=True)
    typer.echo(f"toy world: {world}")
    typer.echo(format_quality(json.loads((world / "quality.json").read_text())))
    path = show_world(str(world), out)
    typer.echo(f"what the toy model draws: {path}")


def main() -> None:
    """Console-script entry point."""
    debug = "--debug" in sys.argv
    try:
        rc = app(standalone_mode=False)
    except UserError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            typer.echo("aborted", err=True)
            sys.exit(1)
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (run with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
