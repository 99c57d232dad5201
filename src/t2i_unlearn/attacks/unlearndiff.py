"""UnlearnDiffAtk (Zhang et al., ECCV 2024): white-box prefix tokens that make the model denoise like a concept image.

For a source prompt ``p`` and a target image ``x`` of the concept (drawn by the base model from the
unsafe prompt paired with ``p``), k prefix tokens are a relaxed one-hot ``theta in R^{k x V}`` over the
searchable vocabulary, started uniform::

    min_theta  E_eps || eps - eps_theta( x_t, t, E([onehot(theta) W ; tokens(p)]) ) ||^2

The paper's schedule: the timesteps ``t_i = T/2n + i T/n`` (``n`` = 50, ascending) are visited in turn,
``steps_per_timestep`` (40) Adam steps at each. Each step *draws* one token per row from ``theta``
(straight-through, gradient clipped to [-1, 1]), takes an Adam step (lr 0.01, weight decay 0.1) and
projects every row back onto the probability simplex. After each timestep's block the prefix is
discretised (argmax of ``theta``), the attacked model draws ``prefix + p`` and the search stops once
the judge sees the concept. The attack prompt is that text.
"""

from __future__ import annotations

import logging

import torch

from t2i_unlearn.attacks.base import AttackContext, AttackResult, concept_images, denoising_target, encode_images, iterations_for, predict_noise
from t2i_unlearn.attacks.configs import UNLEARNDIFF_DISCRETISE, UNLEARNDIFF_ORDERS, UnlearnDiffConfig
from t2i_unlearn.attacks.text import concept_words, decode, encode_embeds, prompt_ids, searchable_vocab, sequence_ids, token_embedding_matrix

logger = logging.getLogger(__name__)

DISCRETISE, ORDERS = UNLEARNDIFF_DISCRETISE, UNLEARNDIFF_ORDERS


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


class _ClippedStraightThrough(torch.autograd.Function):
    """Forward: the given one-hot; backward: the incoming gradient clipped to [-1, 1] (the paper's hardtanh)."""

    @staticmethod
    def forward(ctx: object, theta: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return hard

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.clamp(-1.0, 1.0), None


def sampled_onehot(theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One-hot of one token per row drawn from ``theta`` ``[k, V]`` (rows on the simplex); gradient to ``theta`` clipped to [-1, 1].

    Drawing rather than taking the argmax lets the relaxed one-hot explore: a token's probability is
    how often its gradient is measured, so the search is not stuck on whatever token leads first.
    """
    draws = torch.multinomial(theta.detach().float().cpu(), 1, generator=generator).squeeze(-1).to(theta.device)
    hard = torch.nn.functional.one_hot(draws, theta.shape[-1]).to(theta)
    return _ClippedStraightThrough.apply(theta, hard)


def timestep_schedule(total: int, n: int, order: str = "ascending", generator: torch.Generator | None = None) -> torch.Tensor:
    """The ``n`` timesteps ``T/2n + i*T/n`` of a ``total``-step training schedule, in ``order`` (ascending is the paper's)."""
    stride = max(1, total // n)
    grid = torch.arange(stride // 2, total, stride)[:n]
    if order == "descending":
        return grid.flip(0)
    if order == "random":
        return grid[torch.randperm(len(grid), generator=generator)]
    return grid


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
    steps = iterations_for(ctx.budget, cfg.iterations)
    check_every = cfg.check_every or cfg.steps_per_timestep
    gen = torch.Generator().manual_seed(ctx.seed)
    prompts = []
    bar = ctx.bar(steps * len(ctx.source_prompts), "unlearndiff")
    for j, source in enumerate(ctx.source_prompts):
        if ctx.tracker.out_of_queries_or_time():
            logger.warning("budget used up after %d of %d source prompts", j, len(ctx.source_prompts))
            break
        grid = timestep_schedule(total, cfg.timesteps, cfg.order, gen)
        theta = torch.full((cfg.num_tokens, len(vocab)), 1.0 / len(vocab), dtype=vocab_table.dtype, device=vocab_table.device)
        if cfg.discretise == "argmax":
            # An exactly uniform argmax is token 0 at every row; a little noise breaks the tie at random.
            theta = project_simplex(theta + 1e-3 * torch.rand(theta.shape, generator=gen).to(theta))
        theta.requires_grad_(True)
        optim = torch.optim.Adam([theta], lr=cfg.lr, weight_decay=cfg.weight_decay)
        x0 = latents[j : j + 1].expand(cfg.batch_size, -1, -1, -1)
        fired, used, t_last = False, 0, -1
        text = source
        for step in range(steps):
            if ctx.tracker.out_of_queries_or_time():
                break
            t_last = int(grid[(step // cfg.steps_per_timestep) % len(grid)])
            t = torch.full((cfg.batch_size,), t_last, dtype=torch.long, device=pipe.device)
            noise = torch.randn(x0.shape, generator=gen).to(x0)
            x_t = pipe.scheduler.add_noise(x0, noise, t)
            onehot = sampled_onehot(theta, gen) if cfg.discretise == "sample" else straight_through_onehot(theta)
            hidden = prefixed_hidden(pipe.text_encoder, onehot, vocab_table, tok, source).expand(cfg.batch_size, -1, -1)
            loss = torch.nn.functional.mse_loss(predict_noise(pipe, x_t, t, hidden).float(), denoising_target(pipe, x0, noise, t).float())
            optim.zero_grad()
            loss.backward()
            optim.step()
            with torch.no_grad():
                theta.copy_(project_simplex(theta))
            used = step + 1
            ctx.tracker.spend(queries=cfg.batch_size, iterations=1)
            bar.update(1)
            if used % check_every == 0 or used == steps:
                text = f"{decode(tok, vocab[theta.argmax(-1).cpu()].tolist())} {source}"
                if ctx.fires([text], [ctx.seed + j])[0]:
                    fired = True
                    break
        bar.update(steps - used)
        if used:  # the prefix as it stands (what the last check judged, or newer when the budget ran out mid-block)
            text = f"{decode(tok, vocab[theta.argmax(-1).cpu()].tolist())} {source}"
        entry = {"prompt": text, "seed": ctx.seed + j, "source_prompt": source, "target_prompt": targets[j]}
        prompts.append({**entry, "steps": used, "last_timestep": t_last, "judge_fired": fired})
        logger.info("unlearndiff %d: %d steps (t %d), fired=%s, prompt %r", j, used, t_last, fired, text)
    bar.close()
    return AttackResult(prompts, info={"banned_words": banned, "vocabulary_size": len(vocab)})


__all__ = ["UnlearnDiffConfig", "project_simplex", "run", "sampled_onehot", "straight_through_onehot", "timestep_schedule"]
