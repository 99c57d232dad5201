"""UCE: Unified Concept Editing in Diffusion Models (Gandikota et al., WACV 2024).

UCE edits the cross-attention key and value projections ``W`` (``attn2.to_k``, ``attn2.to_v``) in
closed form, so that the text embeddings ``c_i`` of the concepts to erase are projected to what the
original ``W`` makes of their guide's embeddings ``g_i`` (``v_i* = W_old g_i``), while the
embeddings ``c_j`` of concepts to preserve keep their projections (eq. 7 of the paper):

    W = ( lambda W_old + s_e sum_i v_i* c_i^T + s_p sum_j W_old c_j c_j^T )
        ( lambda I     + s_e sum_i c_i  c_i^T + s_p sum_j c_j c_j^T     )^-1

with the authors' defaults lambda = 0.5, erase scale s_e = 1, preserve scale s_p = 1. Which token
embeddings stand for a prompt: the authors' current script takes the last word token only
(``tokens: last``); their first release took that token and every token after it (end of text and
padding, ``tokens: last_to_end``), aligned between a concept and its guide.

The edit is the pure function :func:`uce_edit`; the result is written as an exact LoRA on the
edited projections (see :mod:`.edits`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from t2i_unlearn.errors import UserError
from t2i_unlearn.methods import edits
from t2i_unlearn.methods.uce_config import TOKEN_MODES, UCEConfig, load_config

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# The edit
# ---------------------------------------------------------------------------------------------


def uce_edit(
    w_old: torch.Tensor,
    erase: torch.Tensor,
    guide: torch.Tensor,
    preserve: torch.Tensor | None,
    erase_scale: float = 1.0,
    preserve_scale: float = 1.0,
    lamb: float = 0.5,
) -> torch.Tensor:
    """UCE's closed-form projection ``W`` (eq. 7) for one linear layer; returns ``[out, in]`` in ``w_old``'s dtype.

    ``w_old`` is ``[out, in]``; ``erase`` and ``guide`` are matching ``[n, in]`` rows (c_i and g_i);
    ``preserve`` is ``[m, in]`` (c_j) or None. Solved in float64 as ``mat1 @ mat2^-1`` with
    ``mat1 = lamb W + s_e V* C^T + s_p W P P^T`` and ``mat2 = lamb I + s_e C C^T + s_p P P^T``.
    """
    w = w_old.double()
    c, g = erase.double(), guide.double()
    if c.shape != g.shape:
        raise ValueError(f"erase {tuple(c.shape)} and guide {tuple(g.shape)} embeddings differ in shape")
    v_star = g @ w.T  # [n, out]: what the original projection makes of the guides
    mat1 = lamb * w + erase_scale * v_star.T @ c
    mat2 = lamb * torch.eye(w.shape[1], dtype=torch.float64, device=w.device) + erase_scale * c.T @ c
    if preserve is not None and len(preserve):
        p = preserve.double()
        mat1 = mat1 + preserve_scale * (w @ p.T) @ p
        mat2 = mat2 + preserve_scale * p.T @ p
    # mat2 is symmetric: W = mat1 mat2^-1  <=>  mat2 W^T = mat1^T
    return torch.linalg.solve(mat2, mat1.T).T.to(w_old.dtype)


def resolve_prompts(config: UCEConfig, concept: Any) -> tuple[list[str], list[str], list[str]]:
    """``(erase, guide, preserve)`` prompt lists from the config, falling back to the concept spec's prompts."""
    pairs = edits.concept_prompt_pairs(concept)
    if config.erase_prompts:
        erase = list(config.erase_prompts)
        guides = list(config.guide_prompts) if config.guide_prompts else [""]
    else:
        erase = [u for u, _ in pairs]
        guides = list(config.guide_prompts) if config.guide_prompts else [s for _, s in pairs]
    if len(guides) == 1:
        guides = guides * len(erase)
    if len(guides) != len(erase):
        raise UserError(f"UCE: {len(erase)} prompts to erase but {len(guides)} guide prompts (give one per prompt, or one for all)")
    preserve = edits.dedupe(config.preserve_prompts if config.preserve_prompts is not None else [s for _, s in pairs])
    clash = sorted(set(preserve) & set(erase))
    if clash:
        raise UserError(f"UCE: {clash[0]!r} is both erased and preserved")
    return erase, guides, preserve


@torch.no_grad()
def _token_rows(pipe: Any, prompts: list[str], device: torch.device) -> tuple[torch.Tensor, list[int]]:
    """Text embeddings ``[N, L, d]`` of ``prompts`` and the index of each one's last word token."""
    emb, _ = pipe.encode_prompt(prompts, device, 1, False)
    mask = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt").attention_mask
    last = [max(0, int(m.sum().item()) - 2) for m in mask]
    return emb.float(), last


def select_tokens(emb_a: torch.Tensor, last_a: int, emb_b: torch.Tensor, last_b: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Matching token rows of two prompts: their last word tokens, or those and every later position aligned (``last_to_end``)."""
    if mode == "last":
        return emb_a[last_a : last_a + 1], emb_b[last_b : last_b + 1]
    n = emb_a.shape[0] - max(last_a, last_b)
    return emb_a[last_a : last_a + n], emb_b[last_b : last_b + n]


def cross_attention_projections(unet: torch.nn.Module, edit_keys: bool) -> dict[str, torch.nn.Linear]:
    """The ``attn2.to_v`` (and ``attn2.to_k``) layers of a UNet, by name."""
    ends = (".attn2.to_v", ".attn2.to_k") if edit_keys else (".attn2.to_v",)
    out = {n: m for n, m in unet.named_modules() if n.endswith(ends) and isinstance(m, torch.nn.Linear)}
    if not out:
        raise UserError("UCE: the model has no cross-attention projections (attn2.to_k / attn2.to_v)")
    return out


def train_uce(
    model: str,
    concept: Any,
    out: str | Path,
    config: UCEConfig | None = None,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = False,
    command: str = "t2i-unlearn train uce",
) -> Path:
    """Erase ``concept`` from ``model`` with UCE's closed-form edit; write ``out`` (LoRA + card + manifest); return it."""
    from tqdm.auto import tqdm

    from t2i_unlearn.concepts import load_concept
    from t2i_unlearn.models import load_pipeline, pipeline_family, resolve_model
    from t2i_unlearn.utils.io import atomic_write_json, make_manifest

    config = config or UCEConfig()
    config.validate()
    spec = concept if hasattr(concept, "leaves") else load_concept(concept)
    erase, guides, preserve = resolve_prompts(config, spec)
    request = {"model": model, "concept": spec.model_dump(mode="json"), "settings": config.to_dict()}
    claim = edits.prepare_out(out, overwrite, "uce", request)
    out = claim.path
    if claim.status == "done":
        logger.info("%s already holds this UCE result; reusing it", out)
        return out
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pipe = load_pipeline(model, device=dev, dtype=torch.float32)
    family = pipeline_family(pipe)
    if family != "sd":
        raise UserError(f"UCE is implemented for SD 1.x/2.x pipelines; {model} is {family}")

    emb_e, last_e = _token_rows(pipe, erase, dev)
    emb_g, last_g = _token_rows(pipe, guides, dev)
    rows_c, rows_g = [], []
    for i in range(len(erase)):
        a, b = select_tokens(emb_e[i], last_e[i], emb_g[i], last_g[i], config.tokens)
        rows_c.append(a)
        rows_g.append(b)
    c, g = torch.cat(rows_c), torch.cat(rows_g)
    p = None
    if preserve:
        emb_p, last_p = _token_rows(pipe, preserve, dev)
        p = torch.cat([select_tokens(emb_p[i], last_p[i], emb_p[i], last_p[i], config.tokens)[0] for i in range(len(preserve))])

    unet = pipe.unet
    layers = cross_attention_projections(unet, config.edit_keys)
    base = {f"{n}.weight": m.weight.detach().to("cpu", torch.float32).clone() for n, m in layers.items()}
    with torch.no_grad():
        for layer in tqdm(layers.values(), desc="UCE", disable=not progress, leave=False):
            layer.weight.copy_(uce_edit(layer.weight, c, g, p, config.erase_scale, config.preserve_scale, config.lamb))
    settings = {
        **config.to_dict(),
        "erase_used": erase,
        "guide_used": guides,
        "preserve_used": preserve,
        "erase_token_rows": int(c.shape[0]),
        "preserve_token_rows": int(p.shape[0]) if p is not None else 0,
        "edited_layers": len(layers),
        "family": family,
    }
    logger.info("UCE on %s: %d prompts erased, %d preserved, %d layers edited", model, len(erase), len(preserve), len(layers))
    tmp = edits.temp_folder(out)
    try:
        saved = edits.save_weight_edit(tmp, unet, base, family, prefer_lora=True, max_rank=config.lora_max_rank)
        settings["output"] = saved
        atomic_write_json(tmp / "uce_config.json", settings)
        edits.write_card(
            tmp,
            f"UCE: {spec.name}",
            f"UCE (Unified Concept Editing, Gandikota et al. 2024) on `{model}` ({family}): closed-form edit of the cross-attention "
            f"{'key and value' if config.edit_keys else 'value'} projections mapping concept `{spec.name}` to its guide prompts.",
            model,
            saved["kind"],
            {k: v for k, v in settings.items() if k != "output"} | {"output": saved["kind"]},
        )
        concept_info = {"name": spec.name, "description": spec.description}
        manifest = make_manifest(
            command, settings, inputs={"model": resolve_model(model)}, concept=concept_info, output=saved, artifact="uce_result", request=request
        )
        atomic_write_json(tmp / "manifest.json", manifest)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return edits.finish_folder(out, tmp)


def train_uce_concept(model: str, concept: Any, out: str | Path, config: UCEConfig | None = None, **kwargs: Any) -> list[Path]:
    """Registry entry point: one UCE edit for ``concept`` (all sub-concepts' prompts together); returns ``[out]``."""
    return [train_uce(model, concept, out, config, **kwargs)]


__all__ = ["TOKEN_MODES", "UCEConfig", "load_config", "resolve_prompts", "train_uce", "train_uce_concept", "uce_edit"]
