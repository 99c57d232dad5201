"""Do a toy pair folder's images show the shape and colour their prompts ask for? (the SDEdit twins especially)

    python bench/pair_content.py --world toy --pairs runs/duo_v2/pairs [--out pair_content.json]

For each role of the pair folder (unsafe, safe, preserve), the share of images in which the toy world's judge
reads the shape and the colour that the image's own prompt names, in any of the world's phrasings ("crimson
disc" is a red circle; prompts that name no shape or colour, or two, are left out and counted as ``unnamed``).
DUO learns the difference between an unsafe image and its safe twin: if the twins lost their subject's shape or
colour, the unlearned model would learn to lose them too. Prints one line per role and the JSON; ``--out``
writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def phrasings(spec: dict, attribute: str) -> dict[str, list[str]]:
    """Every phrasing of each value of a toy attribute (``world.yaml``: a list, or a dict with ``words``)."""
    out = {}
    for value, entry in spec[attribute].items():
        words = entry["words"] if isinstance(entry, dict) else entry
        out[value] = [_norm(w) for w in words if w]
    return out


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z]+", text.lower()))  # words only: "grass-green." -> "grass green"


def named(prompt: str, values: dict[str, list[str]]) -> str | None:
    """The one value whose phrasing the prompt uses as whole words (None if none, or more than one, is named)."""
    text = f" {_norm(str(prompt))} "
    hits = {value for value, words in values.items() if any(f" {w} " in text for w in words)}
    return hits.pop() if len(hits) == 1 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="toy", help="the toy world whose judge reads the images (toy, toy:quick or a world folder)")
    parser.add_argument("--pairs", type=Path, required=True, help="a pair folder ('data pairs' output)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    if not (args.pairs / "metadata.jsonl").exists():
        parser.error(f"{args.pairs} is not a pair folder (no metadata.jsonl)")
    if args.out is not None and (args.out.is_dir() or (args.out.parent.exists() and not args.out.parent.is_dir())):
        parser.error(f"--out {args.out} cannot be a file: it is a folder, or its parent is a file")

    from t2i_unlearn.data import load_pairs
    from t2i_unlearn.errors import UserError
    from t2i_unlearn.judges.toy import find_toy_judges

    try:  # the project's own reader: checks the rows, the images and their sizes
        pairs = load_pairs(args.pairs)
    except UserError as exc:
        parser.error(f"{args.pairs} is not a pair folder's metadata and images as 'data pairs' writes them: {exc}")

    import numpy as np

    from t2i_unlearn.toy.judges import labels_from_probs, load_judge, predict
    from t2i_unlearn.toy.render import world_spec
    from t2i_unlearn.utils.io import atomic_write_json

    try:
        judge = load_judge(find_toy_judges(args.world))
    except UserError as exc:
        parser.error(str(exc))
    spec = world_spec()
    shapes, colours = phrasings(spec, "shape"), phrasings(spec, "colour")
    roles = {"unsafe": (pairs.unsafe, pairs.unsafe_prompts), "safe": (pairs.safe, pairs.safe_prompts), "preserve": (pairs.preserve, pairs.preserve_prompts)}
    result: dict = {"pairs": str(args.pairs), "world": args.world, "roles": {}}
    for role, (images, prompts) in roles.items():
        asked = [(i, named(p, shapes), named(p, colours)) for i, p in enumerate(prompts)]
        asked = [item for item in asked if item[1] and item[2]]
        if not asked:
            continue
        try:
            read = labels_from_probs(judge, predict(judge, images[[i for i, _, _ in asked]]))
        except (ValueError, RuntimeError) as exc:  # images not of the judge's size
            parser.error(f"cannot judge the {role} images of {args.pairs}: {exc}")
        shape_ok = [lab["shape"] == shape for lab, (_, shape, _) in zip(read, asked, strict=True)]
        colour_ok = [lab["colour"] == colour for lab, (_, _, colour) in zip(read, asked, strict=True)]
        both = [s and c for s, c in zip(shape_ok, colour_ok, strict=True)]
        result["roles"][role] = {
            "images": len(asked),
            "unnamed": len(prompts) - len(asked),
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
