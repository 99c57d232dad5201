"""Picture of what DUO LoRAs do on the toy world, same prompts and seeds as the acceptance bench.

python scripts/duo_toy_grid.py --lora runs/duo_v2/lora_authors --lora runs/duo_v2/lora_toy --out docs/img/duo_toy_grid.png

Row groups, top to bottom: striped prompts, striped prompts in held-out phrasings, dotted prompts, unrelated
prompts (and with ``--empty`` the empty prompt, at bench/duo_toy_empty_prompt.py's seeds); in each group one row
for the base model, then one per ``--lora`` in the order given. ``--guidance`` sets the classifier-free guidance
(default 4, the bench's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="toy:full")
    parser.add_argument("--lora", action="append", required=True, help="a LoRA folder (repeat for several)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=12, help="images per row")
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--empty", action="store_true", help="add a group for the empty prompt")
    args = parser.parse_args()

    from PIL import Image

    from t2i_unlearn.models import generate_images, load_pipeline
    from t2i_unlearn.toy.quality import concept_prompts, heldout_prompts

    pipes = [load_pipeline(args.world)] + [load_pipeline(args.world, lora=[lora]) for lora in args.lora]
    groups = [
        concept_prompts(args.n, seed=11, texture="striped", mark="none")[0],
        heldout_prompts(args.n, seed=14, texture="striped", mark="none")[0],
        concept_prompts(args.n, seed=12, texture="dotted", mark="none")[0],
        concept_prompts(args.n, seed=13, texture="plain", mark="none")[0],
    ]
    # the acceptance bench's first prompts and seeds
    groups = [(prompts, list(range(10_000, 10_000 + args.n))) for prompts in groups]
    if args.empty:
        groups.append(([""] * args.n, list(range(20_000, 20_000 + args.n))))
    rows = []
    for prompts, seeds in groups:
        for pipe in pipes:
            rows.append(np.concatenate(list(generate_images(pipe, prompts, seeds, steps=25, guidance=args.guidance)), axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, dtype=np.uint8))  # a white gap between groups
    grid = np.concatenate(rows, axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
