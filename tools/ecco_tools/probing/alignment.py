"""Word → sub-token alignment: which model tokens carry each labelled word.

Labels belong to words (CoNLL-U syntactic words); models read sub-word tokens. The alignment is
made on *characters*, so it works for any fast tokenizer (WordPiece, byte-level BPE,
SentencePiece) without knowing its conventions:

1. The sentence's text is rebuilt from its surface tokens and spacing, giving each word a
   character span (words of a multi-word token share its span).
2. The text is tokenized with ``return_offsets_mapping=True``. Each model token's span is
   trimmed of whitespace (byte-level BPE puts the leading space into ``"ĠPresident"``); tokens
   with an empty span (``[CLS]``, ``[SEP]``, BOS, pure-space tokens) belong to no word.
3. A word's tokens are every token whose trimmed span overlaps the word's span. A token can
   serve two words when the tokenizer merges across a word boundary the treebank splits
   ("cannot" is one token, and the two words "can" + "not"): both words get that token.
4. A word's vector is its ``first`` token's, its ``last`` token's, or the ``mean`` over its
   tokens. ``first`` is the usual choice for masked-LM encoders; for causal LMs ``last`` is the
   only token that has seen the whole word (``auto`` picks these). A word that no token
   overlaps (characters a tokenizer drops) is not probed; the count is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ecco_engine.errors import InvalidRequest

from .conllu import Sentence

SUBTOKEN_CHOICES = ("first", "last", "mean")


@dataclass(frozen=True)
class AlignedSentence:
    """One sentence's model input and, for each labelled word, the token positions that carry it."""

    input_ids: tuple[int, ...]
    word_tokens: tuple[tuple[int, ...], ...]  # per word of the sentence; () if no token overlaps it

    @property
    def kept_words(self) -> tuple[int, ...]:
        """Indices of the words that have at least one token."""
        return tuple(i for i, tokens in enumerate(self.word_tokens) if tokens)


def word_spans(sentence: Sentence) -> list[tuple[int, int]]:
    """Each word's ``(start, end)`` character span in ``sentence.text``."""
    spans, _ = sentence.surface_spans()
    return [spans[i] for i in sentence.word_to_surface]


def trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` without leading / trailing whitespace; ``start == end`` if nothing is left."""
    end = min(end, len(text))
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def align_offsets(
    text: str, spans: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]]
) -> tuple[tuple[int, ...], ...]:
    """Per word span, the indices of the tokens (by their character ``offsets``) that overlap it."""
    token_spans = [trimmed(text, int(s), int(e)) for s, e in offsets]
    out = []
    for ws, we in spans:
        out.append(tuple(t for t, (ts, te) in enumerate(token_spans) if ts < te and ts < we and te > ws))
    return tuple(out)


def align_sentence(sentence: Sentence, tokenizer, *, max_tokens: int = 512) -> AlignedSentence:
    """Tokenize ``sentence.text`` with a fast tokenizer and align its words (special tokens included)."""
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidRequest("tokenizer", "word alignment needs a fast tokenizer (offset mappings)")
    text = sentence.text
    encoding = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
    ids, offsets = list(encoding["input_ids"]), list(encoding["offset_mapping"])
    if len(ids) > max_tokens:
        raise InvalidRequest("sentence", f"sentence {sentence.sent_id} has {len(ids)} tokens, more than {max_tokens}")
    return AlignedSentence(tuple(ids), align_offsets(text, word_spans(sentence), offsets))


def pick_subtoken(mode: str, causal: bool) -> str:
    """``auto`` → ``last`` for causal LMs, ``first`` for encoders; else ``mode`` itself (validated)."""
    if mode == "auto":
        return "last" if causal else "first"
    if mode not in SUBTOKEN_CHOICES:
        raise InvalidRequest("subtoken", f"must be auto, first, last or mean, got {mode!r}")
    return mode


def word_vectors(token_states: np.ndarray, word_tokens: Sequence[Sequence[int]], mode: str) -> np.ndarray:
    """``(n_words, width)`` from one sentence's ``token_states`` ``(seq, width)``; every word needs a token."""
    if mode == "first":
        return token_states[[tokens[0] for tokens in word_tokens]]
    if mode == "last":
        return token_states[[tokens[-1] for tokens in word_tokens]]
    if mode == "mean":
        return np.stack([token_states[list(tokens)].mean(axis=0) for tokens in word_tokens])
    raise InvalidRequest("subtoken", f"must be first, last or mean, got {mode!r}")
