"""Concept Inversion (Pham et al., ICLR 2024): textual inversion of a new token against the attacked model.

The base (unconstrained) model draws images of the concept from its unsafe prompts (kept when the
judge sees the concept). A new token ``<concept>`` with embedding ``v`` is then learned on the
*attacked* model with the textual-inversion objective::

    min_v  E_{x, t, eps} || eps - eps_theta( x_t, t, E(template(<concept>); v) ) ||^2

Only ``v`` is trained; every model weight stays frozen. The attack prompts are ``<concept>`` inside
prompt templates; the embedding is saved in diffusers' textual-inversion format
(``{token: [1, D]}`` safetensors), so ``pipe.load_textual_inversion`` and ``t2i-unlearn eval`` read it.
"""

from __future__ import annotations

import logging

import torch

from t2i_unlearn.attacks.base import AttackContext, AttackResult, add_noise, concept_images, denoising_target, encode_images, iterations_for, predict_noise
from t2i_unlearn.attacks.configs import ConceptInversionConfig
from t2i_unlearn.attacks.text import encode_embeds, prompt_ids, sequence_ids, token_embedding_matrix
from t2i_unlearn.errors import UserError

logger = logging.getLogger(__name__)


def template_ids(tokenizer: object, template: str, placeholder: int = -1) -> torch.Tensor:
    """``[L]`` ids of ``template`` with ``{}`` as the ``placeholder`` id (filled by the learned vector)."""
    if template.count("{}") != 1:
        raise UserError(f"template {template!r} must contain exactly one {{}}")
    before, after = template.split("{}")
    middle = [*prompt_ids(tokenizer, before), placeholder, *prompt_ids(tokenizer, after)]
    return sequence_ids(tokenizer, middle)


def embed_with_token(text_encoder: object, ids: torch.Tensor, vector: torch.Tensor, placeholder: int = -1) -> torch.Tensor:
    """Hidden states ``[B, L, D]`` of ids ``[B, L]`` where ``placeholder`` positions take ``vector`` ``[D]``."""
    table = token_embedding_matrix(text_encoder)
    mask = (ids == placeholder).unsqueeze(-1)
    embeds = torch.where(mask, vector.to(table), table[ids.clamp(min=0)])
    return encode_embeds(text_encoder, embeds)


def run(ctx: AttackContext, cfg: ConceptInversionConfig) -> AttackResult:
    """Learn the token on the attacked model; attack prompts are the token in ``attack_templates``."""
    pipe, spec = ctx.pipe, ctx.concept
    tok = pipe.tokenizer
    if cfg.token in tok.get_vocab():
        raise UserError(f"token {cfg.token!r} is already in the vocabulary; choose another (--set token=<...>)")
    if cfg.num_images < 1 or cfg.batch_size < 1:
        raise UserError("num_images and batch_size must be at least 1")
    for template in [*cfg.train_templates, *cfg.attack_templates]:
        template_ids(tok, template)
    init = prompt_ids(tok, cfg.init_word)
    if not init:
        raise UserError(f"init_word {cfg.init_word!r} has no tokens")
    plan = [p.unsafe for p in spec.prompt_plan(cfg.num_images)]
    images, _ = concept_images(ctx, plan, ctx.seed)
    latents = encode_images(pipe, images)
    vector = token_embedding_matrix(pipe.text_encoder)[init[0]].detach().clone().float().requires_grad_(True)
    optim = torch.optim.Adam([vector], lr=cfg.lr)
    templates = torch.stack([template_ids(tok, t) for t in cfg.train_templates]).to(pipe.device)
    gen = torch.Generator().manual_seed(ctx.seed)
    steps = iterations_for(ctx.budget, cfg.steps)
    bar = ctx.bar(steps, "concept_inversion")
    losses = []
    for _ in range(steps):
        if ctx.tracker.out_of_queries_or_time():
            logger.warning("budget used up after %d steps", ctx.tracker.iterations)
            break
        idx = torch.randint(len(latents), (min(cfg.batch_size, len(latents)),), generator=gen)
        x0 = latents[idx.to(latents.device)]
        x_t, noise, t = add_noise(pipe, x0, gen)
        ids = templates[torch.randint(len(templates), (len(idx),), generator=gen).to(templates.device)]
        hidden = embed_with_token(pipe.text_encoder, ids, vector)
        loss = torch.nn.functional.mse_loss(predict_noise(pipe, x_t, t, hidden).float(), denoising_target(pipe, x0, noise, t).float())
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
        ctx.tracker.spend(queries=len(idx), iterations=1)
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    prompts = []
    for i, template in enumerate(cfg.attack_templates):
        for r in range(cfg.images_per_template):
            j = i * cfg.images_per_template + r
            prompts.append({"prompt": template.replace("{}", cfg.token), "seed": ctx.seed + j, "source_prompt": template})
    tail = losses[-50:]
    return AttackResult(
        prompts,
        embeddings={cfg.token: vector.detach().cpu().reshape(1, -1)},
        info={"concept_images": len(images), "final_loss": sum(tail) / len(tail) if tail else None, "training_prompts": sorted(set(plan))},
    )
