"""Time of one toy-world UNet training step (text encoder + UNet, the preset's batch, AdamW) in several forms.

    OMP_NUM_THREADS=1 python bench/toy_unet_step.py [--preset full] [--rounds 6] [--threads 1]
        [--forms eager channels_last compile bf16] [--batches 64 32] [--parts]

eager (what `toy build` runs), channels-last memory format, `torch.compile` of the UNet, and bf16 autocast
(CPU, for machines with AMX or AVX512-BF16): the same models (the build's own constructors), paired and
alternating round by round, two steps a round, each form at each of ``--batches`` (default: the preset's
batch); prints the median seconds a step of each and the compile time. ``--parts`` also times the parts of
an eager step at the last batch (forward + backward, gradient clipping, AdamW, the EMA update: the build's
own `ema_update`). Docs: docs/toy_world.md, "Build time".
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from t2i_unlearn.toy.build import ema_update, make_text_encoder, make_unet
from t2i_unlearn.toy.world import get_preset


class _Tok:
    """What make_text_encoder reads from a tokenizer, for a vocabulary of the toy world's size."""

    def __init__(self, n: int = 400):
        self.n, self.model_max_length, self.bos_token_id, self.eos_token_id, self.pad_token_id = n, 77, n - 2, n - 1, n - 1

    def __len__(self) -> int:
        return self.n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="full")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--forms", nargs="+", default=["eager", "channels_last", "compile"], choices=["eager", "channels_last", "compile", "bf16"])
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes to time, each with every form (default: the preset's)")
    parser.add_argument("--parts", action="store_true", help="also time the parts of an eager step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    tok = _Tok()
    steps = {}
    for form, batch in [(f, b) for b in args.batches or [preset.unet_batch] for f in args.forms]:
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, len(tok), (batch, tok.model_max_length), generator=g)
        z = torch.randn(batch, 4, 16, 16, generator=g)
        t = torch.randint(0, 1000, (batch,), generator=g)
        name = f"{form} batch {batch}" if args.batches else form
        text_encoder, unet, params, opt = _models(preset, tok)
        x = z
        if form == "channels_last":
            unet, x = unet.to(memory_format=torch.channels_last), z.contiguous(memory_format=torch.channels_last)
        forward = torch.compile(unet) if form == "compile" else unet

        def step(forward=forward, text_encoder=text_encoder, params=params, opt=opt, x=x, z=z, t=t, ids=ids, bf16=form == "bf16") -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                pred = forward(x, t, text_encoder(ids)[0]).sample
            loss = ((pred.float() - z) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()

        start = time.perf_counter()
        step()
        step()
        print(f"{name}: first two steps (warm-up{', compile' if form == 'compile' else ''}) {time.perf_counter() - start:.1f} s", flush=True)
        steps[name] = step
    times: dict[str, list[float]] = {form: [] for form in steps}
    for _ in range(args.rounds):
        for form, step in steps.items():
            start = time.perf_counter()
            step()
            step()
            times[form].append((time.perf_counter() - start) / 2)
    for form, values in times.items():
        print(f"{form}: median {statistics.median(values):.3f} s a step over {len(values)} rounds ({' '.join(f'{v:.3f}' for v in values)})")
    if args.parts:
        _time_parts(preset, tok, ids, z, t, args.rounds)


def _models(preset, tok) -> tuple[torch.nn.Module, torch.nn.Module, list[torch.nn.Parameter], torch.optim.Optimizer]:
    """The build's text encoder and UNet from the same seed, their parameters and an AdamW over them."""
    torch.manual_seed(0)
    text_encoder, unet = make_text_encoder(preset, tok), make_unet(preset)
    params = [*unet.parameters(), *text_encoder.parameters()]
    return text_encoder, unet, params, torch.optim.AdamW(params, lr=1e-4)


def _time_parts(preset, tok, ids, z, t, rounds: int) -> None:
    text_encoder, unet, params, opt = _models(preset, tok)
    modules = {"unet": unet, "text_encoder": text_encoder}
    ema = {k: {n: p.detach().clone() for n, p in m.state_dict().items()} for k, m in modules.items()}

    def forward_backward() -> None:
        loss = ((unet(z, t, text_encoder(ids)[0]).sample - z) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()

    parts = {
        "forward+backward": forward_backward,
        "clip": lambda: torch.nn.utils.clip_grad_norm_(params, 1.0),
        "adamw": opt.step,
        "ema": lambda: ema_update(ema, modules, preset.ema_decay),
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(rounds + 1):
        for name, part in parts.items():
            start = time.perf_counter()
            part()
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"part {name}: median {1000 * statistics.median(values[1:]):.1f} ms over {rounds} rounds")


if __name__ == "__main__":
    main()
