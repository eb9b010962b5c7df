"""Exact replay of a logged response and per-token log-probabilities.

A logged response is best replayed by its token ids (``ExplainRequest.continuation_ids``): a text
re-tokenized alone can give other ids than the model produced (``roundtrip_warning`` says when it
would). Every generated or replayed token carries the log-probability the model gave it; a replayed
continuation gets them from one teacher-forced forward over the sequence, with the unembedding kept
only at the continuation's positions (``logits_to_keep``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from .errors import InvalidRequest
from .generation import Choice, choice
from .tokens import Token, TokenAlternative


def check_ids(tokenizer, ids: Sequence[int], field: str) -> list[int]:
    """``ids`` as ints, each a token id of the vocabulary (else ``InvalidRequest`` on ``field``)."""
    vocab_size = len(tokenizer)
    bad = [i for i in ids if not 0 <= int(i) < vocab_size]
    if bad:
        raise InvalidRequest(field, f"token id {bad[0]} is not in 0..{vocab_size - 1}")
    return [int(i) for i in ids]


def roundtrip_warning(tokenizer, ids: Sequence[int], field: str) -> str | None:
    """A warning naming ``field`` when ``ids`` decoded and re-encoded (as a ``continuation`` text would
    be) give other ids; None when the text replays them exactly."""
    text = tokenizer.decode(list(ids), skip_special_tokens=False)
    again = [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]
    if again == list(ids):
        return None
    first = next((k for k, (a, b) in enumerate(zip(again, ids, strict=False)) if a != b), min(len(again), len(ids)))
    return (
        f"{field}: the text of these {len(ids)} tokens re-tokenizes to {len(again)} other ids (first difference at"
        f" token {first}); replaying the text would explain other tokens, so replay by ids (continuation_ids)"
    )


def teacher_forced_choices(model: torch.nn.Module, ids: Sequence[int], start: int, top_n: int) -> tuple[Choice, ...]:
    """The ``Choice`` of each token ``ids[start:]`` (``start >= 1``) given the tokens before it: one
    forward over ``ids`` without autograd, the vocabulary projection only where it is needed."""
    n = len(ids) - start
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([list(ids)], device=device), use_cache=False, logits_to_keep=n + 1).logits
        logits = logits[0, -(n + 1) : -1]  # row i predicts ids[start + i]
        return tuple(choice(logits[i], int(ids[start + i]), top_n) for i in range(n))


def with_choices(tokenizer, tokens: Sequence[Token], start: int, choices: Sequence[Choice]) -> tuple[Token, ...]:
    """``tokens`` with ``tokens[start + i]`` carrying ``choices[i]`` (alternatives' texts decoded alone)."""
    out = list(tokens)
    for i, c in enumerate(choices):
        out[start + i] = with_choice(tokenizer, out[start + i], c)
    return tuple(out)


def with_choice(tokenizer, token: Token, c: Choice) -> Token:
    """``token`` carrying its log-probability and alternatives."""
    top = tuple(
        TokenAlternative(id=i, text=tokenizer.decode([i], skip_special_tokens=False), logprob=lp)
        for i, lp in zip(c.top_ids, c.top_logprobs, strict=True)
    )
    return replace(token, logprob=c.logprob, top_tokens=top)
