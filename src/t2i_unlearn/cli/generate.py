"""CLI command ``generate``: images from any supported model, with or without adapters.

Usage::

    t2i-unlearn generate --model M [--lora L ...] -p PROMPT [-p PROMPT ...] [-n N] --out IMAGE
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from t2i_unlearn.errors import UserError
from t2i_unlearn.utils.validate import nonempty_path


def generate(
    prompt: Annotated[list[str], typer.Option("--prompt", "-p", help="Prompt (repeat for several).")],
    out: Annotated[Path, typer.Option(parser=nonempty_path("--out"), help="Output image (.png/.jpg/.webp); several images are tiled into a grid.")],
    model: Annotated[str, typer.Option(help="toy, toy:quick, a pipeline directory or a hub id.")] = "toy",
    lora: Annotated[list[str] | None, typer.Option(help="LoRA folder or .safetensors file, or a train --out folder (repeat to combine).")] = None,
    lora_weight: Annotated[list[float] | None, typer.Option(help="Weight per LoRA (default 1).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first image; image i uses seed + i.")] = 0,
    num_images: Annotated[int, typer.Option("--num-images", "-n", help="Images per prompt.")] = 1,
    steps: Annotated[int, typer.Option(help="Sampling steps.")] = 25,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 4.0,
    negative_prompt: Annotated[str | None, typer.Option(help="Negative prompt.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps ...")] = "cpu",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
) -> None:
    """Generate one image, or a grid (several prompts or --num-images), with any supported model."""
    import math

    from t2i_unlearn.utils.io import DONE, claim_output, png_request_recogniser
    from t2i_unlearn.utils.validate import check_adapters, check_device, check_model_arg

    if num_images < 1:
        raise UserError("--num-images must be at least 1")
    if steps < 1:
        raise UserError("--steps must be at least 1")
    if not (math.isfinite(guidance) and guidance >= 0):
        raise UserError(f"--guidance must be a number >= 0, got {guidance}")
    if any(not p.strip() for p in prompt):
        raise UserError("--prompt must not be empty")
    if lora_weight and len(lora_weight) != len(lora or []):
        raise UserError(f"{len(lora or [])} LoRAs but {len(lora_weight)} LoRA weights")
    check_model_arg(model)
    check_adapters(lora)
    check_device(device)
    request = {
        "model": model,
        "lora": [str(Path(p).expanduser().resolve()) for p in lora or []],
        "lora_weight": lora_weight,
        "prompts": prompt,
        "seed": seed,
        "num_images": num_images,
        "steps": steps,
        "guidance": guidance,
        "negative_prompt": negative_prompt,
    }
    claim = claim_output(out, "an image", png_request_recogniser(request), overwrite, kind="file", suffixes=(".png", ".jpg", ".jpeg", ".webp"))
    if claim.status == DONE:
        typer.echo(f"{out} already holds this image (same settings); nothing to do")
        return

    from t2i_unlearn.models import generate_images, image_grid, load_pipeline
    from t2i_unlearn.utils.io import atomic_save_image

    pipe = load_pipeline(model, lora=lora, lora_weights=lora_weight, device=device)
    prompts = [p for p in prompt for _ in range(num_images)]
    seeds = [seed + i for i in range(len(prompts))]
    negatives = [negative_prompt] * len(prompts) if negative_prompt else None
    images = generate_images(pipe, prompts, seeds, steps=steps, guidance=guidance, negative_prompts=negatives, progress=True)
    image = images[0] if len(images) == 1 else image_grid(images, cols=num_images if len(prompt) > 1 else None)
    atomic_save_image(out, image, request=request)
    typer.echo(f"wrote {out}")
