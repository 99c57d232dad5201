"""The before/after picture of a bench: base and every method on the same prompts and seeds.

Built from the images the evaluation already drew (the image cache, by the keys each run's
``results.json`` records), so it costs no generation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _images(run_dir: Path, set_name: str, variant: str, k: int, cache: Any) -> np.ndarray:
    ev = json.loads((run_dir / "results.json").read_text())
    records = ev["prompt_sets"][set_name]["images"][:k]
    return np.stack([cache.get(rec["cache_key"][variant]) for rec in records])


def write_picture(plan: Any, results: dict[str, Any], out: Path, cache_dir: Path) -> Path:
    """Write the suite's before/after picture into ``out`` and return its path.

    Rows: the base model, then each method (its label); columns: the first ``per_set`` images of each
    of the picture's prompt sets, with the same prompt and seed down each column.
    """
    from PIL import Image, ImageDraw

    from t2i_unlearn.evaluation.cache import ImageCache
    from t2i_unlearn.toy.show import labelled_rows
    from t2i_unlearn.utils.io import atomic_save_image

    spec = plan.suite.picture  # its sets were checked against the evaluation suite by make_plan
    cache = ImageCache(cache_dir)

    def row(run_dir: Path, variant: str) -> np.ndarray:
        return np.concatenate([_images(run_dir, s, variant, spec.per_set, cache) for s in spec.sets])

    base: np.ndarray | None = None
    method_rows: list[tuple[str, np.ndarray]] = []
    for name, meta in results["methods"].items():
        run_dir = out / "eval" / name
        variants = json.loads((run_dir / "results.json").read_text())["variants"]
        if "unlearned" in variants:
            method_rows.append((meta["label"], row(run_dir, "unlearned")))
            if base is None:
                base = row(run_dir, "base")
        elif base is None:
            base = row(run_dir, "model")
    rows = ([("base", base)] if base is not None else []) + method_rows
    scale, label_width = 3, 110
    grid = labelled_rows(rows, scale=scale, label_width=label_width)
    size = rows[0][1].shape[1] * scale
    header = Image.new("RGB", (grid.shape[1], 18), "white")
    draw = ImageDraw.Draw(header)
    for i, s in enumerate(spec.sets):
        draw.text((label_width + i * spec.per_set * size + 4, 3), f"{s} prompts", fill="black")
    picture = np.concatenate([np.asarray(header), grid], axis=0)
    return atomic_save_image(out / spec.file, picture)
