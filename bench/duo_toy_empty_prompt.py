"""What the toy world draws for the empty prompt, with and without unlearning adapters.

    python bench/duo_toy_empty_prompt.py --world toy --n 200 --lora "authors=runs/duo_v2/lora_authors" [--lora ...]

The authors' DUO recipe trains on the empty prompt only (``conditioning: empty``): this shows whether an
adapter erased the concept where it was trained (the empty prompt, which draws stripes in about half of the
base model's images) even when it erases nothing on prompts that ask for stripes. Every model draws the
same N seeds; with the empty prompt, classifier-free guidance has no effect (the conditional and the
unconditional prediction are the same). Prints, for the base and each adapter, the judge's striped and dotted
rates, and writes them as JSON to ``--out`` when given.
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
    parser.add_argument("--world", default="toy")
    parser.add_argument("--n", type=int, default=200, help="images per model")
    parser.add_argument("--lora", action="append", default=[], metavar="NAME=PATH", help="an adapter to measure (repeat)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=20_000, help="first sampling seed")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the rates")
    args = parser.parse_args()
    if args.n < 1 or args.steps < 1:
        parser.error("--n and --steps must be at least 1")
    loras = [item.split("=", 1) for item in args.lora]
    if any(len(item) != 2 or not item[0] or not item[1] for item in loras):
        parser.error("--lora takes NAME=PATH")
    for _, path in loras:
        if not Path(path).exists():
            parser.error(f"no adapter at {path}")

    from t2i_unlearn.errors import UserError
    from t2i_unlearn.judges.toy import find_toy_judges

    try:
        judges_dir = find_toy_judges(args.world)
    except UserError as exc:
        parser.error(str(exc))
    world = str(judges_dir.parent / "pipeline")

    from t2i_unlearn.models import generate_images, load_pipeline
    from t2i_unlearn.toy.judges import labels_from_probs, load_judge, predict
    from t2i_unlearn.utils.io import atomic_write_json

    judge = load_judge(judges_dir)
    seeds = list(range(args.seed, args.seed + args.n))
    rates = {}
    for name, lora in [("base", None), *loras]:
        pipe = load_pipeline(world, lora=lora)
        images = generate_images(pipe, [""] * args.n, seeds, steps=args.steps, guidance=1.0, batch_size=50)
        textures = [lab["texture"] for lab in labels_from_probs(judge, predict(judge, images))]
        rates[name] = {"striped": float(np.mean([t == "striped" for t in textures])), "dotted": float(np.mean([t == "dotted" for t in textures]))}
        print(f"{name}: empty prompt, {args.n} images: striped {rates[name]['striped']:.3f}, dotted {rates[name]['dotted']:.3f}", flush=True)
    result = {"world": world, "n": args.n, "steps": args.steps, "first_seed": args.seed, "adapters": dict(loras), "rates": rates}
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
