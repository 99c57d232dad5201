"""Load a text-to-image pipeline by id or path, know its family, and generate images with it.

The toy world is only another pipeline directory: ``toy`` (or ``toy:full`` / ``toy:quick``) resolves
to the directory of a built toy world, and from there the code path is the one real checkpoints take.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from t2i_unlearn.artifacts import split_artifacts
from t2i_unlearn.errors import UserError

logger = logging.getLogger(__name__)

FAMILIES = ("sd", "sdxl", "sd3")


def resolve_model(model: str) -> str:
    """A pipeline directory or hub id for ``model``; ``toy[:preset]`` names a toy world's pipeline."""
    if model == "toy" or model.startswith("toy:"):
        from t2i_unlearn.toy.world import find_world

        preset = model.split(":", 1)[1] if ":" in model else "full"
        return str(find_world(preset) / "pipeline")
    path = Path(model).expanduser()
    if path.exists():
        if path.is_dir() and (path / "pipeline" / "model_index.json").exists():
            return str(path / "pipeline")  # a toy world directory
        if not path.is_dir() or not (path / "model_index.json").exists():
            raise UserError(f"{model} is not a diffusers pipeline directory (no model_index.json)")
        return str(path)
    from t2i_unlearn.utils.validate import check_model_arg

    return check_model_arg(model)  # a hub id (the only case in which loading may reach the network), or UserError


def pipeline_family(pipe: Any) -> str:
    """``sd`` (SD 1.x/2.x), ``sdxl`` or ``sd3`` from the pipeline's class."""
    name = type(pipe).__name__
    if "StableDiffusion3" in name:
        return "sd3"
    if "XL" in name:
        return "sdxl"
    if "StableDiffusion" in name:
        return "sd"
    raise UserError(f"unsupported pipeline type {name}; supported families: {', '.join(FAMILIES)}")


def _absent_components(source: str) -> dict[str, None]:
    """Components a local pipeline saved as ``[null, null]`` (e.g. SD3 without T5), passed as ``None``.

    diffusers refuses to load such a folder unless each missing component is named explicitly.
    """
    index = Path(source) / "model_index.json"
    if not index.exists():
        return {}
    try:
        entries = json.loads(index.read_text())
    except ValueError as exc:
        raise UserError(f"{index} is not valid JSON") from exc
    return {k: None for k, v in entries.items() if not k.startswith("_") and isinstance(v, list) and v == [None, None]}


def check_device_available(device: str | torch.device) -> None:
    """:class:`UserError` (one line) if ``device`` is not a device string, or names an accelerator torch cannot see."""
    from t2i_unlearn.utils.validate import check_device

    check_device(str(device))
    dev = torch.device(device)
    if dev.type == "cuda":
        n = torch.cuda.device_count()
    elif dev.type == "mps":
        n = int(torch.backends.mps.is_available())
    elif dev.type == "xpu":
        n = torch.xpu.device_count() if hasattr(torch, "xpu") else 0  # torch.xpu: torch >= 2.4
    else:
        return
    if n == 0:
        raise UserError(f"--device {device}: torch sees no {dev.type.upper()} device here; use --device cpu")
    if (dev.index or 0) >= n:
        raise UserError(f"--device {device}: torch sees {n} {dev.type.upper()} device(s), {dev.type}:0 to {dev.type}:{n - 1}")


def load_pipeline(
    model: str,
    lora: Sequence[str] | str | None = None,
    lora_weights: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Any:
    """Load a diffusers text-to-image pipeline (any supported family), optionally with LoRA adapters.

    ``lora`` is one or several LoRA directories or files in diffusers format; several are combined
    with ``lora_weights`` (default 1 each) through ``set_adapters``. The device and the adapters are
    checked before the model loads.
    """
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import are_progress_bars_disabled

    from t2i_unlearn.utils.validate import check_adapters

    check_device_available(device)
    loras = [lora] if isinstance(lora, str) else list(lora or [])
    check_adapters(loras)
    if are_progress_bars_disabled():  # diffusers' loading bar ignores HF_HUB_DISABLE_PROGRESS_BARS; transformers' does not
        diffusers_logging.disable_progress_bar()
    source = resolve_model(model)
    try:
        pipe = DiffusionPipeline.from_pretrained(source, dtype=dtype, **_absent_components(source))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot load pipeline from {model}: {str(exc).splitlines()[0]}") from exc
    pipeline_family(pipe)
    pipe.set_progress_bar_config(disable=True)
    # Method outputs that are not LoRAs (ESD weight deltas, SLD settings) are applied after the LoRAs,
    # as the methods registered them (t2i_unlearn.artifacts): this module knows no method.
    loras, lora_weights, appliers = split_artifacts(loras, lora_weights)
    if loras:
        names = []
        for i, path in enumerate(loras):
            name = f"adapter{i}"
            try:
                pipe.load_lora_weights(path, adapter_name=name)
            except (OSError, ValueError, KeyError) as exc:
                raise UserError(f"cannot load LoRA {path}: {str(exc).splitlines()[0]}") from exc
            names.append(name)
        weights = list(lora_weights) if lora_weights else [1.0] * len(names)
        if len(weights) != len(names):
            raise UserError(f"{len(names)} LoRAs but {len(weights)} LoRA weights")
        pipe.set_adapters(names, adapter_weights=weights)
    for apply in appliers:
        pipe = apply(pipe)
    return pipe.to(device)


def prompt_overflow(pipe: Any, prompts: Sequence[str]) -> list[int]:
    """For each prompt, how many tokens lie beyond what the pipeline's (CLIP) tokenizer passes to its text encoder; 0 when it fits."""
    tok = getattr(pipe, "tokenizer", None)
    limit = getattr(tok, "model_max_length", None)
    if tok is None or not isinstance(limit, int) or limit >= 10**6 or not prompts:
        return [0] * len(prompts)
    ids = tok(list(prompts), truncation=False, verbose=False).input_ids
    return [max(0, len(x) - limit) for x in ids]


def warn_cut_prompts(pipe: Any, prompts: Sequence[str]) -> None:
    """Log one warning for the prompts the text encoder will see cut (longer than its tokenizer's limit).

    Each prompt is reported once per pipeline (remembered on ``pipe``), however many images use it.
    """
    over = prompt_overflow(pipe, prompts)
    warned: set[str] = pipe.__dict__.setdefault("_t2i_unlearn_cut_prompts", set())
    cut = {p: n for p, n in zip(prompts, over, strict=True) if n and p not in warned}
    if not cut:
        return
    warned.update(cut)
    limit = pipe.tokenizer.model_max_length
    first, dropped = next(iter(cut.items()))
    shown = first if len(first) <= 60 else first[:57] + "..."
    if len(cut) == 1:
        logger.warning("prompt %r is longer than the text encoder's %d tokens: its last %d token(s) are dropped", shown, limit, dropped)
    else:
        logger.warning(
            "%d prompts are longer than the text encoder's %d tokens and are cut (up to %d tokens dropped; first: %r)",
            len(cut),
            limit,
            max(cut.values()),
            shown,
        )


def generate_images(
    pipe: Any,
    prompts: Sequence[str] | None,
    seeds: Sequence[int],
    steps: int = 25,
    guidance: float = 4.0,
    batch_size: int = 32,
    height: int | None = None,
    width: int | None = None,
    negative_prompts: Sequence[str] | None = None,
    progress: bool = False,
    prompt_embeds: torch.Tensor | None = None,
    pooled_prompt_embeds: torch.Tensor | None = None,
) -> np.ndarray:
    """Generate one image per (prompt, seed); returns ``uint8 [N, H, W, 3]``.

    ``prompt_embeds`` (``[N, L, D]``) replaces ``prompts`` (pass ``None``) for attacks that produce
    embeddings; SDXL also takes ``pooled_prompt_embeds`` (``[N, P]``). Each image's initial noise comes from its own generator seeded with its seed,
    so an image does not depend on the batch it was generated in.
    """
    n = len(prompt_embeds) if prompt_embeds is not None else len(prompts or [])
    if n != len(seeds):
        raise UserError(f"{n} prompts but {len(seeds)} seeds")
    if prompt_embeds is None:
        warn_cut_prompts(pipe, list(prompts or []) + list(negative_prompts or []))
    out = []
    for i in tqdm(range(0, n, batch_size), desc="generate", disable=not progress, leave=False):
        kwargs: dict[str, Any] = {}
        if negative_prompts is not None:
            kwargs["negative_prompt"] = list(negative_prompts[i : i + batch_size])
        if prompt_embeds is not None:
            dtype = pipe.text_encoder.dtype if getattr(pipe, "text_encoder", None) is not None else torch.float32
            kwargs["prompt_embeds"] = prompt_embeds[i : i + batch_size].to(pipe.device, dtype)
            if pooled_prompt_embeds is not None:
                kwargs["pooled_prompt_embeds"] = pooled_prompt_embeds[i : i + batch_size].to(pipe.device, dtype)
        else:
            kwargs["prompt"] = list(prompts[i : i + batch_size])  # type: ignore[index]
        # CPU generators: the same seed gives the same initial noise on every device.
        gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds[i : i + batch_size]]
        result = pipe(
            generator=gens,
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=height,
            width=width,
            output_type="np",
            **kwargs,
        )
        out.append((np.clip(result.images, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 3), dtype=np.uint8)


def image_grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile ``uint8 [N, H, W, 3]`` images into one grid image with white padding."""
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = im
    return grid
