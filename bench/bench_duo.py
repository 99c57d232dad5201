"""DUO training throughput (pairs/s) and peak memory.

    python bench/bench_duo.py toy   [--world quick] [--steps 30] [--batch-size 8]
    python bench/bench_duo.py sd14  [--steps 30] [--batch-size 4] [--gradient-checkpointing]

``toy``: the toy world's model on CPU (the world must be built: ``t2i-unlearn toy build``).
``sd14``: a UNet with SD 1.4's architecture (860M parameters) and random weights, SD's VAE and a
CLIP ViT-L/14-sized text encoder (random), 512x512 images = 64x64 latents, fp16 autocast, on CUDA.
Throughput is measured over the steps after the first ``--warmup`` (default 5), from the training
log; peak memory is the process's peak RSS (CPU) or ``torch.cuda.max_memory_allocated`` (GPU).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _pairs(root: Path, n: int, size: int) -> Path:
    """``n`` toy pairs (striped / plain render of one scene), upscaled to ``size`` pixels."""
    import dataclasses

    from t2i_unlearn.data import write_pair_folder
    from t2i_unlearn.toy.render import render_scene, sample_scene

    unsafe, safe = [], []
    for i in range(n):
        scene = sample_scene(np.random.default_rng([123, i]), texture="striped", mark="none")
        reps = size // 32
        unsafe.append(render_scene(scene).repeat(reps, 0).repeat(reps, 1))
        safe.append(render_scene(dataclasses.replace(scene, texture="plain")).repeat(reps, 0).repeat(reps, 1))
    return write_pair_folder(root, np.stack(unsafe), np.stack(safe), ["a striped shape"] * n, ["a plain shape"] * n)


def _tiny_clip_tokenizer(path: Path) -> Path:
    """A character-level CLIP tokenizer (the benchmark's text is only the empty prompt)."""
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(97, 123)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt")).save_pretrained(path)
    return path


def _sd14_pipeline(root: Path) -> Path:
    """Save a random-weight pipeline with SD 1.4's UNet and VAE architectures and a ViT-L/14-sized CLIP text encoder."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(_tiny_clip_tokenizer(root / "tok"))
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    te = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            vocab_size=len(tok),
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(root / "sd14-random")
    return root / "sd14-random"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=["toy", "sd14"])
    parser.add_argument("--world", default="quick", help="toy world preset or world directory (toy case)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--mixed-precision", default="fp16")
    args = parser.parse_args()

    from t2i_unlearn.methods.duo import DUOConfig, train_duo

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.case == "toy":
            from t2i_unlearn.toy.world import find_world

            world = Path(args.world) if Path(args.world).exists() else find_world(args.world.removeprefix("toy:"))  # "full" or "toy:full"
            model, size, batch, device = str(world), 32, args.batch_size or 8, "cpu"
        else:
            if not torch.cuda.is_available():
                sys.exit("sd14 needs CUDA")
            t = time.perf_counter()
            model, size, batch, device = str(_sd14_pipeline(tmp)), 512, args.batch_size or 4, "cuda"
            print(f"built the random SD 1.4 pipeline in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        data = _pairs(tmp / "pairs", n=max(8, batch), size=size)
        config = DUOConfig(
            max_steps=args.steps,
            batch_size=batch,
            rank=args.rank,
            alpha=args.rank,
            checkpoint_every=10**9,
            report_to=["jsonl"],
            gradient_checkpointing=args.gradient_checkpointing,
            mixed_precision=args.mixed_precision,
        )
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        out = train_duo(model, data, tmp / "out", config, device=device)
        rows = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()][1:]
        t0 = next(r["elapsed_s"] for r in rows if r["step"] == args.warmup)
        t1 = rows[-1]["elapsed_s"]
        pairs_per_s = (rows[-1]["step"] - args.warmup) * batch / (t1 - t0)
        if device == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**30
            hardware = torch.cuda.get_device_name()
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            hardware = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        result = {
            "case": args.case,
            "hardware": hardware,
            "batch_pairs": batch,
            "steps_timed": rows[-1]["step"] - args.warmup,
            "pairs_per_s": round(pairs_per_s, 3),
            "s_per_step": round((t1 - t0) / (rows[-1]["step"] - args.warmup), 4),
            "peak_memory_gib": round(peak, 3),
            "memory_kind": "cuda max_memory_allocated" if device == "cuda" else "peak RSS",
            "gradient_checkpointing": args.gradient_checkpointing,
            "mixed_precision": args.mixed_precision if device == "cuda" else "no",
            "rank": args.rank,
            "torch": torch.__version__,
        }
        print(json.dumps(result))


if __name__ == "__main__":
    main()
