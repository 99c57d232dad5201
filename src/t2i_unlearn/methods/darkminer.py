"""Dark Miner (Meng et al., arXiv 2409.17682): mine, verify and circumvent, in rounds.

Each round mines a text conditioning ``c`` that makes the *current* (partly erased) model draw the
concept, checks that it really does, and then trains the adapter so that ``c`` draws what the frozen
model draws for an anchor ``c0``::

    mining        L_M  = E_{x in pool, t, e} || e - eps_theta(x_t | c, t) ||^2            (over c only)
    verifying     s(c) = mean_{x_e in pool} cos( E(x_c) - E(x_r), E(x_e) - E(x_r) )       (circumvent iff s(c) >= tau)
    circumventing L_C  = E || eps_theta(x_t | c) - eps_theta0(x_t | c0) ||^2
                  L_P  = sum_{r in {c0, "", -c}} w_r E || eps_theta(x_t | r) - eps_theta0(x_t | r) ||^2
                  L    = L_C + L_P                                                      (over the LoRA only)

``c`` is K token embeddings placed between the text encoder's BOS and EOS tokens (a multi-vector
textual-inversion token), so a mined ``c`` replays through ``eval --attack`` like Concept Inversion's
token. On SDXL ``c`` holds K vectors for each of the two encoders (stored side by side, ``[K, D1 + D2]``);
the UNet sees both encoders' penultimate states and the pooled embedding that follows from encoder 2's
output, exactly what a prompt holding the token would give (:func:`encode_mined`); ``-c`` negates both sets.
Embeddings that passed verification in earlier rounds stay in the circumvent set. The loop stops after
``patience`` consecutive rounds without a verified embedding, or after ``rounds``.

The loss terms are the pure functions below; then the three stages (:func:`mine`, :func:`verify`,
:func:`circumvent`), each testable alone on a :class:`MinerSetup`; then the loop (:func:`train_darkminer`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods.darkminer_config import MINED_DIR, POOL_DIR, RUN_BOOKKEEPING, DarkMinerConfig, load_config

logger = logging.getLogger(__name__)

STAGES = ("mine", "verify", "circumvent")
ATTACK_DIR = "attack_set"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
# Fields that may change between a run and its resumption without changing the result.
_RESUMABLE_CHANGES = {"keep_checkpoints", "report_to", "stop_after_stage", "rounds", "patience"}


# ---------------------------------------------------------------------------------------------
# The objective
# ---------------------------------------------------------------------------------------------


def mining_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mining objective ``L_M = mean (e - eps_theta(x_t | c, t))^2`` over every element; a scalar.

    ``pred`` is the current model's prediction conditioned on the mined ``c`` (gradients flow to
    ``c``), ``target`` the noise ``e`` (or the velocity for v-prediction models).
    """
    return F.mse_loss(pred.float(), target.float())


def verification_score(feat_c: torch.Tensor, feat_r: torch.Tensor, feat_pool: torch.Tensor) -> torch.Tensor:
    """``s(c) = mean_{i, e} cos(E(x_c,i) - E(x_r,i), E(x_e) - E(x_r,i))``; a scalar in [-1, 1].

    ``feat_c`` / ``feat_r``: ``[S, D]`` encoder features of the images drawn with ``c`` and with the
    reference prompt at the same S seeds; ``feat_pool``: ``[P, D]`` features of the concept pool.
    The direction from the reference image to ``c``'s image is compared with the directions from the
    reference image to every pool image, averaged over pool images and seeds.
    """
    fc, fr, fe = feat_c.double(), feat_r.double(), feat_pool.double()
    toward_c = fc - fr  # [S, D]
    toward_pool = fe.unsqueeze(0) - fr.unsqueeze(1)  # [S, P, D]
    cos = F.cosine_similarity(toward_c.unsqueeze(1).expand_as(toward_pool), toward_pool, dim=-1, eps=1e-12)
    return cos.mean()


def circumvent_loss(pred_c: torch.Tensor, frozen_anchor: torch.Tensor) -> torch.Tensor:
    """Circumventing term ``L_C = mean (eps_theta(x_t | c) - eps_theta0(x_t | c0))^2``; a scalar.

    ``pred_c``: the adapted model's prediction for the mined ``c`` (with gradients to the LoRA);
    ``frozen_anchor``: the frozen model's prediction for the anchor ``c0`` on the same ``x_t`` and ``t``.
    """
    return F.mse_loss(pred_c.float(), frozen_anchor.detach().float())


def preservation_loss(preds: dict[str, torch.Tensor], frozen: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """``L_P = sum_r w_r mean (eps_theta(x_t | r) - eps_theta0(x_t | r))^2`` over the keys of ``weights``.

    The keys are ``anchor`` (c0), ``empty`` ("") and ``negative`` (-c); ``preds`` holds the adapted
    model's predictions, ``frozen`` the frozen model's, for the same inputs. A zero weight drops its term.
    """
    total = torch.zeros((), device=next(iter(preds.values())).device)
    for key, w in weights.items():
        if w > 0:
            total = total + w * F.mse_loss(preds[key].float(), frozen[key].detach().float())
    return total


def should_stop(passed: list[bool], patience: int, rounds: int) -> bool:
    """The loop's stop rule, given which rounds so far mined an embedding that passed verification.

    Stop when the round budget is used up, or when the last ``patience`` rounds all failed verification.
    """
    if len(passed) >= rounds:
        return True
    return len(passed) >= patience and not any(passed[-patience:])


# ---------------------------------------------------------------------------------------------
# Conditioning from K token embeddings
# ---------------------------------------------------------------------------------------------


def token_template(tokenizer: Any, num_tokens: int) -> torch.Tensor:
    """``[L]`` ids: BOS, ``num_tokens`` placeholders (-1), EOS, padding: where the mined vectors go."""
    from t2i_unlearn.attacks.text import sequence_ids

    return sequence_ids(tokenizer, [-1] * num_tokens)


def _token_embeds(text_encoder: Any, template: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Input token embeddings ``[B, L, D]``: the template's, with the ``[B, K, D]`` vectors at its placeholders."""
    from t2i_unlearn.attacks.text import token_embedding_matrix

    if vectors.ndim == 2:
        vectors = vectors.unsqueeze(0)
    k = vectors.shape[1]
    table = token_embedding_matrix(text_encoder)
    base = table[template.clamp(min=0).to(table.device)].detach()  # [L, D]
    b = vectors.shape[0]
    return torch.cat([base[:1].expand(b, 1, -1), vectors.to(table), base[k + 1 :].expand(b, -1, -1)], dim=1)


def encode_tokens(text_encoder: Any, template: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Text-encoder hidden states ``[B, L, D]`` with the ``[B, K, D]`` (or ``[K, D]``) vectors at the template's placeholders.

    Gradients flow to ``vectors``. Equals ``text_encoder(ids)`` when the vectors are the embeddings of real token ids.
    """
    from t2i_unlearn.attacks.text import encode_embeds

    return encode_embeds(text_encoder, _token_embeds(text_encoder, template, vectors))


def text_encoders(pipe: Any) -> list[tuple[Any, Any]]:
    """``(tokenizer, text encoder)`` of each CLIP encoder a mined ``c`` feeds: one (SD 1.x/2.x) or two (SDXL)."""
    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
    return pairs


def token_templates(pipe: Any, num_tokens: int) -> list[torch.Tensor]:
    """One :func:`token_template` per text encoder (each with its own tokenizer's BOS, EOS and padding)."""
    return [token_template(tok, num_tokens) for tok, _ in text_encoders(pipe)]


def token_widths(pipe: Any) -> list[int]:
    """Width of each text encoder's token embeddings; a mined ``c`` is ``[K, sum(widths)]``, the encoders' parts side by side."""
    from t2i_unlearn.attacks.text import token_embedding_matrix

    return [int(token_embedding_matrix(te).shape[-1]) for _, te in text_encoders(pipe)]


def encode_mined(pipe: Any, templates: list[torch.Tensor], vectors: torch.Tensor) -> dict[str, torch.Tensor]:
    """The UNet conditioning of mined vectors ``[B, K, D]`` (or ``[K, D]``): what a prompt holding them encodes to.

    SD 1.x/2.x: ``{"encoder_hidden_states"}``, the text encoder's last hidden states. SDXL: ``c`` holds
    one set of K vectors per encoder (``D = D1 + D2``); each set sits between its encoder's BOS and EOS;
    ``encoder_hidden_states`` is both encoders' penultimate hidden states side by side and ``text_embeds``
    the second encoder's projected pooled output, as the pipeline's own ``encode_prompt`` builds them.
    Gradients flow to ``vectors``.
    """
    from t2i_unlearn.attacks.text import encode_embeds_penultimate, pooled_position

    encoders = text_encoders(pipe)
    if len(encoders) == 1:
        return {"encoder_hidden_states": encode_tokens(pipe.text_encoder, templates[0], vectors)}
    parts = torch.split(vectors, token_widths(pipe), dim=-1)
    hidden, last = [], None
    for (_, te), template, part in zip(encoders, templates, parts, strict=True):
        last, penultimate = encode_embeds_penultimate(te, _token_embeds(te, template, part))
        hidden.append(penultimate)
    te2, template2 = encoders[-1][1], templates[-1]
    pooled = te2.text_projection(last[:, pooled_position(te2, template2)])  # type: ignore[index]
    return {"encoder_hidden_states": torch.cat(hidden, dim=-1), "text_embeds": pooled}


def initial_vectors(pipe: Any, config: DarkMinerConfig, prompt: str, gen: torch.Generator) -> torch.Tensor:
    """The starting ``[K, D]`` embeddings: the prompt's token embeddings cycled to K (``init: prompt``) or random ones.

    With two text encoders (SDXL) each encoder's part comes from its own embedding table, side by side.
    """
    from t2i_unlearn.attacks.text import prompt_ids, token_embedding_matrix

    k = config.num_tokens
    parts = []
    for tokenizer, text_encoder in text_encoders(pipe):
        table = token_embedding_matrix(text_encoder).detach().float().cpu()
        if config.init == "prompt":
            ids = prompt_ids(tokenizer, prompt)
            if not ids:
                raise UserError(f"concept prompt {prompt!r} has no tokens to start mining from")
            parts.append(table[[ids[i % len(ids)] for i in range(k)]].clone())
        else:
            mean, std = table.mean(0), table.std()
            parts.append(mean + std * torch.randn((k, table.shape[1]), generator=gen))
    return torch.cat(parts, dim=-1)


def _expand(cond: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """A one-row conditioning repeated ``n`` times along the batch (a view)."""
    return {k: v.expand(n, *v.shape[1:]) for k, v in cond.items()}


# ---------------------------------------------------------------------------------------------
# Set-up: the model with its LoRA, the pool, the encoder, the judge
# ---------------------------------------------------------------------------------------------


@dataclass
class MinerSetup:
    """Everything the stages use. ``net`` is ``pipe``'s denoiser carrying the LoRA (``pipe`` draws with it).

    Mining needs only the fields up to ``templates`` (DUO's mining rounds build such a setup with
    :func:`mining_setup`); verifying also needs the pool features, the encoder and the judge, and
    circumventing the anchor and empty-prompt conditioning.
    """

    pipe: Any
    net: Any
    ops: Any  # a training.Family: noising, target, forward with a conditioning dict
    family: str
    spec: Any
    config: DarkMinerConfig
    device: torch.device
    latents: torch.Tensor  # [N, C, h, w] pool latents (VAE mean, scaled), on the CPU
    templates: list[torch.Tensor]  # one [L] template per text encoder (token_templates)
    pool_images: np.ndarray | None = None
    pool_features: torch.Tensor | None = None  # [N, D] encoder features of the pool images
    encoder: Any = None  # .features(uint8 images) -> np.ndarray [N, D]; .info()
    judge: Any = None
    anchor: dict[str, torch.Tensor] = field(default_factory=dict)  # one-row conditioning of the anchor prompt
    empty: dict[str, torch.Tensor] = field(default_factory=dict)  # ... of ""
    model: str = ""


def _stage_generator(seed: int, round_index: int, stage: int) -> torch.Generator:
    # One generator per stage: a resumed run draws exactly what the uninterrupted one drew.
    return torch.Generator().manual_seed(seed * 1_000_003 + 7919 * round_index + 104_729 * stage + 11)


def check_family(model: str, who: str = "Dark Miner") -> None:
    """:class:`UserError` before loading when a local pipeline is SD3 (Dark Miner mines CLIP tokens: SD 1.x/2.x, SDXL)."""
    from t2i_unlearn.models import resolve_model

    index = Path(resolve_model(model)) / "model_index.json"
    if not index.is_file():
        return  # a hub id: checked again once loaded
    try:
        name = str(json.loads(index.read_text()).get("_class_name", ""))
    except (OSError, ValueError):
        return  # the loader names the problem
    _refuse_family(name, model, who)


def check_pipeline(pipe: Any, who: str = "Dark Miner") -> None:
    """:class:`UserError` unless ``pipe`` is SD 1.x/2.x or SDXL (the families whose CLIP tokens are mined)."""
    _refuse_family(type(pipe).__name__, "this model", who)


def _refuse_family(pipeline_class: str, model: str, who: str = "Dark Miner") -> None:
    if "StableDiffusion3" in pipeline_class:
        raise UserError(
            f"{who} supports SD 1.x/2.x and SDXL (CLIP text encoders); {model} is a {pipeline_class}, whose T5 encoder and joint transformer it does not mine"
        )


def read_pool(folder: str | Path) -> tuple[np.ndarray, str]:
    """Concept images of a pool folder: the unsafe half of a ``data pairs`` folder, or every PNG/JPEG in it; with their hash."""
    from PIL import Image

    from t2i_unlearn.utils.io import hash_files

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"pool {folder} is not a folder of images (or a 'data pairs' folder)")
    if (folder / "metadata.jsonl").exists():
        from t2i_unlearn.data import load_pairs

        pairs = load_pairs(folder)
        return np.asarray(pairs.unsafe), pairs.data_hash
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise UserError(f"pool {folder} holds no .png or .jpg images")
    try:
        images = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    except OSError as exc:
        raise UserError(f"pool {folder}: unreadable image ({exc})") from exc
    if len({im.shape for im in images}) != 1:
        raise UserError(f"pool {folder}: images have different sizes")
    import hashlib

    digest = hashlib.sha256("\n".join(f"{k} {v}" for k, v in sorted(hash_files(folder, ("*.png", "*.jpg", "*.jpeg")).items())).encode()).hexdigest()
    return np.stack(images), digest


def draw_pool(pipe: Any, spec: Any, judge: Any, config: DarkMinerConfig) -> np.ndarray:
    """``pool_size`` images of the concept's unsafe prompts drawn by ``pipe`` (the base model), redrawn until the judge sees the concept."""
    from t2i_unlearn.attacks.base import concept_images

    prompts = [p.unsafe for p in spec.prompt_plan(config.pool_size)]
    ctx = SimpleNamespace(concept=spec, judge=judge, base_pipe=lambda: pipe)
    images, _ = concept_images(ctx, prompts, config.seed)  # type: ignore[arg-type]
    return images


def _encoder_kind(config: DarkMinerConfig, spec: Any) -> str:
    if config.encoder != "auto":
        return config.encoder
    return "toy" if spec.judge is not None and spec.judge.name == "toy" else DEFAULT_CLIP


def prepare(
    model: str,
    spec: Any,
    config: DarkMinerConfig,
    pool: np.ndarray | None = None,
    device: str | None = None,
    lora_state_file: Path | None = None,
) -> MinerSetup:
    """Load ``model``, add the LoRA (or load ``lora_state_file``), encode the pool and build E and the judge.

    ``pool`` is ``uint8 [N, H, W, 3]`` concept images; None draws ``pool_size`` of them with the base
    model (before any checkpoint is loaded). SD 1.x/2.x and SDXL (:class:`UserError` otherwise).
    """
    from safetensors.torch import load_file

    from t2i_unlearn import adapters
    from t2i_unlearn.judges import build_judge
    from t2i_unlearn.methods.training import DDPMFamily, encode_latents
    from t2i_unlearn.metrics.backends import make_image_features
    from t2i_unlearn.models import load_pipeline, pipeline_family

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pipe = load_pipeline(model, device=dev, dtype=torch.float32)
    _refuse_family(type(pipe).__name__, model)
    family = pipeline_family(pipe)
    for part in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None), pipe.vae, pipe.unet):
        if part is not None:
            part.requires_grad_(False)
    judge = build_judge(spec.judge, model)
    if pool is None:
        pool = draw_pool(pipe, spec, judge, config)
    net = adapters.denoiser(pipe)
    init = True if config.init_lora_weights == "default" else config.init_lora_weights
    adapters.add_lora(net, config.rank, config.alpha, config.targets, init=init, seed=config.seed)
    if lora_state_file is not None:
        adapters.load_lora_state(net, load_file(str(lora_state_file)))
    net.to(dev)
    if config.gradient_checkpointing:
        net.enable_gradient_checkpointing()
    net.eval()
    ops = DDPMFamily(pipe, config)  # reads t_max only
    latents, _ = encode_latents(pipe.vae, pool, dev)
    encoder = make_image_features(_encoder_kind(config, spec), model, device=str(dev))
    pool_features = torch.from_numpy(np.asarray(encoder.features(pool))).float()
    # the anchor and "" through the pipeline's own prompt encoding (SDXL: both encoders and the pooled embedding)
    anchor, empty = ops.encode_prompts([config.anchor_prompt], dev), ops.encode_prompts([""], dev)
    return MinerSetup(
        pipe, net, ops, family, spec, config, dev, latents, token_templates(pipe, config.num_tokens),
        pool_images=pool, pool_features=pool_features, encoder=encoder, judge=judge, anchor=anchor, empty=empty, model=model,
    )  # fmt: skip


def mining_setup(pipe: Any, net: Any, ops: Any, spec: Any, config: DarkMinerConfig, latents: torch.Tensor, device: torch.device) -> MinerSetup:
    """A :class:`MinerSetup` for :func:`mine` alone, on a model someone else loaded and adapted (DUO's mining rounds).

    ``net`` is ``pipe``'s denoiser with its LoRA, ``ops`` a :class:`~t2i_unlearn.methods.training.Family`
    of ``pipe``, ``latents`` the pool's VAE latents (mean, scaled), on the CPU.
    """
    from t2i_unlearn.models import pipeline_family

    check_pipeline(pipe)
    family = pipeline_family(pipe)
    return MinerSetup(pipe, net, ops, family, spec, config, device, latents, token_templates(pipe, config.num_tokens))


def _noised(setup: MinerSetup, gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, t, target)`` for ``n`` pool latents drawn with ``gen`` (timesteps in [0, t_max))."""
    idx = torch.randint(len(setup.latents), (n,), generator=gen)
    z = setup.latents[idx]
    noise = torch.randn(z.shape, generator=gen)
    t = torch.randint(0, setup.config.t_max, (n,), generator=gen)
    dev = setup.device
    z, noise, t = z.to(dev), noise.to(dev), t.to(dev)
    return setup.ops.noisy(z, noise, t), t, setup.ops.target(z, noise, t)


def _predict(setup: MinerSetup, x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
    return setup.ops.forward(setup.net, x, t, cond).float()


def condition(setup: MinerSetup, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
    """The conditioning of mined vectors ``[B, K, D]`` (or ``[K, D]``) on the setup's model (:func:`encode_mined`)."""
    return encode_mined(setup.pipe, setup.templates, vectors.to(setup.device))


def mining_objective(setup: MinerSetup, vectors: torch.Tensor, seed: int = 0, n: int = 8) -> float:
    """``L_M`` of ``vectors`` on ``n`` fixed draws (seeded by ``seed``) under the current model: a comparable number."""
    gen = torch.Generator().manual_seed(seed)
    x, t, target = _noised(setup, gen, n)
    with torch.no_grad():
        cond = _expand(condition(setup, vectors), n)
        return float(mining_loss(_predict(setup, x, t, cond), target))


# ---------------------------------------------------------------------------------------------
# The three stages
# ---------------------------------------------------------------------------------------------


def mine(setup: MinerSetup, round_index: int, bar: Any = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Mining: optimise K token embeddings ``c`` (only them) to minimise ``L_M`` on the pool under the current model.

    Returns ``c`` as ``[K, D]`` float32 on the CPU and ``{"loss_init", "loss_final"}``: ``L_M`` on the
    same fixed draws before and after.
    """
    cfg = setup.config
    gen = _stage_generator(cfg.seed, round_index, 0)
    prompts = [p.unsafe for p in setup.spec.prompts]
    start = initial_vectors(setup.pipe, cfg, prompts[round_index % len(prompts)], gen)
    check_seed = cfg.seed * 31 + round_index
    loss_init = mining_objective(setup, start, check_seed)
    vectors = start.clone().to(setup.device).requires_grad_(True)
    optimizer = torch.optim.Adam([vectors], lr=cfg.mine_lr)
    setup.net.eval()
    for _ in range(cfg.mine_steps):
        x, t, target = _noised(setup, gen, cfg.mine_batch_size)
        cond = condition(setup, vectors.unsqueeze(0).expand(len(x), -1, -1))
        loss = mining_loss(_predict(setup, x, t, cond), target)
        (grad,) = torch.autograd.grad(loss, [vectors])  # the LoRA and the model stay as they are
        vectors.grad = grad
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    mined = vectors.detach().float().cpu()
    return mined, {"loss_init": loss_init, "loss_final": mining_objective(setup, mined, check_seed)}


def draw_mined(setup: MinerSetup, vectors: torch.Tensor, seeds: list[int]) -> np.ndarray:
    """Images ``uint8 [N, H, W, 3]`` the setup's model (with its LoRA as it is) draws from the mined ``c``, one per seed.

    Sampled with the concept's own settings (``generation:`` in the spec: steps, guidance, size).
    """
    from t2i_unlearn.models import generate_images

    g = setup.spec.generation
    with torch.no_grad():
        cond = _expand(condition(setup, vectors), len(seeds))
    return generate_images(
        setup.pipe, None, seeds, steps=g.steps, guidance=g.guidance, height=g.height, width=g.width,
        prompt_embeds=cond["encoder_hidden_states"], pooled_prompt_embeds=cond.get("text_embeds"),
    )  # fmt: skip


def verification_seeds(config: DarkMinerConfig, round_index: int) -> list[int]:
    """Seeds of the images drawn with ``c`` and with the reference prompt (the same for both)."""
    return [config.seed * 10_007 + 1_000 * round_index + i for i in range(config.verify_images)]


def verify(setup: MinerSetup, vectors: torch.Tensor, round_index: int) -> dict[str, Any]:
    """Verifying: draw with ``c`` and with the reference prompt at the same seeds; ``s(c)`` against the pool.

    Returns ``{"score", "passed" (score >= threshold), "judge_rate" (share of c's images the concept
    judge flags), "reference_judge_rate"}``.
    """
    from t2i_unlearn.models import generate_images

    cfg, g = setup.config, setup.spec.generation
    seeds = verification_seeds(cfg, round_index)
    reference = cfg.reference_prompt if cfg.reference_prompt is not None else cfg.anchor_prompt
    setup.net.eval()
    common = {"steps": g.steps, "guidance": g.guidance, "height": g.height, "width": g.width}
    images_c = draw_mined(setup, vectors, seeds)
    images_r = generate_images(setup.pipe, [reference] * len(seeds), seeds, **common)
    feats = torch.from_numpy(np.asarray(setup.encoder.features(np.concatenate([images_c, images_r])))).float()
    score = float(verification_score(feats[: len(seeds)], feats[len(seeds) :], setup.pool_features))
    flagged = setup.judge.flags(np.concatenate([images_c, images_r]))[0]
    return {
        "score": score,
        "passed": bool(score >= cfg.threshold),
        "judge_rate": float(np.mean(flagged[: len(seeds)])),
        "reference_judge_rate": float(np.mean(flagged[len(seeds) :])),
    }


def circumvent(setup: MinerSetup, mined: list[torch.Tensor], round_index: int, bar: Any = None) -> dict[str, Any]:
    """Circumventing: train the LoRA on ``L_C + L_P`` for every embedding in the circumvent set ``mined``.

    Each step noises pool images, gives each one embedding of the set, and compares the adapted
    model (LoRA on) with the frozen one (LoRA off). A fresh AdamW (no weight decay, gradient norm
    clipped at 1) per stage. Returns the mean ``loss``, ``circumvent`` and ``preserve`` terms of the
    stage's last quarter of steps.
    """
    from t2i_unlearn.methods.training import cat_cond, index_cond

    cfg = setup.config
    gen = _stage_generator(cfg.seed, round_index, 2)
    dev = setup.device
    with torch.no_grad():
        stack = torch.stack([m.to(dev) for m in mined])  # [M, K, D]
        cond = condition(setup, stack)  # [M, L, D] (+ SDXL's pooled [M, P])
        negative = condition(setup, -stack)  # -c: every set of vectors negated
    params = [p for p in setup.net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.circumvent_lr, weight_decay=0.0)
    weights = {"anchor": cfg.anchor_weight, "empty": cfg.empty_weight, "negative": cfg.negative_weight}
    rows: list[tuple[float, float, float]] = []
    b = cfg.circumvent_batch_size
    for _ in range(cfg.circumvent_steps):
        x, t, _ = _noised(setup, gen, b)
        j = torch.randint(len(mined), (b,), generator=gen).to(dev)
        anchor, empty, neg = _expand(setup.anchor, b), _expand(setup.empty, b), index_cond(negative, j)
        setup.net.eval()
        with torch.no_grad():
            setup.net.disable_adapters()
            ref = _predict(setup, torch.cat([x, x, x]), torch.cat([t, t, t]), cat_cond(anchor, empty, neg))
            setup.net.enable_adapters()
        setup.net.train()
        pred = _predict(setup, torch.cat([x, x, x, x]), torch.cat([t, t, t, t]), cat_cond(index_cond(cond, j), anchor, empty, neg))
        frozen = {"anchor": ref[:b], "empty": ref[b : 2 * b], "negative": ref[2 * b :]}
        preds = {"anchor": pred[b : 2 * b], "empty": pred[2 * b : 3 * b], "negative": pred[3 * b :]}
        l_c = circumvent_loss(pred[:b], frozen["anchor"])
        l_p = preservation_loss(preds, frozen, weights)
        loss = l_c + l_p
        if not torch.isfinite(loss):
            raise UserError(f"Dark Miner: circumventing loss became {loss.item()} in round {round_index + 1}; lower --circumvent-lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        rows.append((loss.item(), l_c.item(), l_p.item()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{rows[-1][0]:.4f}")
    setup.net.eval()
    tail = rows[-max(1, len(rows) // 4) :]
    return {k: float(np.mean([r[i] for r in tail])) for i, k in enumerate(("loss", "circumvent", "preserve"))}


# ---------------------------------------------------------------------------------------------
# The loop: checkpoints after every stage, resume, artifacts
# ---------------------------------------------------------------------------------------------


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("stage-*"), key=lambda p: int(p.name.split("-")[1]))


def _same_run(saved: dict[str, Any], config: DarkMinerConfig) -> str | None:
    now = config.to_dict()
    for key, value in saved.items():
        if key not in _RESUMABLE_CHANGES and now.get(key) != value:
            return f"{key} was {value!r}, now {now.get(key)!r}"
    return None


def _recogniser(config: DarkMinerConfig, request: dict[str, Any]) -> Any:
    """What an existing, non-empty ``--out`` holds: this run (finished or stopped), or something else."""
    from t2i_unlearn.utils.io import DONE, OTHER, PARTIAL

    bookkeeping = set(RUN_BOOKKEEPING)
    wanted = json.loads(json.dumps(request))

    def recognise(path: Path) -> tuple[str, str]:
        checkpoints = _checkpoints(path)
        if not checkpoints:
            if all(p.name in bookkeeping for p in path.iterdir()) and not (path / "manifest.json").exists():
                return PARTIAL, ""  # stopped before its first checkpoint
            return OTHER, "is not a Dark Miner run"
        try:
            saved = json.loads((checkpoints[-1] / "state.json").read_text())
            why = _same_run(saved["config"], config) or ("its model, concept or pool differ" if saved.get("request") != wanted else None)
        except (OSError, ValueError, KeyError, TypeError):
            return OTHER, f"holds a Dark Miner run whose latest checkpoint {checkpoints[-1].name} is unreadable"
        if why:
            return OTHER, f"holds a Dark Miner run whose settings differ ({why})"
        return (DONE, "") if (path / "manifest.json").exists() else (PARTIAL, "")

    return recognise


def _save_checkpoint(out: Path, stages_done: int, setup: MinerSetup, mined: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    from t2i_unlearn.adapters import lora_state
    from t2i_unlearn.utils.io import atomic_directory, atomic_write_json

    final = out / "checkpoints" / f"stage-{stages_done:04d}"
    with atomic_directory(final) as tmp:
        save_file(lora_state(setup.net), str(tmp / "lora.safetensors"))
        if mined:
            save_file({k: v.contiguous() for k, v in mined.items()}, str(tmp / "mined.safetensors"))
        atomic_write_json(tmp / "state.json", {**state, "stages_done": stages_done})
    for old in _checkpoints(out)[: -setup.config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def per_encoder(vectors: torch.Tensor, widths: list[int]) -> list[torch.Tensor]:
    """A mined ``[K, D1 (+ D2)]`` split into each text encoder's ``[K, Di]`` vectors (contiguous copies)."""
    return [part.contiguous() for part in torch.split(vectors, widths, dim=-1)]


def write_mined(path: Path, vectors: torch.Tensor, widths: list[int], meta: dict[str, Any]) -> Path:
    """One mined embedding as a safetensors file: ``embedding`` ``[K, D1]`` (+ ``embedding_2`` ``[K, D2]``, SDXL's second encoder)."""
    from t2i_unlearn.utils.io import atomic_save_safetensors

    parts = per_encoder(vectors, widths)
    tensors = {"embedding" if i == 0 else f"embedding_{i + 1}": part for i, part in enumerate(parts)}
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_save_safetensors(path, tensors, metadata={k: str(v) for k, v in meta.items()})


def token_name(round_index: int) -> str:
    """The textual-inversion token of round ``round_index``'s mined embedding in the attack set."""
    return f"<darkminer-r{round_index:02d}>"


def write_attack_set(out: Path, history: list[dict[str, Any]], mined: dict[str, torch.Tensor], setup: MinerSetup) -> Path:
    """``out/attack_set/``: every mined embedding as a K-vector textual-inversion token, one prompt per verification seed.

    ``eval --attack out/attack_set/attack_set.json`` replays them on any model with the same text
    encoder(s). SDXL: ``embeddings.safetensors`` holds the first encoder's vectors of each token and
    ``embeddings_2.safetensors`` the second's (diffusers' ``load_textual_inversion`` with
    ``text_encoder_2`` / ``tokenizer_2``); the attack set names both.
    """
    from t2i_unlearn.attacks.base import ATTACK_SET_FILE, EMBEDDINGS_FILE, EMBEDDINGS_FILE_2
    from t2i_unlearn.evaluation.prompts import write_attack_set as write_set
    from t2i_unlearn.utils.io import atomic_save_safetensors

    folder = out / ATTACK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    widths = token_widths(setup.pipe)
    tokens = {token_name(h["round"]): per_encoder(mined[f"round_{h['round']:02d}"], widths) for h in history if f"round_{h['round']:02d}" in mined}
    files = [EMBEDDINGS_FILE, EMBEDDINGS_FILE_2][: len(widths)]
    for i, name in enumerate(files):
        atomic_save_safetensors(folder / name, {k: v[i] for k, v in tokens.items()})
    embeddings = {"file": EMBEDDINGS_FILE, "kind": "textual_inversion"}
    if len(files) == 2:
        embeddings["file_2"] = EMBEDDINGS_FILE_2
    prompts = []
    for h in history:
        for seed in verification_seeds(setup.config, h["round"]):
            prompts.append({"prompt": token_name(h["round"]), "seed": seed, "round": h["round"], "score": h.get("score"), "passed": h.get("passed")})
    return write_set(
        folder / ATTACK_SET_FILE,
        prompts,
        attack="darkminer",
        concept=setup.spec.name,
        target_model=setup.model,
        settings=setup.config.to_dict(),
        embeddings=embeddings,
    )


def _write_pool(out: Path, images: np.ndarray) -> None:
    from t2i_unlearn.utils.io import atomic_directory, atomic_save_image

    with atomic_directory(out / POOL_DIR) as tmp:
        for i, im in enumerate(images):
            atomic_save_image(tmp / f"{i:06d}.png", im)


def train_darkminer(
    model: str,
    concept: Any,
    out: str | Path,
    config: DarkMinerConfig | None = None,
    pool: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = False,
    command: str = "t2i-unlearn train darkminer",
) -> Path:
    """Erase ``concept`` (a spec, or a name/path :func:`load_concept` takes) from ``model`` with Dark Miner; write ``out``; return it.

    ``out`` receives ``pytorch_lora_weights.safetensors`` (diffusers format), ``README.md``,
    ``manifest.json`` (written last), ``darkminer_config.json``, ``logs.jsonl`` (one line per stage),
    ``mined/round_XX.safetensors`` (+ ``mined/index.json``), ``attack_set/`` (the mined embeddings as
    an attack set), ``pool/`` (the concept images drawn when no ``pool`` folder is given) and
    ``checkpoints/`` (one per stage). The output rule is ``train duo``'s: the same run, finished, is
    reused; stopped (killed, or ``stop_after_stage``), it continues from its latest checkpoint
    (``resume`` insists on one); anything else is refused unless ``overwrite``.
    """
    from tqdm.auto import tqdm

    from t2i_unlearn import adapters
    from t2i_unlearn.concepts import load_concept
    from t2i_unlearn.methods.training import TrainingLog
    from t2i_unlearn.models import resolve_model
    from t2i_unlearn.utils.io import DONE, atomic_write_json, claim_output, make_manifest

    config = config or DarkMinerConfig()
    config.validate()
    spec = concept if hasattr(concept, "leaves") else load_concept(concept)
    if spec.sub_concepts:
        raise UserError(f"concept {spec.name} has sub-concepts ({', '.join(spec.sub_concepts)}); Dark Miner erases one at a time: name one ({spec.name}/<sub>)")
    if spec.judge is None:
        raise UserError(f"concept {spec.name} has no judge")
    check_family(model)
    pool_images, pool_hash = read_pool(pool) if pool is not None else (None, None)
    out = Path(out).expanduser()
    request = {"model": resolve_model(model), "concept": spec.model_dump(mode="json"), "pool": pool_hash}
    claim = claim_output(out, "a Dark Miner run", _recogniser(config, request), overwrite)
    if claim.status == DONE:
        logger.info("%s already holds this Dark Miner run; reusing it", out)
        return out
    existing = _checkpoints(out) if claim.status == "partial" else []
    if resume and not existing:
        raise UserError(f"--resume: no checkpoint in {out / 'checkpoints'}")
    with claim.in_place():
        pass  # clears a replaced folder, creates a new one
    if not existing:  # a run stopped before its first checkpoint: start it over
        for name in ("checkpoints", "logs.jsonl", "tensorboard", MINED_DIR, ATTACK_DIR, adapters.LORA_FILE):
            p = out / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    state: dict[str, Any] = {"history": [], "misses": 0, "stages_done": 0}
    mined: dict[str, torch.Tensor] = {}
    checkpoint = existing[-1] if existing else None
    if checkpoint is not None:
        from safetensors.torch import load_file

        state = json.loads((checkpoint / "state.json").read_text())
        if (checkpoint / "mined.safetensors").exists():
            mined = load_file(str(checkpoint / "mined.safetensors"))
    if pool_images is None and (out / POOL_DIR).is_dir():
        pool_images, _ = read_pool(out / POOL_DIR)  # the pool this run drew before it stopped

    setup = prepare(model, spec, config, pool_images, device, checkpoint / "lora.safetensors" if checkpoint else None)
    if pool is None and not (out / POOL_DIR).is_dir():
        _write_pool(out, setup.pool_images)
    settings = {
        **config.to_dict(),
        "targets_used": config.targets,
        "family": setup.family,
        "encoder_used": setup.encoder.info(),
        "pool_images": len(setup.pool_images),
    }
    atomic_write_json(out / "darkminer_config.json", settings)
    done = int(state["stages_done"])
    log = TrainingLog(out, config, True, done)  # type: ignore[arg-type]  # reads report_to and to_dict only
    history: list[dict[str, Any]] = state["history"]
    logger.info("Dark Miner on %s: concept %s, %d pool images, up to %d rounds", model, spec.name, len(setup.pool_images), config.rounds)

    rounds_bar = tqdm(total=config.rounds, initial=done // 3, desc="Dark Miner rounds", disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    finished = done > 0 and done % 3 == 0 and should_stop([h["passed"] for h in history], config.patience, config.rounds)
    try:
        while not finished:
            r, stage = divmod(done, 3)
            key = f"round_{r:02d}"
            total = {0: config.mine_steps, 2: config.circumvent_steps}.get(stage, config.verify_images)
            bar = tqdm(total=total, desc=f"round {r + 1} {STAGES[stage]}", disable=not progress, leave=False, dynamic_ncols=True)
            row: dict[str, Any] = {"round": r + 1, "stage": STAGES[stage]}
            if stage == 0:
                vectors, info = mine(setup, r, bar)
                mined[key] = vectors
                meta = {"round": r, "model": request["model"], "concept": spec.name, "num_tokens": config.num_tokens, **info}
                write_mined(out / MINED_DIR / f"{key}.safetensors", vectors, token_widths(setup.pipe), meta)
                history.append({"round": r, **info})
            elif stage == 1:
                info = verify(setup, mined[key], r)
                state["misses"] = 0 if info["passed"] else int(state["misses"]) + 1
                history[-1].update(info)
            else:
                circumvent_set = [mined[f"round_{h['round']:02d}"] for h in history if h.get("passed")]
                if history[-1]["passed"]:
                    info = circumvent(setup, circumvent_set, r, bar)
                    history[-1].update({"circumvent_loss": info["loss"], "circumvent_set": len(circumvent_set)})
                else:
                    info = {"skipped": True}
                history[-1]["round_done"] = True
            bar.close()
            done += 1
            row.update({k: v for k, v in info.items() if isinstance(v, int | float | bool)})
            row.update({"step": done, "elapsed_s": time.perf_counter() - t0})
            log.log(row)
            state.update({"history": history, "config": config.to_dict(), "request": request})
            _save_checkpoint(out, done, setup, mined, state)
            if stage == 2:
                rounds_bar.update(1)
                rounds_bar.set_postfix(score=f"{history[-1]['score']:.3f}", passed=history[-1]["passed"])
                finished = should_stop([h["passed"] for h in history], config.patience, config.rounds)
            if not finished and config.stop_after_stage is not None and done >= config.stop_after_stage:
                logger.warning("stopped after stage %d (stop_after_stage); run the same command again to continue", done)
                return out
    finally:
        rounds_bar.close()
        log.close()

    # ---- the result ----
    adapters.save_lora(out, setup.net, setup.family)
    atomic_write_json(
        out / MINED_DIR / "index.json", {"rounds": history, "tokens": {token_name(h["round"]): f"round_{h['round']:02d}.safetensors" for h in history}}
    )
    write_attack_set(out, history, mined, setup)
    passed = sum(bool(h.get("passed")) for h in history)
    data_info = {
        "concept": spec.name,
        "pool": pool_hash or f"{POOL_DIR}/ ({len(setup.pool_images)} images drawn by the base model)",
        "rounds": len(history),
        "verified": passed,
    }
    _write_card(out, request["model"], setup.family, settings, data_info)
    manifest = make_manifest(
        command,
        settings,
        inputs={"model": request["model"], "concept": spec.name, "pool": pool_hash or ""},
        artifact="darkminer_lora",
        request=request,
        rounds=history,
    )
    atomic_write_json(out / "manifest.json", manifest)
    return out


def _write_card(out: Path, base_model: str, family: str, settings: dict[str, Any], data: dict[str, Any]) -> Path:
    from t2i_unlearn.adapters import write_card_with_settings

    head = [
        "---",
        "library_name: diffusers",
        "tags: [lora, text-to-image, unlearning, dark-miner, t2i-unlearn]",
        "---",
        f"# Dark Miner LoRA: {out.name}",
        "",
        f"LoRA trained with t2i_unlearn (Dark Miner: mining, verifying, circumventing) on `{base_model}` ({family}).",
        "",
        "```python",
        "from diffusers import DiffusionPipeline",
        f'pipe = DiffusionPipeline.from_pretrained("{base_model}")',
        f'pipe.load_lora_weights("{out}")',
        "```",
        "",
        f"The mined embeddings are in `{MINED_DIR}/`, and as an attack set for `t2i-unlearn eval --attack` in `{ATTACK_DIR}/`.",
        "",
        "## Data",
        "",
        *[f"- {k}: `{v}`" for k, v in data.items()],
        "",
    ]
    return write_card_with_settings(out, head, settings)


def train_darkminer_concept(model: str, concept: Any, out: str | Path, config: DarkMinerConfig | None = None, **kwargs: Any) -> list[Path]:
    """Registry entry point: one Dark Miner LoRA for ``concept``; returns ``[out]``."""
    return [train_darkminer(model, concept, out, config, **kwargs)]


__all__ = [
    "DarkMinerConfig",
    "MinerSetup",
    "circumvent",
    "circumvent_loss",
    "encode_tokens",
    "load_config",
    "mine",
    "mining_loss",
    "prepare",
    "preservation_loss",
    "should_stop",
    "train_darkminer",
    "train_darkminer_concept",
    "verification_score",
    "verify",
]
