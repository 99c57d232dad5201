"""Train a byte-level BPE vocabulary in CLIP's file format (``vocab.json`` + ``merges.txt``).

The files load with ``transformers.CLIPTokenizer`` exactly as a real Stable Diffusion tokenizer does:
256 byte symbols, the same symbols with the end-of-word marker ``</w>``, one entry per learned
merge, then ``<|startoftext|>`` and ``<|endoftext|>``. Words seen in training become single tokens;
any other text still tokenizes, falling back to smaller pieces.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path

from t2i_unlearn.utils.io import atomic_write_text

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# CLIP's pre-tokenizer pattern, restricted to what Python's ``re`` supports (the toy text is ASCII).
_WORD_RE = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, [chr(c) for c in chars], strict=True))


def _pretokenize(text: str) -> list[str]:
    return _WORD_RE.findall(" ".join(text.lower().split()))


def train_bpe(corpus: list[str], max_merges: int = 4000) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn merges until every corpus word is a single token (or ``max_merges`` is reached).

    Returns ``(vocab, merges)`` in CLIP's convention. Ties between equally frequent pairs are
    broken lexicographically, so the result is deterministic.
    """
    byte_map = bytes_to_unicode()
    word_counts: Counter[str] = Counter()
    for line in corpus:
        word_counts.update(_pretokenize(line))
    words: dict[tuple[str, ...], int] = {}
    for word, count in word_counts.items():
        symbols = [byte_map[b] for b in word.encode("utf-8")]
        symbols[-1] = symbols[-1] + "</w>"
        words[tuple(symbols)] = words.get(tuple(symbols), 0) + count

    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in words.items():
            for pair in itertools.pairwise(symbols):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        merged = best[0] + best[1]
        new_words: dict[tuple[str, ...], int] = {}
        for symbols, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + count
        words = new_words

    base = list(byte_map.values())
    tokens = base + [s + "</w>" for s in base] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab: dict[str, int] = {}
    for tok in tokens:
        vocab.setdefault(tok, len(vocab))
    return vocab, merges


def save_clip_tokenizer(directory: str | Path, corpus: list[str], model_max_length: int = 77) -> Path:
    """Train on ``corpus`` and write a ``CLIPTokenizer`` directory; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = train_bpe(corpus)
    atomic_write_text(directory / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    atomic_write_text(directory / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
    }
    atomic_write_text(directory / "tokenizer_config.json", json.dumps(config, indent=2))
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    atomic_write_text(directory / "special_tokens_map.json", json.dumps(special, indent=2))
    return directory
