"""Token ids to text pieces with character offsets, and text to token ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import InvalidRequest

if TYPE_CHECKING:
    from .types import Token


def token_pieces(tokenizer, ids: Sequence[int], window: int = 8) -> tuple[Token, ...]:
    """Split the decoded text of ``ids`` into one piece per token, with offsets into that text.

    A token's piece is ``decode(context + [id])`` minus ``decode(context)``, where ``context`` is
    up to ``window`` preceding ids, so that byte-level and SentencePiece spacing come out as the
    tokenizer renders them in context. A token that ends inside a multi-byte character gets an
    empty piece and the token that completes the character carries it.
    """
    from .types import Token  # local: ecco_engine.types imports the internals package, which imports this module

    tokens: list[Token] = []
    offset = 0
    pending: list[int] = []  # ids whose text has not been emitted yet (incomplete characters)
    for i, token_id in enumerate(ids):
        context = [int(t) for t in ids[max(0, i - len(pending) - window) : i - len(pending)]]
        pending.append(int(token_id))
        before = tokenizer.decode(context, skip_special_tokens=False)
        after = tokenizer.decode(context + pending, skip_special_tokens=False)
        if after.endswith("\ufffd") and i + 1 < len(ids):
            tokens.append(Token(id=int(token_id), text="", start=offset, end=offset))
            continue
        piece = after[len(before) :] if after.startswith(before) else tokenizer.decode(pending)
        tokens.append(Token(id=int(token_id), text=piece, start=offset, end=offset + len(piece)))
        offset += len(piece)
        pending = []
    return tuple(tokens)


def single_token_id(tokenizer, value: str | int, field: str) -> int:
    """An id from an int, or from a text that is exactly one token (no special tokens added)."""
    vocab_size = len(tokenizer)
    if isinstance(value, bool):
        raise InvalidRequest(field, f"must be a token id or a one-token string, got {value!r}")
    if isinstance(value, int):
        if not 0 <= value < vocab_size:
            raise InvalidRequest(field, f"token id must be in 0..{vocab_size - 1}, got {value}")
        return value
    ids = tokenizer.encode(value, add_special_tokens=False)
    if len(ids) != 1:
        raise InvalidRequest(field, f"{value!r} is {len(ids)} tokens ({ids}); give exactly one token or its id")
    return int(ids[0])
