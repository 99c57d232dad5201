"""UnlearnDiffAtk (Zhang et al., ECCV 2024): white-box prefix tokens that make the model denoise like a concept image.

For a source prompt ``p`` and a target image ``x`` of the concept (drawn by the base model from the
unsafe prompt paired with ``p``), k prefix tokens are a relaxed one-hot ``theta in R^{k x V}`` over the
searchable vocabulary::

    min_theta  E_{t, eps} || eps - eps_theta( x_t, t, E([onehot(theta) W ; tokens(p)]) ) ||^2

Each step runs the model on the *discrete* prefix (argmax of ``theta``, straight-through gradient to
``theta``), takes an Adam step and projects every row of ``theta`` back onto the probability simplex.
Every ``check_every`` steps the discrete prompt ``prefix + p`` is drawn by the attacked model and the
search stops early once the judge sees the concept. The attack prompt is that text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from t2i_unlearn.attacks.base import AttackContext, AttackResult, add_noise, concept_images, denoising_target, encode_images, iterations_for, predict_noise
from t2i_unlearn.attacks.text import concept_words, decode, encode_embeds, prompt_ids, searchable_vocab, sequence_ids, token_embedding_matrix

logger = logging.getLogger(__name__)


@dataclass
class UnlearnDiffConfig:
    """UnlearnDiffAtk settings (paper values unless noted)."""

    num_tokens: int = 5  # k prefix tokens (paper: 5)
    lr: float = 0.01  # Adam learning rate on the relaxed one-hot (paper: 0.01)
    iterations: int = 40  # optimisation steps per prompt (paper: 40); the budget's iterations override it
    timesteps: int = 50  # each step draws its timestep from this many evenly spaced ones (paper: a 50-step schedule)
    batch_size: int = 1  # noise draws per step (ours)
    check_every: int = 10  # judge the discrete prompt every this many steps; stop early when it fires (ours; paper: each step)
    ban_concept_words: bool = True  # leave words naming the concept out of the vocabulary (ours)
    banned_words: list[str] = field(default_factory=list)


def project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of ``v`` ``[k, V]`` onto the probability simplex (sort-based)."""
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1.0
    ind = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    cond = (u - css / ind) > 0
    rho = cond.to(v.dtype).cumsum(-1).argmax(-1, keepdim=True)  # last index where cond holds
    tau = css.gather(-1, rho) / (rho + 1).to(v.dtype)
    return (v - tau).clamp(min=0)


def straight_through_onehot(theta: torch.Tensor) -> torch.Tensor:
    """Hard one-hot of ``argmax(theta)`` in the forward pass, identity gradient to ``theta``."""
    hard = torch.nn.functional.one_hot(theta.argmax(-1), theta.shape[-1]).to(theta)
    return hard + theta - theta.detach()


def prefixed_hidden(text_encoder: object, onehot: torch.Tensor, vocab_table: torch.Tensor, tokenizer: object, prompt: str) -> torch.Tensor:
    """Hidden states ``[1, L, D]`` of ``[prefix tokens ; prompt]`` with the prefix given as (relaxed) one-hots ``[k, V]``."""
    k = onehot.shape[0]
    ids = sequence_ids(tokenizer, [-1] * k + prompt_ids(tokenizer, prompt))
    table = token_embedding_matrix(text_encoder)
    embeds = table[ids.clamp(min=0)].clone()
    embeds = torch.cat([embeds[:1], onehot @ vocab_table, embeds[1 + k :]], dim=0)
    return encode_embeds(text_encoder, embeds[None])


def run(ctx: AttackContext, cfg: UnlearnDiffConfig) -> AttackResult:
    """One prefix search per source prompt against its paired concept image."""
    pipe, spec = ctx.pipe, ctx.concept
    tok = pipe.tokenizer
    unsafe = [p.unsafe for p in spec.prompts]
    banned = (concept_words(unsafe, [p.safe for p in spec.prompts]) if cfg.ban_concept_words else []) + list(cfg.banned_words)
    vocab = searchable_vocab(tok, banned)
    vocab_table = token_embedding_matrix(pipe.text_encoder)[vocab.to(pipe.device)].detach()
    targets = [unsafe[j % len(unsafe)] for j in range(len(ctx.source_prompts))]
    images, _ = concept_images(ctx, targets, ctx.seed)
    latents = encode_images(pipe, images)
    total = int(pipe.scheduler.config.num_train_timesteps)
    grid = torch.linspace(0, total - 1, cfg.timesteps).round().long()
    steps = iterations_for(ctx.budget, cfg.iterations)
    gen = torch.Generator().manual_seed(ctx.seed)
    prompts = []
    bar = ctx.bar(steps * len(ctx.source_prompts), "unlearndiff")
    for j, source in enumerate(ctx.source_prompts):
        if ctx.tracker.out_of_queries_or_time():
            logger.warning("budget used up after %d of %d source prompts", j, len(ctx.source_prompts))
            break
        # Near-uniform start: Adam's first steps (size ~lr >> 1/V) then decide the argmax, so the
        # discrete prefix moves from the first step (a one-hot start needs ~1/lr steps to change).
        start = 1.0 / len(vocab) + 1e-3 * torch.rand(cfg.num_tokens, len(vocab), generator=gen)
        theta = project_simplex(start.to(vocab_table)).requires_grad_(True)
        optim = torch.optim.Adam([theta], lr=cfg.lr)
        x0 = latents[j : j + 1].expand(cfg.batch_size, -1, -1, -1)
        fired, used = False, 0
        text = source
        for step in range(steps):
            if ctx.tracker.out_of_queries_or_time():
                break
            t = grid[torch.randint(len(grid), (cfg.batch_size,), generator=gen)].to(pipe.device)
            noise = torch.randn(x0.shape, generator=gen).to(x0)
            x_t = pipe.scheduler.add_noise(x0, noise, t)
            hidden = prefixed_hidden(pipe.text_encoder, straight_through_onehot(theta), vocab_table, tok, source).expand(cfg.batch_size, -1, -1)
            loss = torch.nn.functional.mse_loss(predict_noise(pipe, x_t, t, hidden).float(), denoising_target(pipe, x0, noise, t).float())
            optim.zero_grad()
            loss.backward()
            optim.step()
            with torch.no_grad():
                theta.copy_(project_simplex(theta))
            used = step + 1
            ctx.tracker.spend(queries=cfg.batch_size, iterations=1)
            bar.update(1)
            text = f"{decode(tok, vocab[theta.argmax(-1).cpu()].tolist())} {source}"
            if used % cfg.check_every == 0 or used == steps:
                if ctx.fires([text], [ctx.seed + j])[0]:
                    fired = True
                    break
        bar.update(steps - used)
        prompts.append({"prompt": text, "seed": ctx.seed + j, "source_prompt": source, "target_prompt": targets[j], "steps": used, "judge_fired": fired})
        logger.info("unlearndiff %d: %d steps, fired=%s, prompt %r", j, used, fired, text)
    bar.close()
    return AttackResult(prompts, info={"banned_words": banned, "vocabulary_size": len(vocab)})


__all__ = ["UnlearnDiffConfig", "add_noise", "project_simplex", "run", "straight_through_onehot"]
