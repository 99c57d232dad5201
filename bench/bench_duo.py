"""DUO training cost: throughput and peak memory.

    python bench/bench_duo.py toy  [--world quick] [--steps 30] [--batch-size 8]
    python bench/bench_duo.py sd14 [--device cpu|cuda] [--batch-size 1] [--rounds 3] [--steps 2] [--mixed-precision bf16]

``toy``: the toy world's model on CPU (the world must be built: ``t2i-unlearn toy build``), through
``train_duo`` itself; throughput over the steps after ``--warmup`` (from the training log), peak RSS.

``sd14``: SD 1.4's architecture with random weights: its UNet (860M parameters), its VAE and a CLIP
ViT-L/14-sized text encoder, 512x512 images = 64x64 latents, LoRA rank 32 on self-attention (the
authors' setting), built in memory (nothing is written). Four things are timed, alternating round by
round so that a change in the machine's load hits them alike (``--rounds`` rounds of ``--steps``
steps each, after one untimed warm-up step of each):

- ``ours``: one DUO optimiser step as ``train_duo`` takes it (``draw_batch`` + ``duo_step`` + backward
  + clip + AdamW), on latents and empty-prompt conditioning encoded once before training;
- ``floor``: the compute floor: the reference forward (LoRA off, no gradients) and the policy
  forward + backward over the same inputs (x+, x-, and the prior term's pure noise: 3 rows per pair),
  nothing else (no sampling, loss terms, clipping or optimiser);
- ``reencode``: ``ours`` plus what a training script without caching pays each step: both images of
  every pair through the VAE encoder and the empty prompt through the text encoder;
- ``ours_gc``: ``ours`` with gradient checkpointing (``--no-gc-timing`` leaves it out).

Peak memory of ``ours`` is measured with and without gradient checkpointing: on CUDA
``torch.cuda.max_memory_allocated`` after a reset; on CPU the process's resident memory sampled every
5 ms during one step of each (checkpointing first), reported as the peak and
as its rise over the resting RSS (the weights). Prints a table and one JSON line (``--json FILE`` also
writes it).

GPU command (bf16, what a user pays per step on one GPU), batch 1 and 4:

    python bench/bench_duo.py sd14 --device cuda --mixed-precision bf16 --batch-size 1 --rounds 5 --steps 10
    python bench/bench_duo.py sd14 --device cuda --mixed-precision bf16 --batch-size 4 --rounds 5 --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

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


def _sd14_pipeline(root: Path, tiny: bool = False) -> Any:
    """A random-weight pipeline with SD 1.4's UNet and VAE architectures and a ViT-L/14-sized CLIP text encoder, in memory.

    ``tiny``: the same layout with a tenth of the widths (to test this script, not to measure).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    tok = CLIPTokenizer.from_pretrained(_tiny_clip_tokenizer(root / "tok"), model_max_length=77)
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(32, 64, 128, 128) if tiny else (320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=64 if tiny else 768,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32, 32, 32) if tiny else (128, 256, 512, 512),
        norm_num_groups=8 if tiny else 32,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    te = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=64 if tiny else 768,
            intermediate_size=128 if tiny else 3072,
            num_attention_heads=4 if tiny else 12,
            num_hidden_layers=2 if tiny else 12,
            vocab_size=len(tok),
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=False)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )


class _RSSPeak:
    """Peak resident memory of this process while the block runs, sampled every 5 ms from /proc (CPU case)."""

    def __enter__(self) -> _RSSPeak:
        self.rest = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_sd14(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``ours`` / ``floor`` / ``reencode`` / ``ours_gc`` alternately and measure peak memory with and without checkpointing."""
    from accelerate import Accelerator

    from t2i_unlearn.data import load_pairs
    from t2i_unlearn.methods.duo import DUOConfig, _encode_data, _family_ops, _setup_network, _setup_optimizer, draw_batch, duo_step, encode_latents

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda, but torch sees no GPU")
    batch = args.batch_size or 1
    mixed = args.mixed_precision if cuda else "no"
    config = DUOConfig(batch_size=batch, rank=args.rank, alpha=args.rank, mixed_precision=mixed, checkpoint_every=10**9, report_to=[])
    accelerator = Accelerator(mixed_precision=mixed, cpu=not cuda)
    dev = accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed, torch.float32)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        t = time.perf_counter()
        pipe = _sd14_pipeline(tmp, tiny=args.tiny)
        pairs = load_pairs(_pairs(tmp / "pairs", n=max(4, batch), size=128 if args.tiny else 512))
        build_s = time.perf_counter() - t
    ops = _family_ops(pipe, config)
    net = _setup_network(pipe, "sd1", config, None, dev, weight_dtype)
    data = _encode_data(pipe, ops, pairs, config, dev)
    params, net_p, optimizer = _setup_optimizer(net, config, None, accelerator)
    adapter = accelerator.unwrap_model(net_p)
    # the encoders, for the variant that does not cache (frozen, in the weight dtype, on the device)
    pipe.vae.to(dev, weight_dtype)
    pipe.text_encoder.to(dev, weight_dtype)
    images = torch.as_tensor(pairs.unsafe[:batch]), torch.as_tensor(pairs.safe[:batch])
    counter = iter(range(10**9))

    def ours() -> None:
        b = draw_batch(ops, data, config, next(counter), 0, 1, dev)
        loss, _ = duo_step(ops, net_p, adapter, b, config, weight_dtype, accelerator.autocast)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    fixed = draw_batch(ops, data, config, 0, 0, 1, dev)
    x_floor = torch.cat([ops.noisy(fixed.z_safe, fixed.noise, fixed.t_safe), ops.noisy(fixed.z_unsafe, fixed.noise, fixed.t_unsafe), fixed.prior_noise])
    x_floor = x_floor.to(weight_dtype)
    t_floor = torch.cat([fixed.t_safe, fixed.t_unsafe, fixed.t_prior])
    c_floor = {k: torch.cat([v, v, v]).to(weight_dtype) for k, v in fixed.empty.items()}

    def floor() -> None:
        with torch.no_grad(), accelerator.autocast():
            adapter.disable_adapters()
            ops.forward(net_p, x_floor, t_floor, c_floor)
            adapter.enable_adapters()
        with accelerator.autocast():
            pred = ops.forward(net_p, x_floor, t_floor, c_floor)
        pred.float().square().mean().backward()
        for p in params:
            p.grad = None

    def reencode() -> None:
        with torch.no_grad(), accelerator.autocast():
            for im in images:
                encode_latents(pipe.vae, im.numpy(), dev, batch_size=batch)
            ops.encode_prompts([""], dev)
        ours()

    def with_gc(fn: Any) -> Any:
        def run() -> None:
            adapter.enable_gradient_checkpointing()
            try:
                fn()
            finally:
                adapter.disable_gradient_checkpointing()

        return run

    variants = {"ours": ours, "floor": floor, "reencode": reencode}
    if args.gc_timing:
        variants["ours_gc"] = with_gc(ours)

    # ---- peak memory of `ours`, checkpointing first (CPU RSS seldom shrinks) ----
    memory: dict[str, Any] = {}
    for name, fn in (("gc", with_gc(ours)), ("no_gc", ours)):
        if cuda:
            fn()  # allocator warm-up for this setting
            sync()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            for _ in range(2):
                fn()
            sync()
            memory[name] = {"peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
        else:
            with _RSSPeak() as m:  # one step: large CPU tensors are mapped and unmapped, so RSS follows them
                fn()
            memory[name] = {"peak_rss_gib": round(m.peak / 2**30, 2), "rise_over_rest_gib": round((m.peak - m.rest) / 2**30, 2)}
        print(f"memory {name}: {memory[name]}", file=sys.stderr)

    # ---- alternating timing ----
    times: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():  # untimed warm-up of each
        fn()
    sync()
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            for _ in range(args.steps):
                sync()
                t = time.perf_counter()
                variants[name]()
                sync()
                times[name].append(time.perf_counter() - t)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in times.items()), file=sys.stderr)

    med = {k: statistics.median(v) for k, v in times.items()}
    hardware = torch.cuda.get_device_name() if cuda else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    result = {
        "case": "sd14-tiny" if args.tiny else "sd14",
        "hardware": hardware,
        "device": str(dev),
        "mixed_precision": mixed,
        "batch_pairs": batch,
        "rank": args.rank,
        "lora_targets": "attn1 to_q/to_k/to_v/to_out.0",
        "unet_params_m": round(sum(p.numel() for p in pipe.unet.parameters()) / 1e6, 1),
        "build_s": round(build_s, 1),
        "steps_timed_per_variant": args.rounds * args.steps,
        "s_per_step_median": {k: round(v, 4) for k, v in med.items()},
        "s_per_step_min": {k: round(min(v), 4) for k, v in times.items()},
        "pairs_per_s": round(batch / med["ours"], 3),
        "ours_over_floor": round(med["ours"] / med["floor"], 3),
        "reencode_over_ours": round(med["reencode"] / med["ours"], 3),
        "memory": memory,
        "memory_kind": "cuda max_memory_allocated" if cuda else "RSS sampled every 5 ms",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if "ours_gc" in med:
        result["gc_over_ours"] = round(med["ours_gc"] / med["ours"], 3)
    return result


def run_toy(args: argparse.Namespace) -> dict[str, Any]:
    """``train_duo`` on the toy world's model: pairs/s over the steps after warm-up, and peak RSS."""
    from t2i_unlearn.methods.duo import DUOConfig, train_duo
    from t2i_unlearn.toy.world import find_world

    world = Path(args.world) if Path(args.world).exists() else find_world(args.world.removeprefix("toy:"))  # "full" or "toy:full"
    batch = args.batch_size or 8
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = _pairs(tmp / "pairs", n=max(8, batch), size=32)
        config = DUOConfig(max_steps=args.steps, batch_size=batch, rank=args.rank, alpha=args.rank, checkpoint_every=10**9, report_to=["jsonl"])
        out = train_duo(str(world), data, tmp / "out", config, device="cpu")
        rows = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()][1:]
    t0 = next(r["elapsed_s"] for r in rows if r["step"] == args.warmup)
    t1 = rows[-1]["elapsed_s"]
    steps = rows[-1]["step"] - args.warmup
    return {
        "case": "toy",
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "batch_pairs": batch,
        "steps_timed": steps,
        "pairs_per_s": round(steps * batch / (t1 - t0), 3),
        "s_per_step": round((t1 - t0) / steps, 4),
        "peak_memory_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "memory_kind": "peak RSS",
        "rank": args.rank,
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=["toy", "sd14"])
    parser.add_argument("--world", default="quick", help="toy world preset or world directory (toy case)")
    parser.add_argument("--steps", type=int, default=None, help="toy: training steps (30); sd14: timed steps per variant per round (CPU 2, CUDA 10)")
    parser.add_argument("--warmup", type=int, default=5, help="toy: steps left out of the timing")
    parser.add_argument("--rounds", type=int, default=None, help="sd14: alternating rounds (default 2 on CPU, 5 on CUDA)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per step (toy 8, sd14 1)")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="sd14: cpu or cuda")
    parser.add_argument("--mixed-precision", default="bf16", choices=["no", "fp16", "bf16"], help="sd14 on CUDA")
    parser.add_argument("--no-gc-timing", dest="gc_timing", action="store_false", help="sd14: do not time the checkpointing variant")
    parser.add_argument("--tiny", action="store_true", help="sd14: a tenth of the widths at 128 px, to test this script (not a measurement)")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    if args.case == "toy":
        args.steps = args.steps or 30
        result = run_toy(args)
    else:
        args.steps = args.steps or (10 if cuda else 2)
        args.rounds = args.rounds or (5 if cuda else 2)
        result = run_sd14(args)
    if args.case == "sd14":
        print(f"{'variant':10} {'median s/step':>14} {'min s/step':>11}")
        for k, v in result["s_per_step_median"].items():
            print(f"{k:10} {v:14.4f} {result['s_per_step_min'][k]:11.4f}")
    line = json.dumps(result)
    print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(line + "\n")


if __name__ == "__main__":
    main()
