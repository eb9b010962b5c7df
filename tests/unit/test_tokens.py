"""Token pieces join to the decoded text; offsets index that text."""

from __future__ import annotations

from ecco_engine.tokens import single_token_id, token_pieces
from tiny_models import tiny_tokenizer


def test_pieces_join_to_decoded_text_with_offsets():
    tok = tiny_tokenizer()
    ids = tok.encode("The capital of France is Paris, café ü 日本")
    tokens = token_pieces(tok, ids)
    text = "".join(t.text for t in tokens)
    assert text == tok.decode(ids)
    for t in tokens:
        assert text[t.start : t.end] == t.text
    assert [t.id for t in tokens] == ids


def test_multibyte_characters_split_over_tokens_are_carried_by_the_completing_token():
    tok = tiny_tokenizer()
    ids = tok.encode("日本")  # not in the tiny vocabulary: one token per byte
    assert len(ids) == 6
    tokens = token_pieces(tok, ids)
    assert "".join(t.text for t in tokens) == "日本"
    assert [t.text for t in tokens if t.text] == ["日", "本"]


def test_single_token_id_from_text_or_id():
    tok = tiny_tokenizer()
    assert single_token_id(tok, 5, "contrast_token") == 5
    one = tok.encode(" the")
    assert len(one) == 1
    assert single_token_id(tok, " the", "contrast_token") == one[0]
