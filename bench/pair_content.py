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
    text = f" {_norm(prompt)} "
    hits = {value for value, words in values.items() if any(f" {w} " in text for w in words)}
    return hits.pop() if len(hits) == 1 else None


def _load(path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


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
        rows = [json.loads(line) for line in (args.pairs / "metadata.jsonl").read_text().splitlines() if line.strip()]
        files = [(r["role"], r["prompt"], r["file_name"]) for r in rows]
        if not all(isinstance(v, str) for item in files for v in item):
            raise ValueError("role, prompt and file_name must be strings")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        parser.error(f"{args.pairs}/metadata.jsonl is not a pair folder's metadata ({type(exc).__name__}: {exc})")
    if args.out is not None and (args.out.is_dir() or (args.out.parent.exists() and not args.out.parent.is_dir())):
        parser.error(f"--out {args.out} cannot be a file: it is a folder, or its parent is a file")

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
    result: dict = {"pairs": str(args.pairs), "world": args.world, "roles": {}}
    for role in ("unsafe", "safe", "preserve"):
        picked = [(prompt, name, named(prompt, shapes), named(prompt, colours)) for r, prompt, name in files if r == role]
        asked = [item for item in picked if item[2] and item[3]]
        if not asked:
            continue
        try:
            images = np.stack([_load(args.pairs / name) for _, name, _, _ in asked])
            read = labels_from_probs(judge, predict(judge, images))
        except (OSError, ValueError, RuntimeError) as exc:  # unreadable, mixed sizes, or not the judge's image size
            parser.error(f"cannot judge the {role} images of {args.pairs}: {exc}")
        shape_ok = [lab["shape"] == item[2] for lab, item in zip(read, asked, strict=True)]
        colour_ok = [lab["colour"] == item[3] for lab, item in zip(read, asked, strict=True)]
        both = [s and c for s, c in zip(shape_ok, colour_ok, strict=True)]
        result["roles"][role] = {
            "images": len(asked),
            "unnamed": len(picked) - len(asked),
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
