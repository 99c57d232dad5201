"""Erasure and the striped subjects' shape and colour along a DUO run, checkpoint by checkpoint (toy world).

    python bench/duo_toy_acceptance.py --world toy --out runs/duo_v2 --config toy --set max_steps=1000 \\
        --set checkpoint_every=50 --set keep_checkpoints=100 --lora-name curve_toy --n 100
    python bench/duo_toy_curve.py --world toy --run runs/duo_v2/curve_toy --n 100

For every checkpoint the run kept (``keep_checkpoints`` large enough to keep them all), the LoRA of that step draws
``--n`` striped prompts in the captions' phrasings and ``--n`` in held-out ones (the prompts and seeds of
``duo_toy_acceptance.py``); the world's judge says how many are striped (erased share = 1 - that) and how many show
the asked shape and colour, as a share of the base model's rate (and how far the images moved from the base's:
1 - the judge's perceptual distance). Prints one line a checkpoint and writes
``--run/curve.json`` (and ``--out`` PNG plot, when given). Used to choose the ``toy`` preset's steps and learning
rate (docs/duo.md, "Choosing the `toy` preset").
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="toy")
    parser.add_argument("--run", type=Path, required=True, help="a `train duo` output folder with its checkpoints/")
    parser.add_argument("--n", type=int, default=100, help="prompts per group (standard and held-out phrasings)")
    parser.add_argument("--every", type=int, default=1, help="measure every k-th kept checkpoint")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps (duo_toy_acceptance.py's default)")
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=None, help="PNG plot of the curve")
    args = parser.parse_args()
    checkpoints = sorted((args.run / "checkpoints").glob("step-[0-9]*"))
    if not (args.run / "duo_config.json").is_file() or not checkpoints:
        fail(f"{args.run} is not a DUO run with checkpoints (duo_config.json, checkpoints/step-*)")
    if min(args.n, args.every, args.steps) < 1:
        fail("--n, --every and --steps must be at least 1")

    import numpy as np
    from safetensors.torch import load_file

    from t2i_unlearn import adapters
    from t2i_unlearn.models import generate_images, load_pipeline, resolve_model
    from t2i_unlearn.toy.judges import labels_from_probs, load_judge, perceptual_distance, predict
    from t2i_unlearn.toy.quality import ACCEPTANCE_SEED, acceptance_groups, asked_shape_and_colour
    from t2i_unlearn.utils.io import atomic_write_bytes, atomic_write_json

    settings = json.loads((args.run / "duo_config.json").read_text())
    judge = load_judge(Path(resolve_model(args.world)).parent / "judges")
    pipe = load_pipeline(args.world)
    striped = acceptance_groups(args.n, ("striped", "striped_heldout"))
    groups = {"standard": striped["striped"], "heldout": striped["striped_heldout"]}
    seeds = list(range(ACCEPTANCE_SEED, ACCEPTANCE_SEED + args.n))

    def measure() -> tuple[dict[str, tuple[float, float]], dict]:
        out, images = {}, {}
        for name, (prompts, labels) in groups.items():
            images[name] = generate_images(pipe, prompts, seeds, steps=args.steps, guidance=args.guidance)
            pred = labels_from_probs(judge, predict(judge, images[name]))
            striped = float(np.mean([p["texture"] == "striped" for p in pred]))
            content = float(np.mean(asked_shape_and_colour(pred, labels)))
            out[name] = (striped, content)
        return out, images

    base, base_images = measure()
    net = adapters.denoiser(pipe)
    adapters.add_lora(net, settings["rank"], settings["alpha"], settings["target_modules"] or adapters.default_targets(settings["family"]))
    rows = []
    for checkpoint in checkpoints[args.every - 1 :: args.every]:
        adapters.load_lora_state(net, load_file(str(checkpoint / "lora.safetensors")))
        now, images = measure()
        row = {"step": int(checkpoint.name.split("-")[1])}
        for name, (striped, content) in now.items():
            row[f"{name}_erased"] = 1.0 - striped
            row[f"{name}_shape_colour_kept"] = content / base[name][1] if base[name][1] > 0 else None
            # how far the images moved from the base's (1 - the judge's perceptual distance; 1.0 = unchanged)
            row[f"{name}_preservation"] = 1.0 - float(np.mean(perceptual_distance(judge, base_images[name], images[name])))
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    result = {"run": str(args.run), "world": str(resolve_model(args.world)), "n": args.n, "base": base, "rows": rows}
    atomic_write_json(args.run / "curve.json", result)
    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.2))
        steps = [r["step"] for r in rows]
        for key, style in (("standard", "-"), ("heldout", "--")):
            ax.plot(steps, [r[f"{key}_erased"] for r in rows], "C0" + style, label=f"erased ({key})")
            ax.plot(steps, [r[f"{key}_shape_colour_kept"] for r in rows], "C1" + style, label=f"shape+colour kept ({key})")
        ax.set_xlabel("DUO step")
        ax.set_ylim(0, 1.15)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title(f"{args.run.name}: N = {args.n} per group", fontsize=9)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        atomic_write_bytes(args.out, buf.getvalue())  # no half-written plot if the run stops here
    print(f"wrote {args.run / 'curve.json'}")


if __name__ == "__main__":
    main()
