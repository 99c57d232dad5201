"""Do a toy pair folder's images show the shape and colour their prompts ask for? (the SDEdit twins especially)

    python bench/pair_content.py --world toy --pairs runs/duo_v2/pairs [--out pair_content.json]

For each role of the pair folder (unsafe, safe, preserve), the share of images in which the toy world's judge
reads the shape and the colour that the image's own prompt names (prompts that name no shape or colour are
left out and counted). DUO learns the difference between an unsafe image and its safe twin: if the twins lost
their subject's shape or colour, the unlearned model would learn to lose them too. Prints one line per role
and the JSON; ``--out`` writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def asked(prompt: str, shapes: list[str], colours: list[str]) -> tuple[str | None, str | None]:
    """The shape and the colour a prompt names (None where it names none), by whole words."""
    words = prompt.lower().replace("-", " ").replace(",", " ").split()
    return next((w for w in words if w in shapes), None), next((w for w in words if w in colours), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="toy", help="the toy world whose judge reads the images (toy, toy:quick or a world folder)")
    parser.add_argument("--pairs", type=Path, required=True, help="a pair folder ('data pairs' output)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    if not (args.pairs / "metadata.jsonl").exists():
        parser.error(f"{args.pairs} is not a pair folder (no metadata.jsonl)")

    from t2i_unlearn.errors import UserError
    from t2i_unlearn.judges.toy import find_toy_judges

    try:
        judges_dir = find_toy_judges(args.world)
    except UserError as exc:
        parser.error(str(exc))

    import numpy as np
    from PIL import Image

    from t2i_unlearn.toy.judges import labels_from_probs, load_judge, predict
    from t2i_unlearn.toy.render import attribute_values
    from t2i_unlearn.utils.io import atomic_write_json

    shapes, colours = attribute_values("shape"), attribute_values("colour")
    rows = [json.loads(line) for line in (args.pairs / "metadata.jsonl").read_text().splitlines() if line.strip()]
    judge = load_judge(judges_dir)
    result: dict = {"pairs": str(args.pairs), "world": args.world, "roles": {}}
    for role in ("unsafe", "safe", "preserve"):
        picked = [(r, asked(r["prompt"], shapes, colours)) for r in rows if r.get("role") == role]
        named = [(r, want) for r, want in picked if want[0] and want[1]]
        if not named:
            continue
        images = np.stack([np.asarray(Image.open(args.pairs / r["file_name"]).convert("RGB")) for r, _ in named])
        read = labels_from_probs(judge, predict(judge, images))
        shape_ok = [lab["shape"] == want[0] for lab, (_, want) in zip(read, named, strict=True)]
        colour_ok = [lab["colour"] == want[1] for lab, (_, want) in zip(read, named, strict=True)]
        both = [s and c for s, c in zip(shape_ok, colour_ok, strict=True)]
        result["roles"][role] = {
            "images": len(named),
            "unnamed": len(picked) - len(named),
            "shape_and_colour": float(np.mean(both)),
            "shape": float(np.mean(shape_ok)),
            "colour": float(np.mean(colour_ok)),
        }
        r = result["roles"][role]
        line = f"{role}: {r['images']} images: shape and colour as asked {r['shape_and_colour']:.3f}"
        print(f"{line} (shape {r['shape']:.3f}, colour {r['colour']:.3f})", flush=True)
    if not result["roles"]:
        parser.error(f"no image in {args.pairs} has a prompt that names a toy shape and colour")
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
