"""Refuse text that cannot fit the server's token limit before the tokenizer sees it.

Tokenizing is linear in the text but slow (a 50 MB prompt took ~100 s and 1.7 GB of worker memory
before its token count was refused). One token stands for at most ``MAX_CHARS_PER_TOKEN`` characters
(generous: the longest token of SmolLM2's vocabulary is 81 byte-level characters),
so a text of more than ``max_input_tokens * MAX_CHARS_PER_TOKEN`` characters is more than
``max_input_tokens`` tokens, and is refused at once (``len`` of a ``str`` costs nothing). Texts within
that bound are tokenized and their exact token count is checked against the limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import InvalidRequest, LimitExceeded

if TYPE_CHECKING:
    from .types import ExplainRequest

#: the most characters one token of any supported tokenizer stands for (a generous bound)
MAX_CHARS_PER_TOKEN = 128


def max_input_chars(max_input_tokens: int) -> int:
    """The most characters of input text that can still be ``max_input_tokens`` tokens or fewer."""
    return max_input_tokens * MAX_CHARS_PER_TOKEN


def check_input_size(request: ExplainRequest, max_input_tokens: int) -> None:
    """Raise ``LimitExceeded`` when the request's text (prompt or chat contents, plus continuation) is
    longer than ``max_input_chars(max_input_tokens)`` characters; it names the longest part sent."""
    sizes = {
        "prompt": len(request.prompt or ""),
        "messages": sum(len(m.content) for m in request.messages),
        "continuation": len(request.continuation or ""),
    }
    total, limit = sum(sizes.values()), max_input_chars(max_input_tokens)
    if total > limit:
        field = max(sizes, key=lambda name: sizes[name])
        raise LimitExceeded(
            field,
            f"input is {total} characters; at most {limit} can fit the limit of {max_input_tokens} tokens "
            f"(one token stands for at most {MAX_CHARS_PER_TOKEN} characters)",
        )


def check_one_token_text(text: str, field: str) -> None:
    """Raise ``InvalidRequest`` on ``field`` when ``text`` is too long to be a single token."""
    if len(text) > MAX_CHARS_PER_TOKEN:
        raise InvalidRequest(
            field, f"is {len(text)} characters: longer than any single token ({MAX_CHARS_PER_TOKEN} at most)"
        )
