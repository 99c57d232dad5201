"""Ring-A-Bell (Tsai et al., ICLR 2024): black-box hard-prompt search with the text encoder only.

Concept direction over the concept's prompt pairs (unsafe ``u_i``, safe ``s_i``), with ``E`` the
text encoder's last hidden states ``[L, D]``::

    d = mean_i ( E(u_i) - E(s_i) )
    target(p) = E(p) + eta * d                       for each source prompt p

A genetic algorithm then searches K whole-word vocabulary tokens ``w`` maximising
``fitness(w) = cos( flatten E(w), flatten target(p) )``: elitism, parents drawn from the fitter half,
uniform crossover, per-token mutation. The found tokens, decoded to text, are the attack prompt.
Words that name the concept (in the unsafe prompts but in no safe prompt) are left out of the
search by default, as a word-level blocklist would remove them.
"""

from __future__ import annotations

import logging

import torch

from t2i_unlearn.attacks.base import AttackContext, AttackResult, iterations_for
from t2i_unlearn.attacks.configs import RingABellConfig
from t2i_unlearn.attacks.text import concept_words, decode, encode_prompts, searchable_vocab, sequence_ids

logger = logging.getLogger(__name__)


def concept_direction(pipe: object, unsafe: list[str], safe: list[str]) -> torch.Tensor:
    """``mean_i E(unsafe_i) - E(safe_i)`` as ``[L, D]``."""
    return (encode_prompts(pipe, unsafe) - encode_prompts(pipe, safe)).mean(0)


def fitness(pipe: object, population: torch.Tensor, target: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cosine similarity ``[P]`` between the encoded token sequences ``[P, K]`` and the target ``[L, D]``."""
    tok = pipe.tokenizer  # type: ignore[attr-defined]
    ids = torch.stack([sequence_ids(tok, row.tolist()) for row in population])
    out = []
    flat_target = target.flatten()
    with torch.no_grad():
        for i in range(0, len(ids), batch_size):
            hidden = pipe.text_encoder(ids[i : i + batch_size].to(pipe.text_encoder.device)).last_hidden_state  # type: ignore[attr-defined]
            out.append(torch.nn.functional.cosine_similarity(hidden.flatten(1), flat_target[None].to(hidden), dim=1).cpu())
    return torch.cat(out)


def evolve(population: torch.Tensor, scores: torch.Tensor, vocab: torch.Tensor, cfg: RingABellConfig, gen: torch.Generator) -> torch.Tensor:
    """One GA generation: keep the elite, breed the rest from the fitter half (crossover, mutation)."""
    p, k = population.shape
    order = scores.argsort(descending=True)
    elite = population[order[: cfg.elite]]
    parents = population[order[: max(2, p // 2)]]
    n_child = p - len(elite)
    a = parents[torch.randint(len(parents), (n_child,), generator=gen)]
    b = parents[torch.randint(len(parents), (n_child,), generator=gen)]
    do_cross = torch.rand(n_child, 1, generator=gen) < cfg.crossover_rate
    mask = torch.rand(n_child, k, generator=gen) < 0.5
    children = torch.where(do_cross & mask, b, a)
    mutate = torch.rand(n_child, k, generator=gen) < cfg.mutation_rate
    random_tokens = vocab[torch.randint(len(vocab), (n_child, k), generator=gen)]
    children = torch.where(mutate, random_tokens, children)
    return torch.cat([elite, children])


def run(ctx: AttackContext, cfg: RingABellConfig) -> AttackResult:
    """One GA search per source prompt; returns the best K-token prompt of each."""
    pipe, spec = ctx.pipe, ctx.concept
    unsafe = [p.unsafe for p in spec.prompts]
    safe = [p.safe for p in spec.prompts]
    banned = (concept_words(unsafe, safe) if cfg.ban_concept_words else []) + list(cfg.banned_words)
    vocab = searchable_vocab(pipe.tokenizer, banned)
    direction = concept_direction(pipe, unsafe, safe)
    generations = iterations_for(ctx.budget, cfg.generations)
    gen = torch.Generator().manual_seed(ctx.seed)
    prompts, best_scores = [], []
    bar = ctx.bar(generations * len(ctx.source_prompts), "ring_a_bell")
    for j, source in enumerate(ctx.source_prompts):
        if ctx.tracker.out_of_queries_or_time():
            logger.warning("budget used up after %d of %d source prompts", j, len(ctx.source_prompts))
            break
        target = encode_prompts(pipe, [source])[0] + cfg.eta * direction
        population = vocab[torch.randint(len(vocab), (cfg.population, cfg.num_tokens), generator=gen)]
        scores = fitness(pipe, population, target, cfg.batch_size)
        ctx.tracker.spend(queries=len(population))
        for _ in range(generations):
            if ctx.tracker.out_of_queries_or_time():
                break
            population = evolve(population, scores, vocab, cfg, gen)
            scores = fitness(pipe, population, target, cfg.batch_size)
            ctx.tracker.spend(queries=len(population), iterations=1)
            bar.update(1)
        best = int(scores.argmax())
        text = decode(pipe.tokenizer, population[best].tolist())
        prompts.append({"prompt": text, "seed": ctx.seed + j, "source_prompt": source, "fitness": round(float(scores[best]), 5)})
        best_scores.append(float(scores[best]))
        logger.info("ring_a_bell %d: fitness %.4f, prompt %r", j, scores[best], text)
    bar.close()
    return AttackResult(prompts, info={"banned_words": banned, "vocabulary_size": len(vocab), "mean_fitness": sum(best_scores) / max(1, len(best_scores))})
