"""Stack evaluation grids (``grid_<set>.png`` of ``t2i-unlearn eval``) into one picture, each under a title line.

    python scripts/stack_grids.py --out docs/img/objects.png "DUO toy, circle prompts=runs/obj/eval_duo_circle/grid_circle.png" ...

Each grid keeps its own row labels (base above the evaluated model, flagged images framed in red); the title
names the method and the prompt set. Used for the object and style-like concepts in docs/darkminer.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

TITLE_HEIGHT = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grids", nargs="+", metavar="TITLE=PNG", help="a title and the grid shown under it")
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args()
    entries = []
    for item in args.grids:
        title, sep, path = item.rpartition("=")
        if not sep or not title:
            sys.exit(f"error: {item!r} is not TITLE=PNG")
        if not Path(path).is_file():
            sys.exit(f"error: grid {path} does not exist")
        entries.append((title, Image.open(path).convert("RGB")))
    width = max(im.width for _, im in entries)
    canvas = Image.new("RGB", (width, sum(im.height + TITLE_HEIGHT for _, im in entries)), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for title, im in entries:
        draw.text((4, y + 2), title, fill="black")
        canvas.paste(im, (0, y + TITLE_HEIGHT))
        y += im.height + TITLE_HEIGHT
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(entries)} grids)")


if __name__ == "__main__":
    main()
