"""Try a toy-world UNet recipe without a whole build: the UNet stage trained anew on a world's data, tokenizer and VAE,
then that world's judges and the build's quality table.

    OMP_NUM_THREADS=1 python bench/toy_unet_recipe.py --out runs/recipe_b32_lr2e-3 --set unet_batch=32 --set unet_lr=2e-3

``--set`` changes a field of the ``full`` preset (``--preset``); the fields the borrowed stages depend on (data set
size, VAE and judge training) must stay as the world was built. The data set is rendered again (deterministic) and
encoded with the world's VAE, so the UNet is the one ``t2i-unlearn toy build`` would train with this recipe on that
VAE (with the same thread count); only the judges are the world's own rather than trained again, and a build
trains the same judges from the same VAE. Writes a complete world in ``--out`` (its ``quality.json`` is the table
a build writes; resumable, reused when finished, ``--overwrite`` replaces what is there) and prints the quality
bars and the UNet stage's seconds. Docs: docs/toy_world.md, "Build time".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="toy", help="the world whose tokenizer, VAE and judges are used (a model id or pipeline folder)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="full")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change a preset field, e.g. --set unet_batch=32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace whatever --out holds (else a finished run is reused, an interrupted one resumed)")
    args = parser.parse_args()

    from t2i_unlearn.errors import UserError
    from t2i_unlearn.toy.world import get_preset

    try:
        base = get_preset(args.preset)
    except UserError as exc:
        parser.error(str(exc))
    types = {f.name: type(getattr(base, f.name)) for f in fields(base) if f.name != "name"}
    changes: dict = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in types or types[key] is tuple:
            parser.error(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(k for k, t in types.items() if t is not tuple)}")
        try:
            changes[key] = types[key](float(value)) if types[key] is int and float(value).is_integer() else types[key](value)
        except ValueError:
            parser.error(f"--set {item!r}: {value!r} is not a valid {types[key].__name__}")

    from t2i_unlearn.models import resolve_model
    from t2i_unlearn.toy.build import build_unet_on_world, preset_with

    try:
        world = Path(resolve_model(args.world))
        world = world.parent if world.name == "pipeline" else world
        start = time.time()
        out = build_unet_on_world(args.out, world, preset_with(args.preset, **changes), seed=args.seed, overwrite=args.overwrite)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    quality = json.loads((out / "quality.json").read_text())
    print(f"{out}: {changes} on {world}; {time.time() - start:.0f} s, UNet stage {quality['build']['unet']['seconds']} s")
    for key, bar in quality["bars"].items():
        print(f"  {key}: {bar['value']:.3f} ({bar['op']} {bar['bar']}: {'met' if bar['met'] else 'NOT met'})")


if __name__ == "__main__":
    main()
