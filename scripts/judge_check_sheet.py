"""A contact sheet for checking the toy judge by eye on generated images.

    python scripts/judge_check_sheet.py --model toy --out docs/img/judge_check.png [--lora L] [--per-row 12]

Rows: striped, dotted and unrelated prompts (held-out prompt seeds), prompts naming two colours, and the
empty prompt. Under each image the judge's verdict: texture (S striped, D dotted, P plain) and mark
(X crossed, O circled, B barred, - none). Also writes a JSON file beside the PNG with every prompt, seed,
verdict and the probability of "striped", so a reader can tally where the eye and the judge disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

TEXTURE = {"striped": "S", "dotted": "D", "plain": "P"}
MARK = {"crossed": "X", "circled": "O", "barred": "B", "none": "-"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy")
    parser.add_argument("--lora", action="append", default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-row", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from PIL import Image, ImageDraw

    from t2i_unlearn.models import generate_images, load_pipeline, resolve_model
    from t2i_unlearn.toy import judges as judges_mod
    from t2i_unlearn.toy.quality import concept_prompts, two_colour_prompts
    from t2i_unlearn.utils.io import atomic_save_image, atomic_write_json

    n = args.per_row
    rows = {
        "striped": concept_prompts(n, 60_001 + args.seed, texture="striped", mark="none")[0],
        "dotted": concept_prompts(n, 60_002 + args.seed, texture="dotted", mark="none")[0],
        "unrelated": concept_prompts(n, 60_003 + args.seed, texture="plain", mark="none")[0],
        "two colours": two_colour_prompts(n, 60_004 + args.seed)[0],
        "empty prompt": [""] * n,
    }
    pipeline_dir = Path(resolve_model(args.model))
    judge = judges_mod.load_judge(pipeline_dir.parent / "judges")
    pipe = load_pipeline(args.model, lora=args.lora)
    label_w, cell = 110, 32 * 3
    canvas = Image.new("RGB", (label_w + n * cell, len(rows) * (cell + 14)), "white")
    draw = ImageDraw.Draw(canvas)
    records = []
    for r, (name, prompts) in enumerate(rows.items()):
        seeds = [70_000 + 1000 * r + i + args.seed for i in range(n)]
        images = generate_images(pipe, prompts, seeds, batch_size=n)
        probs = judges_mod.predict(judge, images)
        verdicts = judges_mod.labels_from_probs(judge, probs)
        y = r * (cell + 14)
        draw.text((4, y + cell // 2 - 6), name, fill="black")
        for i, (image, verdict) in enumerate(zip(images, verdicts, strict=True)):
            x = label_w + i * cell
            canvas.paste(Image.fromarray(image).resize((cell, cell), Image.NEAREST), (x, y))
            draw.text((x + cell // 2 - 8, y + cell + 1), f"{TEXTURE[verdict['texture']]}{MARK[verdict['mark']]}", fill="black")
            p_striped = float(probs["texture"][i, judge.heads_spec["texture"].index("striped")])
            records.append({"row": name, "column": i, "prompt": prompts[i], "seed": seeds[i], "judged": verdict, "p_striped": round(p_striped, 3)})
    out = atomic_save_image(args.out, np.asarray(canvas))
    atomic_write_json(args.out.with_suffix(".json"), {"model": args.model, "lora": args.lora or [], "images": records})
    print(out)


if __name__ == "__main__":
    main()
