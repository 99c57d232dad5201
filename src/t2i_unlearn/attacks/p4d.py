"""P4D-N (Chin et al., ICML 2024): hard tokens that make the attacked model predict what the base model does on the unsafe prompt.

For an unsafe prompt ``u`` and its concept image ``x`` (drawn by the unconstrained base model), P4D-N
learns N soft token embeddings ``P`` from a random start, projected to their nearest vocabulary
embeddings ``proj(P)`` in the forward pass (straight-through to ``P``)::

    min_P  E_{t, eps} || eps_attacked( x_t, t, E(proj(P)) ) - eps_base( x_t, t, E(u) ) ||^2

The prompt is the N projected tokens alone (P4D-N; P4D-K would insert them into ``u``). Every
``check_every`` steps the attacked model draws the current prompt and the search stops early once the
judge fires. Source prompt ``j`` is paired with the concept's unsafe prompt ``j mod n``; only the
unsafe prompt is used (P4D-N ignores the source text).
"""

from __future__ import annotations

import logging

import torch

from t2i_unlearn.attacks.base import AttackContext, AttackResult, concept_images, encode_images, iterations_for, predict_noise
from t2i_unlearn.attacks.configs import P4DConfig
from t2i_unlearn.attacks.text import concept_words, decode, encode_embeds, encode_prompts, searchable_vocab, sequence_ids, token_embedding_matrix

logger = logging.getLogger(__name__)


def nearest_tokens(soft: torch.Tensor, vocab_table: torch.Tensor) -> torch.Tensor:
    """Index into ``vocab_table`` ``[V, D]`` of the nearest (cosine) row for each soft embedding ``[N, D]``."""
    sims = torch.nn.functional.normalize(soft, dim=-1) @ torch.nn.functional.normalize(vocab_table, dim=-1).T
    return sims.argmax(-1)


def run(ctx: AttackContext, cfg: P4DConfig) -> AttackResult:
    """One P4D-N search per source prompt (paired unsafe prompt); returns the hard prompts."""
    pipe, spec = ctx.pipe, ctx.concept
    base = ctx.base_pipe()
    tok = pipe.tokenizer
    unsafe = [p.unsafe for p in spec.prompts]
    banned = (concept_words(unsafe, [p.safe for p in spec.prompts]) if cfg.ban_concept_words else []) + list(cfg.banned_words)
    vocab = searchable_vocab(tok, banned)
    table = token_embedding_matrix(pipe.text_encoder)
    vocab_table = table[vocab.to(pipe.device)].detach()
    targets = [unsafe[j % len(unsafe)] for j in range(len(ctx.source_prompts))]
    images, _ = concept_images(ctx, targets, ctx.seed)
    latents = encode_images(base, images)
    target_hidden = encode_prompts(base, targets)
    steps = iterations_for(ctx.budget, cfg.iterations)
    gen = torch.Generator().manual_seed(ctx.seed)
    frame = sequence_ids(tok, [-1] * cfg.num_tokens).to(pipe.device)
    frame_embeds = table[frame.clamp(min=0)].detach()
    prompts = []
    bar = ctx.bar(steps * len(targets), "p4d")
    for j, target in enumerate(targets):
        if ctx.tracker.out_of_queries_or_time():
            logger.warning("budget used up after %d of %d prompts", j, len(targets))
            break
        soft = vocab_table[torch.randint(len(vocab), (cfg.num_tokens,), generator=gen).to(pipe.device)].clone().requires_grad_(True)
        optim = torch.optim.AdamW([soft], lr=cfg.lr, weight_decay=cfg.weight_decay)
        x0 = latents[j : j + 1].expand(cfg.batch_size, -1, -1, -1)
        cond = target_hidden[j : j + 1].expand(cfg.batch_size, -1, -1)
        fired, used = False, 0
        text = ""
        for step in range(steps):
            if ctx.tracker.out_of_queries_or_time():
                break
            idx = nearest_tokens(soft.detach(), vocab_table)
            hard = vocab_table[idx] + soft - soft.detach()
            embeds = torch.cat([frame_embeds[:1], hard, frame_embeds[1 + cfg.num_tokens :]])
            hidden = encode_embeds(pipe.text_encoder, embeds[None]).expand(cfg.batch_size, -1, -1)
            t = torch.randint(0, int(pipe.scheduler.config.num_train_timesteps), (cfg.batch_size,), generator=gen).to(pipe.device)
            noise = torch.randn(x0.shape, generator=gen).to(x0)
            x_t = base.scheduler.add_noise(x0, noise, t)
            with torch.no_grad():
                want = predict_noise(base, x_t, t, cond)
            loss = torch.nn.functional.mse_loss(predict_noise(pipe, x_t, t, hidden).float(), want.float())
            optim.zero_grad()
            loss.backward()
            optim.step()
            used = step + 1
            ctx.tracker.spend(queries=2 * cfg.batch_size, iterations=1)
            bar.update(1)
            text = decode(tok, vocab[nearest_tokens(soft.detach(), vocab_table).cpu()].tolist())
            if used % cfg.check_every == 0 or used == steps:
                if ctx.fires([text], [ctx.seed + j])[0]:
                    fired = True
                    break
        bar.update(steps - used)
        if used == 0:
            logger.warning("budget used up before prompt %d of %d was optimised", j + 1, len(targets))
            break
        entry = {"prompt": text, "seed": ctx.seed + j, "source_prompt": ctx.source_prompts[j], "target_prompt": target}
        prompts.append({**entry, "steps": used, "judge_fired": fired})
        logger.info("p4d %d: %d steps, fired=%s, prompt %r", j, used, fired, text)
    bar.close()
    return AttackResult(prompts, info={"banned_words": banned, "vocabulary_size": len(vocab)})
