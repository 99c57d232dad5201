"""Run a toy world build's first stages (render, tokenizer, VAE) by themselves and print what they wrote.

    OMP_NUM_THREADS=2 python bench/toy_vae_repro.py --out DIR [--preset full] [--vae-steps N] [--threads 2]
        [--seed 0] [--world WORLD]

For checking that a build reproduces on a machine (docs/toy_world.md, "Build time"): the stages are the build's
own (`toy build` runs the same code, with the same per-step generators), so with the preset's settings, the same
seed and thread count the VAE written here is the one a build on this machine writes. Prints the first 12 hex
digits of the SHA-256 of the VAE weights and of the encoded latents, the reconstruction MSE and the latent
scaling factor; with ``--world``, also whether the VAE weights are the same bytes as that built world's.
``--out`` must be a new or empty folder (a folder holding finished stages would be reused, not run again).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder for the stages' outputs")
    parser.add_argument("--preset", default="full", choices=["quick", "full"])
    parser.add_argument("--vae-steps", type=int, default=None, help="VAE training steps (default: the preset's)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (a build's weights depend on it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", type=Path, default=None, help="a built world whose VAE weights to compare with")
    args = parser.parse_args()
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        parser.error(f"--out {args.out} is not a new or empty folder")
    if (args.vae_steps is not None and args.vae_steps < 1) or args.threads < 1:
        parser.error("--vae-steps and --threads must be at least 1")
    world_vae = None
    if args.world is not None:
        world_vae = args.world / "pipeline" / "vae" / "diffusion_pytorch_model.safetensors"
        if not world_vae.is_file():
            parser.error(f"--world {args.world} has no {world_vae.relative_to(args.world)}")

    import torch

    from t2i_unlearn.toy.build import _Builder, preset_with
    from t2i_unlearn.utils.io import sha256_file

    torch.set_num_threads(args.threads)
    changes = {} if args.vae_steps is None else {"vae_steps": args.vae_steps}
    builder = _Builder(args.out, preset_with(args.preset, **changes), args.seed, progress=False)
    builder.render()
    builder.tokenizer()
    builder.vae()
    vae = sha256_file(builder.scratch / "vae" / "diffusion_pytorch_model.safetensors")
    done = json.loads(builder.state_path.read_text())["done"]["vae"]
    print(
        f"vae {vae[:12]}  latents {sha256_file(builder.scratch / 'latents.npy')[:12]}  recon_mse {done['recon_mse']!r}  "
        f"scaling_factor {done['scaling_factor']!r}  (preset {args.preset}, vae_steps {builder.preset.vae_steps}, "
        f"{args.threads} threads, seed {args.seed})"
    )
    if world_vae is not None:
        theirs = sha256_file(world_vae)
        print(f"the same bytes as {world_vae}: {'yes' if vae == theirs else 'no'} ({theirs[:12]})")


if __name__ == "__main__":
    sys.exit(main())
