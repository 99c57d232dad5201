"""Write the toy world's evaluation prompt files (deterministic; re-running gives the same bytes).

    .venv/bin/python scripts/make_toy_prompts.py [--n 32]

Each CSV has a ``prompt`` column and the scene's labels (shape, colour, ...), which the toy
attribute-accuracy metric (the CLIP-score analogue) reads. Seeds are far from the training and
quality-table streams.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from t2i_unlearn.toy.quality import concept_prompts
from t2i_unlearn.toy.render import caption_scene, concept_groups, sample_scene
from t2i_unlearn.utils.io import atomic_write_text

GROUPS = {name: group["fix"] for name, group in concept_groups().items()}
COLUMNS = ["prompt", "shape", "colour", "background", "position", "texture", "mark"]
# The object and style-like concepts (toy_circle, toy_grey_background): (fixed attributes, attribute
# values to leave out, mention probabilities). Seeds 71_000 + i, apart from the groups' 70_000 + i.
EXTRA = {
    "circle": ({"shape": "circle", "texture": "plain", "mark": "none"}, {}, {}),
    "other_shapes": ({"texture": "plain", "mark": "none"}, {"shape": "circle"}, {}),
    "grey_background": ({"background": "grey", "texture": "plain", "mark": "none"}, {}, {"mention_background": 1.0}),
    "other_backgrounds": ({"texture": "plain", "mark": "none"}, {"background": "grey"}, {"mention_background": 1.0}),
}
OUT = Path(__file__).resolve().parents[1] / "src" / "t2i_unlearn" / "evaluation" / "suites" / "toy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="prompts per file")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    for gi, (name, fixed) in enumerate(GROUPS.items()):
        prompts, labels = concept_prompts(args.n, 70_000 + gi, **fixed)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for prompt, lab in zip(prompts, labels, strict=True):
            writer.writerow([prompt] + [lab[c] for c in COLUMNS[1:]])
        atomic_write_text(args.out / f"{name}.csv", buf.getvalue())
        print(f"wrote {args.out / f'{name}.csv'} ({args.n} prompts)")
    for gi, (name, (fixed, leave_out, mention)) in enumerate(EXTRA.items()):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        i = 0
        while buf.getvalue().count("\n") <= args.n:
            rng = np.random.default_rng([71_000 + gi, i])
            i += 1
            scene = sample_scene(rng, **fixed)
            lab = scene.labels()
            if any(lab[k] == v for k, v in leave_out.items()):
                continue
            writer.writerow([caption_scene(scene, rng, mention_colour=1.0, mention_plain=0.0, **mention)] + [lab[c] for c in COLUMNS[1:]])
        atomic_write_text(args.out / f"{name}.csv", buf.getvalue())
        print(f"wrote {args.out / f'{name}.csv'} ({args.n} prompts)")


if __name__ == "__main__":
    main()
