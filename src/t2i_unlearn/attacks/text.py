"""Text-encoder plumbing shared by the attacks: token sequences, searchable vocabulary, encoding from token embeddings.

The attacks that optimise tokens (UnlearnDiffAtk, P4D, Concept Inversion) feed the CLIP text
encoder token *embeddings* instead of token ids, so that gradients reach the tokens.
:func:`encode_embeds` runs the encoder from there; it equals ``text_encoder(ids).last_hidden_state``
when the embeddings are the ids' own (checked in the tests).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from t2i_unlearn.errors import UserError


def require_text_encoder(pipe: Any, attack: str) -> None:
    """:class:`UserError` unless ``pipe`` is an SD 1.x/2.x pipeline: one CLIP tokenizer and text encoder, a UNet.

    SDXL and SD3 condition on two or three text encoders (and pooled embeddings), which the attacks do
    not optimise; attack sets found on an SD 1.x/2.x model still replay on them through ``eval``.
    """
    te = getattr(pipe, "text_encoder", None)
    if te is None or getattr(pipe, "tokenizer", None) is None:
        raise UserError(f"{attack} needs a model with a text encoder and tokenizer; {type(pipe).__name__} has none")
    from t2i_unlearn.models import pipeline_family

    if pipeline_family(pipe) != "sd":
        raise UserError(
            f"{attack} attacks SD 1.x/2.x models (one CLIP text encoder and a UNet); {type(pipe).__name__} is not one. "
            "Replay an attack set found on an SD 1.x/2.x model with 'eval --attack' instead"
        )
    parts = getattr(te, "text_model", te)
    if not all(hasattr(parts, name) for name in ("embeddings", "encoder", "final_layer_norm")):
        raise UserError(f"{attack} supports CLIP text encoders (SD 1.x/2.x); got {type(te).__name__}")


def _parts(text_encoder: Any) -> Any:
    # transformers < 5 wraps the layers in ``text_model``; 5.x puts them on the model itself.
    return getattr(text_encoder, "text_model", text_encoder)


def token_embedding_matrix(text_encoder: Any) -> torch.Tensor:
    """The text encoder's input token embeddings ``[V, D]`` (a view of the weights)."""
    return _parts(text_encoder).embeddings.token_embedding.weight


def encode_embeds(text_encoder: Any, token_embeds: torch.Tensor) -> torch.Tensor:
    """Last hidden states ``[B, L, D]`` of the text encoder run on token embeddings ``[B, L, D]`` (causal, no padding mask, as SD uses it)."""
    parts = _parts(text_encoder)
    hidden = parts.embeddings(inputs_embeds=token_embeds)
    out = parts.encoder(inputs_embeds=hidden, attention_mask=None, is_causal=True)
    last = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return parts.final_layer_norm(last)


def encode_embeds_penultimate(text_encoder: Any, token_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(last, penultimate)`` hidden states ``[B, L, D]`` of the text encoder run on token embeddings.

    ``last`` is :func:`encode_embeds`' output (after the final layer norm); ``penultimate`` is the
    output of the second-to-last layer, without the norm: ``hidden_states[-2]``, what SDXL conditions on.
    """
    parts = _parts(text_encoder)
    layers = parts.encoder.layers
    captured: dict[str, torch.Tensor] = {}

    def keep(_module: Any, _inputs: Any, output: Any) -> None:
        captured["h"] = output[0] if isinstance(output, tuple) else output

    # hidden_states[-2] is the embeddings' output when there is a single layer
    handle = (layers[-2] if len(layers) >= 2 else parts.embeddings).register_forward_hook(keep)
    try:
        last = encode_embeds(text_encoder, token_embeds)
    finally:
        handle.remove()
    return last, captured["h"]


def pooled_position(text_encoder: Any, ids: torch.Tensor) -> int:
    """Where the text encoder pools ``[L]`` ids: the first EOS; placeholders (-1) count as newly added tokens.

    Mirrors transformers' CLIP: configs with the old ``eos_token_id`` 2 (SDXL's second encoder among
    them) pool at the highest id instead, which is the last added token when a prompt holds
    textual-inversion tokens.
    """
    config = getattr(text_encoder, "config", None)
    eos = getattr(config, "eos_token_id", None)
    ids = ids.clone()
    holes = ids < 0
    ids[holes] = int(getattr(config, "vocab_size", 0) or 0) + torch.arange(int(holes.sum()))
    if eos == 2:
        return int(ids.argmax())
    return int((ids == eos).int().argmax())


def encode_prompts(pipe: Any, prompts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Text-encoder hidden states ``[N, L, D]`` of ``prompts`` padded to the tokenizer's length (what SD conditions on)."""
    out = []
    tok = pipe.tokenizer
    for i in range(0, len(prompts), batch_size):
        ids = tok(list(prompts[i : i + batch_size]), padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            out.append(pipe.text_encoder(ids.to(pipe.text_encoder.device)).last_hidden_state)
    return torch.cat(out)


def words_of(prompts: Iterable[str]) -> set[str]:
    """Lower-case words of ``prompts`` (letters, digits, hyphen, apostrophe)."""
    return {w for p in prompts for w in re.findall(r"[a-z0-9'\-]+", p.lower())}


def concept_words(unsafe: Sequence[str], safe: Sequence[str]) -> list[str]:
    """Words that occur in the unsafe prompts but in no safe prompt: the words that name the concept."""
    return sorted(words_of(unsafe) - words_of(safe))


def searchable_vocab(tokenizer: Any, banned_words: Iterable[str] = ()) -> torch.Tensor:
    """Ids of whole-word tokens (``...</w>``, letters only) minus special tokens and tokens of ``banned_words``.

    Whole-word tokens decode to text that tokenises back to the same ids, so a hard prompt found in
    token space replays as plain text on any model with the same tokenizer.
    """
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_ids)
    banned_ids: set[int] = set()
    for word in banned_words:
        banned_ids.update(tokenizer(word, add_special_tokens=False).input_ids)
    ids = [
        i
        for tok, i in vocab.items()
        if tok.endswith("</w>") and tok[:-4].isalpha() and tok[:-4].isascii() and tok[:-4] == tok[:-4].lower() and i not in special and i not in banned_ids
    ]
    if not ids:
        raise UserError("no searchable tokens left in the vocabulary after removing the banned words")
    return torch.tensor(sorted(ids), dtype=torch.long)


def decode(tokenizer: Any, ids: Sequence[int]) -> str:
    """Text of token ids (no special tokens)."""
    return tokenizer.decode(list(ids), skip_special_tokens=True).strip()


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of ``prompt`` without BOS/EOS."""
    return list(tokenizer(prompt, add_special_tokens=False).input_ids)


def sequence_ids(tokenizer: Any, middle: Sequence[int]) -> torch.Tensor:
    """``[L]`` ids: BOS, ``middle`` (truncated), EOS, then padding to the tokenizer's length."""
    length = tokenizer.model_max_length
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    body = list(middle)[: length - 2]
    ids = [tokenizer.bos_token_id, *body, tokenizer.eos_token_id]
    return torch.tensor(ids + [pad] * (length - len(ids)), dtype=torch.long)
