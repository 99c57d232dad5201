"""DUO: Direct Unlearning Optimization (Park et al., NeurIPS 2024).

DUO removes a visual concept by preference optimisation on image pairs (x+ safe, x- unsafe), where
x+ is an SDEdit of x- so that the pair differs only in the concept. The policy is the model with a
LoRA adapter; the reference is the same model with the adapter disabled. The objective, for one
noise e per pair and independent timesteps t+, t-:

    err(z, t)  = mean_{C,H,W} (e - eps(z_t, t, c))^2                         (per sample)
    Delta      = [err_pol(z+) - err_ref(z+)] - [err_pol(z-) - err_ref(z-)]
    L_DPO      = mean_b  -log sigmoid(-beta * Delta_b)
    L_prior    = mean (eps_pol(e', T, "") - eps_ref(e', T, ""))^2              (pure noise e', last timestep T)
    L          = L_DPO + lambda * L_prior,   lr = base_lr * 100 / beta,  lambda = base_lambda * beta / 100

The two loss terms are the pure functions below; the rest of the file is the trainer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods.duo_config import DUOConfig, config_from_dict, load_config
from t2i_unlearn.methods.duo_mining import MINED_DIR, MINED_PAIRS_DIR
from t2i_unlearn.methods.training import Family, TrainingLog, cat_cond, encode_latents, family_ops, index_cond

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The objective
# ---------------------------------------------------------------------------------------------


def dpo_unlearning_loss(
    err_safe: torch.Tensor, err_unsafe: torch.Tensor, ref_err_safe: torch.Tensor, ref_err_unsafe: torch.Tensor, beta: float
) -> torch.Tensor:
    """DUO's preference term: the batch mean of ``-log sigmoid(-beta * Delta)``.

    ``Delta_b = (err_safe_b - ref_err_safe_b) - (err_unsafe_b - ref_err_unsafe_b)``, where each
    argument is a ``[B]`` tensor of per-sample mean squared denoising errors (policy and reference,
    on the safe image x+ and the unsafe image x-). The loss falls as the policy denoises x+ better,
    and x- worse, than the reference does. Returns a scalar.
    """
    delta = (err_safe - ref_err_safe) - (err_unsafe - ref_err_unsafe)
    return -F.logsigmoid(-beta * delta).mean()


def output_preserving_loss(pred: torch.Tensor, ref_pred: torch.Tensor) -> torch.Tensor:
    """DUO's output-preserving term: ``mean((pred - ref_pred)^2)`` over every element.

    ``pred`` / ``ref_pred`` are the policy's and the reference's predictions for the same input
    (pure noise at the last timestep with the empty prompt). Returns a scalar.
    """
    return (pred.float() - ref_pred.float()).pow(2).mean()


def implicit_accuracy(err_safe: torch.Tensor, err_unsafe: torch.Tensor, ref_err_safe: torch.Tensor, ref_err_unsafe: torch.Tensor) -> torch.Tensor:
    """Share of pairs whose ``Delta < 0`` (the policy prefers x+ over x- more than the reference does)."""
    delta = (err_safe - ref_err_safe) - (err_unsafe - ref_err_unsafe)
    return (delta < 0).float().mean()


# ---------------------------------------------------------------------------------------------
# Settings (the fields themselves: DUOConfig in duo_config.py)
# ---------------------------------------------------------------------------------------------


# Fields that may change between a run and its resumption without changing the result.
_RESUMABLE_CHANGES = {"max_steps", "checkpoint_every", "keep_checkpoints", "log_every", "report_to"}


# ---------------------------------------------------------------------------------------------
# Model families (how to condition, noise, read the target) and VAE latents: in training.py,
# shared with Dark Miner
# ---------------------------------------------------------------------------------------------


def _family_ops(pipe: Any, config: DUOConfig) -> Family:
    return family_ops(pipe, config)


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------


def _step_generator(seed: int, step: int) -> torch.Generator:
    # One generator per step: a resumed run draws exactly what the uninterrupted one drew.
    return torch.Generator().manual_seed(seed * 1_000_003 + 7919 * step + 17)


def batch_indices(num_pairs: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Pair indices of global batch ``step``: epochs of seeded permutations, read in order."""
    start = step * batch_size
    out = []
    for pos in range(start, start + batch_size):
        epoch, offset = divmod(pos, num_pairs)
        perm = torch.randperm(num_pairs, generator=torch.Generator().manual_seed(seed * 7_777 + epoch))
        out.append(int(perm[offset]))
    return torch.tensor(out, dtype=torch.long)


@dataclass
class DUOData:
    """The pair folder, encoded once: VAE latent distributions and prompt conditioning.

    ``*_mean`` / ``*_std`` are ``[N, C, h, w]`` on the CPU (see :func:`encode_latents`). ``pair_cond``
    holds one entry per pair (the unsafe prompt) with ``conditioning: prompt``, else None. The
    ``keep_*`` fields hold the preserve images, None when the preservation term is off.
    """

    unsafe_mean: torch.Tensor
    unsafe_std: torch.Tensor
    safe_mean: torch.Tensor
    safe_std: torch.Tensor
    empty: dict[str, Any]
    pair_cond: dict[str, Any] | None = None
    keep_mean: torch.Tensor | None = None
    keep_std: torch.Tensor | None = None
    keep_cond: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.unsafe_mean)

    def add(self, latents: dict[str, torch.Tensor], cond: dict[str, torch.Tensor]) -> None:
        """Append pairs (a mining round's, see :mod:`~t2i_unlearn.methods.duo_mining`): their ``unsafe_mean`` ...
        ``safe_std`` latents, all conditioned on the one-row ``cond`` when pairs carry their own conditioning."""
        if not latents:
            return
        n = len(latents["unsafe_mean"])
        for name in ("unsafe_mean", "unsafe_std", "safe_mean", "safe_std"):
            setattr(self, name, torch.cat([getattr(self, name), latents[name]]))
        if self.pair_cond is not None:
            rows = {k: v.to(self.pair_cond[k]).expand(n, *v.shape[1:]) for k, v in cond.items()}
            self.pair_cond = cat_cond(self.pair_cond, rows)


@dataclass
class DUOBatch:
    """What one step draws, for this process's slice of the global batch, on the training device.

    ``z_safe`` / ``z_unsafe``: latent samples of x+ and x-; ``noise``: the noise e shared by a pair;
    ``t_safe`` / ``t_unsafe``: their timesteps; ``prior_noise`` / ``t_prior``: the output-preserving
    input e' and its timestep T; ``pair_cond`` / ``empty``: the pairs' and the empty prompt's
    conditioning. ``z_keep`` ... ``keep_cond`` are the preserve images' inputs, None when the term is off.
    """

    z_safe: torch.Tensor
    z_unsafe: torch.Tensor
    noise: torch.Tensor
    t_safe: torch.Tensor
    t_unsafe: torch.Tensor
    prior_noise: torch.Tensor
    t_prior: torch.Tensor
    pair_cond: dict[str, Any]
    empty: dict[str, Any]
    z_keep: torch.Tensor | None = None
    keep_noise: torch.Tensor | None = None
    t_keep: torch.Tensor | None = None
    keep_cond: dict[str, Any] | None = None


def draw_batch(ops: Family, data: DUOData, config: DUOConfig, step: int, rank: int, world: int, device: torch.device) -> DUOBatch:
    """Draw step ``step``'s batch: pair indices, latent samples, noise and timesteps, for process ``rank`` of ``world``.

    The whole global batch is drawn on every process from one generator per step, then this
    process's slice is kept: the same numbers are used whatever the number of processes, and a
    resumed run draws what the uninterrupted one drew.
    """
    local = config.batch_size // world
    lo, hi = rank * local, (rank + 1) * local
    gen = _step_generator(config.seed, step)
    idx = batch_indices(len(data), config.batch_size, config.seed, step)
    shape = (config.batch_size, *data.unsafe_mean.shape[1:])
    noise = torch.randn(shape, generator=gen)
    n_safe, n_unsafe = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    t_safe = ops.sample_t(gen, config.batch_size)
    t_unsafe = ops.sample_t(gen, config.batch_size) if config.independent_timesteps else t_safe.clone()
    prior_noise = torch.randn(shape, generator=gen)
    idx, noise, n_safe, n_unsafe, t_safe, t_unsafe, prior_noise = (v[lo:hi] for v in (idx, noise, n_safe, n_unsafe, t_safe, t_unsafe, prior_noise))
    use_keep = data.keep_mean is not None
    if use_keep:
        # drawn after everything else, so runs without the term see the same numbers as before
        k_idx = torch.randint(len(data.keep_mean), (config.batch_size,), generator=gen)
        k_noise, k_sample = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
        t_keep = ops.sample_t(gen, config.batch_size)
        k_idx, k_noise, k_sample, t_keep = (v[lo:hi] for v in (k_idx, k_noise, k_sample, t_keep))

    scale = 1.0 if config.sample_latents else 0.0
    empty = index_cond(data.empty, torch.zeros(local, dtype=torch.long, device=device))
    batch = DUOBatch(
        z_safe=(data.safe_mean[idx] + scale * data.safe_std[idx] * n_safe).to(device),
        z_unsafe=(data.unsafe_mean[idx] + scale * data.unsafe_std[idx] * n_unsafe).to(device),
        noise=noise.to(device),
        t_safe=t_safe.to(device),
        t_unsafe=t_unsafe.to(device),
        prior_noise=prior_noise.to(device),
        t_prior=ops.prior_t(local).to(device),
        pair_cond=index_cond(data.pair_cond, idx.to(device)) if data.pair_cond is not None else empty,
        empty=empty,
    )
    if use_keep:
        batch.z_keep = (data.keep_mean[k_idx] + scale * data.keep_std[k_idx] * k_sample).to(device)
        batch.keep_noise, batch.t_keep = k_noise.to(device), t_keep.to(device)
        batch.keep_cond = index_cond(data.keep_cond, k_idx.to(device)) if data.keep_cond is not None else empty
    return batch


def duo_step(
    ops: Family, net: Any, adapter: Any, batch: DUOBatch, config: DUOConfig, weight_dtype: torch.dtype, autocast: Callable[[], Any]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DUO's loss on one batch: ``L = L_DPO + lambda * L_prior (+ preserve_weight * L_preserve)``.

    ``net`` is the denoiser with its LoRA (as the optimiser sees it), ``adapter`` the same model
    unwrapped (it switches the LoRA off for the reference pass), ``autocast`` the mixed-precision
    context. One batched reference call (LoRA off, no gradients) and one policy call evaluate the
    noised pairs, the output-preserving input and, when on, the preserve images; the pure loss
    functions at the top of this file turn their predictions into the objective. Returns the loss
    (with gradients) and the detached terms ``loss``, ``dpo``, ``prior``, ``implicit_acc`` and
    ``preserve`` (0 when the term is off).
    """
    local = len(batch.z_safe)
    x = torch.cat([ops.noisy(batch.z_safe, batch.noise, batch.t_safe), ops.noisy(batch.z_unsafe, batch.noise, batch.t_unsafe), batch.prior_noise])
    t = torch.cat([batch.t_safe, batch.t_unsafe, batch.t_prior])
    cond = cat_cond(batch.pair_cond, batch.pair_cond, batch.empty)
    use_keep = batch.z_keep is not None
    if use_keep:
        x = torch.cat([x, ops.noisy(batch.z_keep, batch.keep_noise, batch.t_keep)])
        t = torch.cat([t, batch.t_keep])
        cond = cat_cond(cond, batch.keep_cond)
    cond = {k: v.to(weight_dtype) for k, v in cond.items()}
    x_in = x.to(weight_dtype)
    target = torch.cat([ops.target(batch.z_safe, batch.noise, batch.t_safe), ops.target(batch.z_unsafe, batch.noise, batch.t_unsafe)]).float()

    # reference: the same network with its adapter off, one batched call without gradients
    with torch.no_grad(), autocast():
        adapter.disable_adapters()
        ref = ops.forward(net, x_in, t, cond).float()
        adapter.enable_adapters()
    # policy: every input in one batched call
    with autocast():
        pred = ops.forward(net, x_in, t, cond).float()

    # err(z, t) per sample on x+ (first `local` rows) and x- (next `local`); then e' and the preserve images
    dims = tuple(range(1, pred.ndim))
    err = (pred[: 2 * local] - target).pow(2).mean(dim=dims)
    ref_err = (ref[: 2 * local] - target).pow(2).mean(dim=dims)
    dpo = dpo_unlearning_loss(err[:local], err[local:], ref_err[:local], ref_err[local:], config.beta)
    prior = output_preserving_loss(pred[2 * local : 3 * local], ref[2 * local : 3 * local])
    loss = dpo + config.effective_lambda * prior
    keep = output_preserving_loss(pred[3 * local :], ref[3 * local :]) if use_keep else torch.zeros((), device=pred.device)
    if use_keep:
        loss = loss + config.preserve_weight * keep
    acc = implicit_accuracy(err[:local], err[local:], ref_err[:local], ref_err[local:])
    logs = {"loss": loss.detach(), "dpo": dpo.detach(), "prior": prior.detach(), "implicit_acc": acc, "preserve": keep.detach()}
    return loss, logs


def _mean_terms(accelerator: Any, logs: dict[str, torch.Tensor], step: int, last_good: Path | None) -> dict[str, float]:
    """The loss terms averaged over the processes; :class:`UserError` when one is not finite (the run stops)."""
    parts = accelerator.reduce(torch.stack(list(logs.values())).float(), reduction="mean")
    if not torch.isfinite(parts).all():
        where = f"; last good checkpoint: {last_good}" if last_good is not None else "; no checkpoint was written yet"
        raise UserError(f"loss became {parts[0].item()} at step {step + 1}: stopped{where} (lower --lr or --beta)")
    return {k: v.item() for k, v in zip(logs, parts, strict=True)}


def _log_row(done: int, terms: dict[str, float], grad_norm: Any, config: DUOConfig, preserve: bool, elapsed: float, steps_run: int) -> dict[str, Any]:
    """One ``logs.jsonl`` line after step ``done`` (``preserve`` only when the term is on)."""
    row: dict[str, Any] = {"step": done, **{k: v for k, v in terms.items() if k != "preserve"}, "lr": config.effective_lr}
    if preserve:
        row["preserve"] = terms["preserve"]
    if grad_norm is not None:
        row["grad_norm"] = float(grad_norm)
    row["elapsed_s"] = elapsed
    row["pairs_per_s"] = steps_run * config.batch_size / max(elapsed, 1e-9)
    return row


# ---- checkpoints: where a run starts, what it saves, what it resumes from ----


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))


def _same_run(saved: dict[str, Any], config: DUOConfig) -> str | None:
    now = config.to_dict()
    for key, value in saved.items():
        if key not in _RESUMABLE_CHANGES and now.get(key) != value:
            return f"{key} was {value!r}, now {now.get(key)!r}"
    return None


def _starting_point(out: Path, config: DUOConfig, resume: bool, overwrite: bool, main: bool, accelerator: Any, data_hash: str) -> tuple[int, Path | None, bool]:
    """``(start step, checkpoint to resume from or None, already finished)`` for the output folder ``out``.

    The output rule (:func:`~t2i_unlearn.utils.io.claim_output`): the same run, finished, is reused; the
    same run, stopped, continues from its latest checkpoint (also without ``resume``); anything else in a
    non-empty ``out`` is refused unless ``overwrite`` (then it is deleted).
    """
    from t2i_unlearn import adapters
    from t2i_unlearn.utils.io import DONE, claim_output, ensure_writable_dir

    start_step, checkpoint = 0, None
    claim = claim_output(out, "a DUO run", _duo_recogniser(config, data_hash), overwrite)
    if claim.status == DONE:
        return config.max_steps, None, True
    accelerator.wait_for_everyone()
    if main:
        if claim.status == "replace":
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        ensure_writable_dir(out)
    accelerator.wait_for_everyone()
    existing = _checkpoints(out) if out.exists() else []
    if resume or existing:  # the same run, stopped: continue from its latest checkpoint
        if not existing:
            raise UserError(f"--resume: no checkpoint in {out / 'checkpoints'}")
        checkpoint = existing[-1]
        saved = json.loads((checkpoint / "state.json").read_text())
        why = _same_run(saved["config"], config)
        if why:
            raise UserError(f"--resume: settings differ from the checkpoint's ({why})")
        start_step = int(saved["step"])
        if start_step > config.max_steps:
            raise UserError(f"--resume: the latest checkpoint is at step {start_step}, past --max-steps {config.max_steps}")
        if start_step >= config.max_steps and (out / adapters.LORA_FILE).exists():
            return start_step, checkpoint, True
    elif main:  # a run stopped before its first checkpoint: start it over
        for name in ("checkpoints", "logs.jsonl", "tensorboard", adapters.LORA_FILE, MINED_DIR, MINED_PAIRS_DIR):
            p = out / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    return start_step, checkpoint, False


def _save_checkpoint(
    out: Path, step: int, network: torch.nn.Module, optimizer: Any, scaler: Any, config: DUOConfig, extra: Callable[[Path], None] | None = None
) -> Path:
    from safetensors.torch import save_file

    from t2i_unlearn.adapters import lora_state
    from t2i_unlearn.utils.io import atomic_directory, atomic_write_json

    final = out / "checkpoints" / f"step-{step:06d}"
    with atomic_directory(final) as tmp:
        save_file(lora_state(network), str(tmp / "lora.safetensors"))
        state = {"optimizer": optimizer.state_dict()}
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
        torch.save(state, tmp / "optimizer.pt")
        atomic_write_json(tmp / "state.json", {"step": step, "config": config.to_dict()})
        if extra is not None:  # what else the run must resume with (the mining rounds' pairs)
            extra(tmp)
    for old in _checkpoints(out)[: -config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


# ---- set-up: model with its LoRA, data, optimiser ----


def _setup_network(pipe: Any, family: str, config: DUOConfig, checkpoint: Path | None, device: torch.device, weight_dtype: torch.dtype) -> Any:
    """The pipeline's denoiser with a fresh LoRA (or the checkpoint's), on ``device``, in training mode."""
    from safetensors.torch import load_file

    from t2i_unlearn import adapters

    net = adapters.denoiser(pipe)
    targets = config.target_modules or adapters.default_targets(family)
    init = True if config.init_lora_weights == "default" else config.init_lora_weights  # peft's True = Kaiming-uniform A
    adapters.add_lora(net, config.rank, config.alpha, targets, init=init, seed=config.seed)
    if checkpoint is not None:
        adapters.load_lora_state(net, load_file(str(checkpoint / "lora.safetensors")))
    net.to(device)
    if weight_dtype != torch.float32:
        # frozen weights in half precision, trainable LoRA weights in float32 (autocast does the rest)
        for p in net.parameters():
            p.data = p.data.to(torch.float32 if p.requires_grad else weight_dtype)
    if config.gradient_checkpointing:
        net.enable_gradient_checkpointing()
    net.train()
    return net


def _encode_data(pipe: Any, ops: Family, pairs: Any, config: DUOConfig, device: torch.device) -> DUOData:
    """Encode the pairs (and the preserve images when the term is on) once; the encoders go back to the CPU."""
    frozen = [getattr(pipe, name, None) for name in ("text_encoder", "text_encoder_2", "text_encoder_3", "vae")]
    for part in frozen:
        if part is not None:
            part.requires_grad_(False).to(device)
    unsafe_mean, unsafe_std = encode_latents(pipe.vae, pairs.unsafe, device)
    safe_mean, safe_std = encode_latents(pipe.vae, pairs.safe, device)
    data = DUOData(unsafe_mean, unsafe_std, safe_mean, safe_std, empty=ops.encode_prompts([""], device))
    if config.conditioning == "prompt":
        data.pair_cond = ops.encode_prompts(pairs.unsafe_prompts, device)
    if config.preserve_weight > 0 and pairs.preserve is not None:
        data.keep_mean, data.keep_std = encode_latents(pipe.vae, pairs.preserve, device)
        data.keep_cond = ops.encode_prompts(pairs.preserve_prompts, device) if config.conditioning == "prompt" else None
    for part in frozen:
        if part is not None:
            part.to("cpu")  # not needed any more: free accelerator memory
    return data


def _setup_optimizer(net: Any, config: DUOConfig, checkpoint: Path | None, accelerator: Any) -> tuple[list[torch.nn.Parameter], Any, Any]:
    """``(trainable parameters, prepared network, prepared AdamW)``, with the checkpoint's optimiser (and scaler) state."""
    from t2i_unlearn.utils.io import safe_torch_load

    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=config.effective_lr, betas=(config.adam_beta1, config.adam_beta2), weight_decay=config.weight_decay, eps=config.adam_epsilon
    )
    opt_state = safe_torch_load(checkpoint / "optimizer.pt") if checkpoint is not None else None
    if opt_state is not None:
        optimizer.load_state_dict(opt_state["optimizer"])
    net_p, optimizer = accelerator.prepare(net, optimizer)
    if opt_state is not None and "scaler" in opt_state and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(opt_state["scaler"])
    return params, net_p, optimizer


def _duo_recogniser(config: DUOConfig, data_hash: str) -> Any:
    """What an existing, non-empty ``--out`` of ``train duo`` holds: this run (finished or stopped), or something else."""
    from t2i_unlearn.adapters import LORA_FILE
    from t2i_unlearn.utils.io import DONE, OTHER, PARTIAL

    bookkeeping = {"checkpoints", "logs.jsonl", "tensorboard", "duo_config.json", "wandb", MINED_DIR, MINED_PAIRS_DIR}

    def recognise(path: Path) -> tuple[str, str]:
        checkpoints = _checkpoints(path)
        if not checkpoints:
            if (path / LORA_FILE).exists() or (path / "manifest.json").exists():
                return OTHER, "already holds a DUO run (or another LoRA) without checkpoints"
            if all(p.name in bookkeeping for p in path.iterdir()):
                return PARTIAL, ""  # stopped before its first checkpoint
            return OTHER, "is not a DUO run"
        try:
            saved = json.loads((checkpoints[-1] / "state.json").read_text())
            why = _same_run(saved["config"], config)
            step = int(saved["step"])
        except (OSError, ValueError, KeyError, TypeError):
            return OTHER, f"holds a DUO run whose latest checkpoint {checkpoints[-1].name} is unreadable"
        if why:
            return OTHER, f"holds a DUO run whose settings differ ({why})"
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError):
            return PARTIAL, ""  # stopped: continue it
        if manifest.get("inputs", {}).get("data") != data_hash:
            return OTHER, "holds a DUO run trained on other pair data"
        return (DONE, "") if step == config.max_steps and (path / LORA_FILE).exists() else (PARTIAL, "")

    return recognise


def train_duo(
    model: str,
    data: str | Path,
    out: str | Path,
    config: DUOConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = False,
    command: str = "t2i-unlearn train duo",
) -> Path:
    """Train one DUO LoRA on the pair folder ``data``; write it to ``out``; return ``out``.

    ``out`` receives ``pytorch_lora_weights.safetensors`` (diffusers format), ``README.md`` (model
    card), ``manifest.json``, ``duo_config.json``, ``logs.jsonl`` and ``checkpoints/``. ``out``
    follows the output rule of :func:`~t2i_unlearn.utils.io.claim_output`: the same run, finished,
    is reused; stopped, it is continued from its latest checkpoint (same settings required, except
    ``max_steps`` and the bookkeeping fields; ``resume`` insists on a checkpoint); anything else is
    refused unless ``overwrite``. Under ``accelerate launch`` the global batch is split
    over the processes. A non-finite loss stops training with :class:`UserError`, keeping the last
    good checkpoint. With ``preserve_weight > 0`` and a pair folder without preserve images, the
    preservation term is left out: a warning, and ``preserve_weight_used: 0`` in the settings written
    to ``duo_config.json``, the model card and the manifest. With ``mine_rounds > 0`` training pauses at
    the round boundaries for a mining round that adds pairs (:mod:`~t2i_unlearn.methods.duo_mining`;
    ``out`` then also holds ``mined/`` and ``mined_pairs/``); with 0 (the default) nothing of it runs.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from t2i_unlearn import adapters
    from t2i_unlearn.data import load_pairs
    from t2i_unlearn.models import load_pipeline, pipeline_family, resolve_model
    from t2i_unlearn.utils.io import atomic_write_json, make_manifest

    config = config or DUOConfig()
    config.validate()
    out = Path(out)
    pairs = load_pairs(data)

    on_gpu = torch.cuda.is_available() and device != "cpu"
    mixed = config.mixed_precision if on_gpu else "no"
    accelerator = Accelerator(mixed_precision=mixed, cpu=not on_gpu)
    world, rank = accelerator.num_processes, accelerator.process_index
    if config.batch_size % world:
        raise UserError(f"batch_size {config.batch_size} is not divisible by the {world} processes")
    main = accelerator.is_main_process

    # ---- set-up: output folder (or the checkpoint to resume), model, data, optimiser ----
    start_step, checkpoint, finished = _starting_point(out, config, resume, overwrite, main, accelerator, pairs.data_hash)
    if finished:
        logger.info("%s already holds this DUO run (step %d); reusing it", out, start_step)
        return out
    dev = accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed, torch.float32)
    pipe = load_pipeline(model, device="cpu", dtype=torch.float32)
    family = pipeline_family(pipe)
    ops = _family_ops(pipe, config)
    net = _setup_network(pipe, family, config, checkpoint, dev, weight_dtype)
    preserve_off = config.preserve_weight > 0 and pairs.preserve is None
    if preserve_off:
        logger.warning(
            "preserve_weight is %s but %s has no preserve images (no `preserve:` prompts in its concept spec): training without the preservation term",
            config.preserve_weight,
            pairs.root,
        )
    duo_data = _encode_data(pipe, ops, pairs, config, dev)

    params, net_p, optimizer = _setup_optimizer(net, config, checkpoint, accelerator)
    unwrapped = accelerator.unwrap_model(net_p)
    miner = None
    if config.mine_rounds:  # pairs mined against the adapter in rounds (duo_mining.py); off by default
        from t2i_unlearn.methods.duo_mining import PairMiner

        if world > 1:
            raise UserError("mine_rounds runs on one process; train with mined pairs without 'accelerate launch' (or with one process)")
        miner = PairMiner(pipe, unwrapped, ops, config, pairs, duo_data.unsafe_mean.clone(), model, out, dev, accelerator.autocast)
        for mined in miner.restore(checkpoint):  # the pairs earlier rounds added, as the checkpoint holds them
            duo_data.add(mined.latents, mined.cond)

    def save_checkpoint(done: int) -> Path:
        inner = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
        return _save_checkpoint(out, done, unwrapped, inner, accelerator.scaler, config, miner.save if miner is not None else None)

    # ---- bookkeeping ----
    lam = config.effective_lambda
    settings = {
        **config.to_dict(),
        "effective_lr": config.effective_lr,
        "effective_lambda": lam,
        "family": family,
        "processes": world,
        "mixed_precision_used": mixed,
    }
    if preserve_off:
        settings["preserve_weight_used"] = 0.0
        settings["preserve_term"] = "off: the pair data has no preserve images (no `preserve:` prompts in its concept spec)"
    if miner is not None:
        settings["mining_after_steps"] = config.mining_steps()
    if main:
        atomic_write_json(out / "duo_config.json", settings)
    log = TrainingLog(out, config, main, start_step)
    if main and start_step == 0:
        log.log({"step": 0, "base_lr": config.base_lr, "lr": config.effective_lr, "base_lambda": config.base_lambda, "lambda": lam, "beta": config.beta})
    logger.info(
        "DUO on %s (%s): %d pairs, %d steps, batch %d over %d processes, lr %.3g, lambda %.3g",
        model,
        family,
        len(pairs),
        config.max_steps,
        config.batch_size,
        world,
        config.effective_lr,
        lam,
    )

    # ---- the loop ----
    bar = tqdm(total=config.max_steps, initial=start_step, desc="DUO", disable=not (progress and main), dynamic_ncols=True)
    t0 = time.perf_counter()
    last_good = checkpoint
    try:
        for step in range(start_step, config.max_steps):
            if miner is not None and miner.due(step):  # a round boundary: mine, add pairs, checkpoint them
                mined = miner.run(step)
                duo_data.add(mined.latents, mined.cond)
                log.log(mined.info)
                last_good = save_checkpoint(step)
            batch = draw_batch(ops, duo_data, config, step, rank, world, dev)
            loss, logs = duo_step(ops, net_p, unwrapped, batch, config, weight_dtype, accelerator.autocast)
            terms = _mean_terms(accelerator, logs, step, last_good)

            accelerator.backward(loss)
            grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm) if accelerator.sync_gradients else None
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            done = step + 1
            bar.update(1)
            if main and (done % config.log_every == 0 or done == config.max_steps):
                row = _log_row(done, terms, grad_norm, config, batch.z_keep is not None, time.perf_counter() - t0, done - start_step)
                log.log(row)
                bar.set_postfix(loss=f"{row['loss']:.4g}", acc=f"{row['implicit_acc']:.2f}")
            if done % config.checkpoint_every == 0 or done == config.max_steps:
                if main:
                    last_good = save_checkpoint(done)
                accelerator.wait_for_everyone()
    finally:
        bar.close()
        log.close()

    # ---- the result ----
    if main:
        adapters.save_lora(out, unwrapped, family)
        data_info: dict[str, Any] = {"path": str(pairs.root), "pairs": len(pairs), "sha256": pairs.data_hash}
        extra: dict[str, Any] = {}
        if miner is not None:
            rounds = miner.summary()
            data_info["mined pairs"] = f"{sum(r['pairs_added'] for r in rounds)} in {len(rounds)} rounds ({MINED_PAIRS_DIR}/, embeddings in {MINED_DIR}/)"
            extra["mined_rounds"] = rounds
        adapters.write_model_card(out, f"DUO LoRA: {out.name}", resolve_model(model), family, settings, data_info)
        manifest = make_manifest(
            command, settings, inputs={"model": resolve_model(model), "data": pairs.data_hash}, data=data_info, steps=config.max_steps, **extra
        )
        atomic_write_json(out / "manifest.json", manifest)
    accelerator.wait_for_everyone()
    return out


def train_duo_concept(model: str, data: str | Path, out: str | Path, config: DUOConfig | None = None, **kwargs: Any) -> list[Path]:
    """Train one LoRA per sub-concept when ``data`` holds one pair folder per sub-concept (``data/<sub>/metadata.jsonl``),
    else one LoRA. Returns the LoRA directories (``out/<sub>`` for sub-concepts)."""
    from t2i_unlearn.data import pair_folders

    data = Path(data)
    subs = pair_folders(data)  # one line for a file, a missing folder or an unfinished 'data pairs' run
    if subs == [data.expanduser()]:
        return [train_duo(model, data, out, config, **kwargs)]
    return [train_duo(model, sub, Path(out) / sub.name, dataclasses.replace(config or DUOConfig()), **kwargs) for sub in subs]


__all__ = [
    "DUOConfig",
    "config_from_dict",
    "dpo_unlearning_loss",
    "implicit_accuracy",
    "load_config",
    "output_preserving_loss",
    "train_duo",
    "train_duo_concept",
]
