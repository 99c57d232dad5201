"""A contact sheet of what the four attacks draw against one toy-world model, with the toy judge's labels.

    python scripts/attack_sheet.py --lora runs/dm/try1 --attacks runs/robustness_dm/Dark_Miner_try1 --out docs/img/darkminer_toy_attacks.png

One row per attack folder under ``--attacks`` (the cells ``bench/toy_robustness.py`` writes): its first six
prompts (or learned tokens) at two seeds each, drawn by the toy world with ``--lora`` (none: the base model).
Under each image the judge's texture and mark, one letter each (S striped, D dotted, P plain; C circled,
X crossed, B barred, - none; each head's most likely class), so a reader can check by eye what the attack
success rate counts. ``--show`` filters by the concept judge's own verdict (``--concept``, the one the attacks
were judged by), which can differ from the letters where no texture class has half of the probability.

Every image a cell's success rate counts (all its prompts at the search's seeds), only those the judge calls
striped, wrapped 16 to a row:

    python scripts/attack_sheet.py --lora runs/duo/lora_toy_mined --attacks runs/robustness_wide32/DUO_toy_mined \
        --cells unlearndiff --prompts 0 --seeds 4 --show striped --columns 16 --out runs/sheets/uda_striped.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CELLS = ("concept_inversion", "unlearndiff", "p4d", "ring_a_bell")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="toy")
    parser.add_argument("--lora", default=None, help="adapter folder of the attacked model (none: base)")
    parser.add_argument("--attacks", type=Path, required=True, help="folder holding one attack folder per attack")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS), help="attack folders to show, one block each")
    parser.add_argument("--prompts", type=int, default=6, help="first N prompts of each attack (0: all)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per prompt, from the prompt's own (the search's seeds)")
    parser.add_argument(
        "--show", choices=["all", "striped", "not-striped"], default="all", help="keep the images the concept's judge flags (striped) or passes"
    )
    parser.add_argument("--concept", default="toy_striped", help="concept whose judge decides --show (the one the attacks were judged by)")
    parser.add_argument("--columns", type=int, default=12, help="images per row; a block wraps onto more rows")
    args = parser.parse_args()
    if args.prompts < 0 or args.seeds < 1 or args.columns < 1:
        parser.error("--prompts must be >= 0, --seeds and --columns >= 1")

    from t2i_unlearn.concepts import load_concept
    from t2i_unlearn.errors import UserError

    try:
        spec = load_concept(args.concept)
    except UserError as exc:
        parser.error(str(exc))
    if spec.judge is None or spec.judge.name != "toy":
        parser.error(f"--concept {args.concept} is not judged by the toy judge")

    from PIL import Image, ImageDraw
    from safetensors.torch import load_file

    from t2i_unlearn.judges import build_judge
    from t2i_unlearn.models import generate_images, load_pipeline
    from t2i_unlearn.toy import judges

    pipe = load_pipeline(args.world, lora=[args.lora] if args.lora else None)
    concept_judge = build_judge(spec.judge, args.world)
    judge = concept_judge.judge  # the same heads give each image's letters
    rows = []
    for cell in args.cells:
        folder = args.attacks / cell
        if not (folder / "attack_set.json").exists():
            continue
        saved = json.loads((folder / "attack_set.json").read_text())
        items = saved["prompts"] if isinstance(saved, dict) else saved
        if (folder / "embeddings.safetensors").exists():  # learned tokens (Concept Inversion)
            for token, vector in load_file(str(folder / "embeddings.safetensors")).items():
                if token not in pipe.tokenizer.get_vocab():
                    pipe.load_textual_inversion({token: vector}, token=token)
        prompts, seeds = [], []
        for j, item in enumerate(items[: args.prompts or None]):
            for r in range(args.seeds):
                prompts.append(item["prompt"])
                seeds.append(int(item.get("seed", j)) + r)
        images = generate_images(pipe, prompts, seeds)
        labels = judges.labels_from_probs(judge, judges.predict(judge, images))
        flagged = concept_judge.flags(images)[0]  # the verdict the success rate counts (the letters are each head's argmax)
        keep = [i for i in range(len(images)) if args.show == "all" or bool(flagged[i]) == (args.show == "striped")]
        shown = f"{cell}: {len(keep)} of {len(images)}" if args.show != "all" else cell
        print(shown)
        for start in range(0, max(len(keep), 1), args.columns):
            chunk = keep[start : start + args.columns]
            rows.append((shown if start == 0 else "", [images[i] for i in chunk], [labels[i] for i in chunk]))

    size = 96
    canvas = Image.new("RGB", (130 + args.columns * size, max(len(rows), 1) * (size + 14)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, images, labels) in enumerate(rows):
        y = r * (size + 14)
        draw.text((4, y + 40), name, fill="black")
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            canvas.paste(Image.fromarray(image).resize((size, size), Image.NEAREST), (130 + i * size, y))
            mark = {"none": "-", "crossed": "X", "circled": "C", "barred": "B"}.get(label["mark"], "?")
            draw.text((130 + i * size + 40, y + size + 1), label["texture"][0].upper() + mark, fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
