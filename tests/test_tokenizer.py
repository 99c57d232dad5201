"""The toy tokenizer is a real CLIP BPE tokenizer: it loads in transformers and round-trips captions."""

from __future__ import annotations

import json

from transformers import CLIPTokenizer, CLIPTokenizerFast

from t2i_unlearn.toy.render import render_dataset, vocabulary_words
from t2i_unlearn.toy.tokenizer import save_clip_tokenizer, train_bpe


def test_round_trip_and_single_token_words(tmp_path):
    _, captions, _ = render_dataset(500, seed=0)
    save_clip_tokenizer(tmp_path, captions + vocabulary_words())
    slow = CLIPTokenizer.from_pretrained(tmp_path)
    fast = CLIPTokenizerFast.from_pretrained(tmp_path)
    for caption in captions[:100]:
        ids = slow(caption).input_ids
        assert ids[0] == slow.bos_token_id and ids[-1] == slow.eos_token_id
        assert fast(caption).input_ids == ids
        decoded = slow.decode(ids, skip_special_tokens=True)
        assert slow(decoded).input_ids == ids  # decoding loses nothing the encoder needs
        assert decoded.replace(" - ", "-") == caption
    for phrase in vocabulary_words():
        for word in phrase.replace("-", " ").split():
            assert len(slow(word, add_special_tokens=False).input_ids) == 1, word
    assert slow.model_max_length == 77


def test_unknown_words_fall_back_to_pieces(tmp_path):
    save_clip_tokenizer(tmp_path, ["a red circle", "a blue square"])
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    ids = tok("a zebra", add_special_tokens=False).input_ids
    assert len(ids) > 2  # "zebra" was never seen: it splits into smaller pieces
    assert tok.decode(ids) == "a zebra"


def test_bpe_is_deterministic(tmp_path):
    corpus = ["a striped red circle", "a dotted blue square on the left"] * 3
    assert train_bpe(corpus) == train_bpe(list(reversed(corpus)))
    save_clip_tokenizer(tmp_path, corpus)
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    assert list(vocab)[-2:] == ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == len(set(vocab.values()))
