"""Token ids to text pieces with character offsets, and text to token ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidRequest
from .input_size import check_one_token_text


@dataclass(frozen=True)
class TokenAlternative:
    """A candidate token at one position: its id, its text decoded alone, its log-probability."""

    id: int
    text: str
    logprob: float


@dataclass(frozen=True)
class Token:
    """One token of a sequence: its id and text piece; ``start``/``end`` are character offsets into
    the sequence's text (``GenerationResult.text``, the pieces joined).

    Generated or replayed tokens also carry ``logprob``, the natural-log softmax probability the model
    gave them (before temperature / top-k / top-p), and, on request, the ``top_tokens`` at their
    position, most likely first."""

    id: int
    text: str
    start: int
    end: int
    logprob: float | None = None
    top_tokens: tuple[TokenAlternative, ...] = ()


class IncrementalPieces:
    """Text pieces with character offsets, one token at a time (for streaming).

    A token's piece is ``decode(context + [id])`` minus ``decode(context)``, where ``context`` is
    up to ``window`` preceding ids, so that byte-level and SentencePiece spacing come out as the
    tokenizer renders them in context. A token that ends inside a multi-byte character gets an
    empty piece and the token that completes the character carries it.
    """

    def __init__(self, tokenizer, window: int = 8) -> None:
        self.tokenizer = tokenizer
        self.window = window
        self.ids: list[int] = []
        self.offset = 0
        self._pending: list[int] = []  # ids whose text has not been emitted yet

    def push(self, token_id: int, *, last: bool = False) -> Token:
        """The next token's piece; ``last`` flushes an incomplete character instead of waiting."""
        end = len(self.ids) - len(self._pending)
        context = self.ids[max(0, end - self.window) : end]
        self.ids.append(int(token_id))
        self._pending.append(int(token_id))
        before = self.tokenizer.decode(context, skip_special_tokens=False)
        after = self.tokenizer.decode(context + self._pending, skip_special_tokens=False)
        if after.endswith("\ufffd") and not last:
            return Token(id=int(token_id), text="", start=self.offset, end=self.offset)
        if after.startswith(before):
            piece = after[len(before) :]
        else:
            piece = self.tokenizer.decode(self._pending, skip_special_tokens=False)
        token = Token(id=int(token_id), text=piece, start=self.offset, end=self.offset + len(piece))
        self.offset += len(piece)
        self._pending = []
        return token


def token_pieces(tokenizer, ids: Sequence[int], window: int = 8) -> tuple[Token, ...]:
    """Split the decoded text of ``ids`` into one piece per token, with offsets into that text
    (see ``IncrementalPieces``)."""
    pieces = IncrementalPieces(tokenizer, window)
    return tuple(pieces.push(int(t), last=i + 1 == len(ids)) for i, t in enumerate(ids))


def single_token_id(tokenizer, value: str | int, field: str) -> int:
    """An id from an int, or from a text that is exactly one token (no special tokens added)."""
    vocab_size = len(tokenizer)
    if isinstance(value, bool):
        raise InvalidRequest(field, f"must be a token id or a one-token string, got {value!r}")
    if isinstance(value, int):
        if not 0 <= value < vocab_size:
            raise InvalidRequest(field, f"token id must be in 0..{vocab_size - 1}, got {value}")
        return value
    check_one_token_text(value, field)
    ids = tokenizer.encode(value, add_special_tokens=False)
    if len(ids) != 1:
        raise InvalidRequest(field, f"{value!r} is {len(ids)} tokens ({ids}); give exactly one token or its id")
    return int(ids[0])
