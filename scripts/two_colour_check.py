"""The quality table's two-colour images that the toy judge calls striped, for a check by eye.

    python scripts/two_colour_check.py --out docs/img/two_colour_flagged.png [--world full] [--n N] [--columns C]

Draws the quality table's group of prompts naming two colours (``toy.quality.two_colour_prompts`` and
``two_colour_seeds``, with the seed, image count, steps and guidance the world's ``quality.json`` records) on
the world's model, judges them, and writes
one row of the images judged striped above a row of as many images judged plain, 4x enlarged, with a JSON file
beside the PNG listing each shown image's prompt, seed and probability of "striped". With ``--columns C`` the
images judged striped fill rows of C (in the JSON's order, row by row) and the images judged plain, as many,
follow in rows of their own: for checking a larger ``--n`` by eye.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="full", help="toy preset whose world to use (the cached build, else the shipped one)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=None, help="images (default: the quality table's images per group)")
    parser.add_argument("--columns", type=int, default=None, help="images per row (default: each group in one row)")
    args = parser.parse_args()
    if args.n is not None and args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")
    if args.columns is not None and args.columns < 1:
        parser.error(f"--columns must be at least 1, got {args.columns}")

    from PIL import Image

    from t2i_unlearn.models import generate_images, load_pipeline
    from t2i_unlearn.toy import judges as judges_mod
    from t2i_unlearn.toy.quality import two_colour_prompts, two_colour_seeds
    from t2i_unlearn.toy.world import find_world
    from t2i_unlearn.utils.io import atomic_save_image, atomic_write_json

    world = find_world(args.world)
    settings = json.loads((world / "quality.json").read_text())["settings"]
    n = args.n or settings["images_per_group"]
    pipe = load_pipeline(str(world / "pipeline"))
    judge = judges_mod.load_judge(world / "judges")
    prompts, _ = two_colour_prompts(n, settings["seed"])
    seeds = two_colour_seeds(n, settings["seed"])
    images = generate_images(pipe, prompts, seeds, steps=settings["steps"], guidance=settings["guidance"], batch_size=64, progress=True)
    probs = judges_mod.predict(judge, images)
    p_striped = probs["texture"][:, judge.heads_spec["texture"].index("striped")]
    verdicts = judges_mod.labels_from_probs(judge, probs)
    flagged = [i for i, v in enumerate(verdicts) if v["texture"] == "striped"]
    plain = [i for i, v in enumerate(verdicts) if v["texture"] == "plain"][: max(1, len(flagged))]
    groups = [g for g in (flagged, plain) if g]
    step = args.columns or max(len(g) for g in groups)
    rows = [g[k : k + step] for g in groups for k in range(0, len(g), step)]
    width = max(len(r) for r in rows)
    blank = np.full_like(images[0], 255)
    sheet = np.concatenate([np.concatenate([images[i] for i in r] + [blank] * (width - len(r)), 1) for r in rows], 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    big = np.asarray(Image.fromarray(sheet).resize((sheet.shape[1] * 4, sheet.shape[0] * 4), Image.NEAREST))
    atomic_save_image(args.out, big)
    shown = [
        {"row": "judged striped" if i in flagged else "judged plain", "prompt": prompts[i], "seed": seeds[i], "p_striped": float(p_striped[i])}
        for r in rows
        for i in r
    ]
    atomic_write_json(args.out.with_suffix(".json"), {"world": str(world), "n": n, "judged_striped": len(flagged), "images": shown})
    print(f"{len(flagged)} of {n} judged striped; sheet {args.out}")


if __name__ == "__main__":
    main()
