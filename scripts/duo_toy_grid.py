"""Picture of what a DUO LoRA does on the toy world: rows = striped prompts (base, LoRA), dotted prompts (base, LoRA).

python scripts/duo_toy_grid.py --lora runs/duo_toy_v2/lora --out docs/img/duo_toy_grid.png
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
    parser.add_argument("--lora", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=12, help="images per row")
    args = parser.parse_args()

    from PIL import Image

    from t2i_unlearn.models import generate_images, load_pipeline
    from t2i_unlearn.toy.quality import concept_prompts

    base, erased = load_pipeline(args.world), load_pipeline(args.world, lora=[args.lora])
    rows = []
    for texture, seed in (("striped", 11), ("dotted", 12)):
        prompts = concept_prompts(args.n, seed=seed, texture=texture, mark="none")[0]
        seeds = list(range(10_000, 10_000 + args.n))  # the acceptance bench's first prompts and seeds
        for pipe in (base, erased):
            rows.append(np.concatenate(list(generate_images(pipe, prompts, seeds, steps=25, guidance=4.0)), axis=1))
    grid = np.concatenate(rows, axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
