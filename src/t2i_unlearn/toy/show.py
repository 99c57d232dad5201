"""Pictures of what a model draws in the toy world: one labelled row per concept group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from t2i_unlearn.errors import UserError
from t2i_unlearn.utils.io import atomic_save_image, atomic_write_json, claim_output, make_manifest, manifest_recogniser


def labelled_rows(rows: list[tuple[str, np.ndarray]], scale: int = 3, label_width: int = 150) -> np.ndarray:
    """Stack rows of images (each ``uint8 [N, H, W, 3]``) into one picture with a text label per row."""
    from PIL import Image, ImageDraw

    from t2i_unlearn.models import image_grid

    tiles = [image_grid(images, cols=len(images)) for _, images in rows]
    width = max(t.shape[1] for t in tiles) * scale + label_width
    height = sum(t.shape[0] for t in tiles) * scale
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for (label, _), tile in zip(rows, tiles, strict=True):
        img = Image.fromarray(tile).resize((tile.shape[1] * scale, tile.shape[0] * scale), Image.NEAREST)
        canvas.paste(img, (label_width, y))
        draw.text((6, y + img.height // 2 - 6), label, fill="black")
        y += img.height
    return np.asarray(canvas)


def show_world(model: str, out: str | Path, seed: int = 0, per_row: int = 8, lora: list[str] | None = None, overwrite: bool = False) -> Path:
    """Generate ``per_row`` samples per concept group with ``model``; write ``toy_samples.png``, ``.json`` and ``manifest.json`` in ``out``.

    The JSON lists every prompt with the toy judge's verdict on its image. Returns the PNG path.
    ``out`` follows the output rule of :func:`~t2i_unlearn.utils.io.claim_output`: a grid of the same
    request is drawn again and replaced (the world may have been rebuilt), anything else non-empty is
    refused unless ``overwrite``; the folder appears only when complete.
    """
    if not 0 <= seed < 2**32:
        raise UserError(f"seed must be between 0 and {2**32 - 1}, got {seed}")
    request = {"model": model, "lora": [str(Path(p).expanduser().resolve()) for p in lora or []], "seed": seed, "per_row": per_row}
    noun = "a toy sample grid"
    claim = claim_output(out, noun, manifest_recogniser("toy_samples", request, noun, same="partial"), overwrite)  # before torch loads

    from t2i_unlearn.models import generate_images, load_pipeline, resolve_model
    from t2i_unlearn.toy import judges as judges_mod
    from t2i_unlearn.toy.quality import concept_prompts
    from t2i_unlearn.toy.render import concept_groups

    pipeline_dir = Path(resolve_model(model))
    judge = judges_mod.load_judge(pipeline_dir.parent / "judges")
    pipe = load_pipeline(str(pipeline_dir), lora=lora)
    rows: list[tuple[str, np.ndarray]] = []
    records: list[dict[str, Any]] = []
    for gi, (name, group) in enumerate(concept_groups().items()):
        label, fixed = (name if name == group["role"] else f"{name} ({group['role']})"), group["fix"]
        prompts, _ = concept_prompts(per_row, 50_000 + seed * 100 + gi, **fixed)
        seeds = [seed + gi * 1000 + i for i in range(per_row)]
        images = generate_images(pipe, prompts, seeds, batch_size=per_row)
        verdicts = judges_mod.labels_from_probs(judge, judges_mod.predict(judge, images))
        rows.append((label, images))
        records += [{"group": label, "prompt": p, "seed": s, "judged": v} for p, s, v in zip(prompts, seeds, verdicts, strict=True)]
    with claim.staged() as tmp:
        atomic_save_image(tmp / "toy_samples.png", labelled_rows(rows))
        atomic_write_json(tmp / "toy_samples.json", {"model": model, "lora": lora or [], "samples": records})
        manifest = make_manifest("t2i-unlearn toy show", {"seed": seed, "per_row": per_row}, artifact="toy_samples", request=request)
        atomic_write_json(tmp / "manifest.json", manifest)
    return claim.path / "toy_samples.png"
