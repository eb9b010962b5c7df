"""What a request selects from its generation: the tokens to explain (with a contrast token each, for
a contrastive target) and the groups its ``grouping`` rolls the scores up to."""

from __future__ import annotations

from .attribution import TargetSet
from .errors import InvalidRequest, LimitExceeded
from .grouping import GroupedView, TokenGroup, group_scores, group_tokens, special_ids
from .tokens import single_token_id
from .types import Aggregation, Attribution, ExplainRequest, GenerationResult


def select_targets(tokenizer, request: ExplainRequest, generation: GenerationResult, max_targets: int) -> TargetSet:
    """The generated tokens to explain (``attribution.positions`` index generated tokens)."""
    n_generated = len(generation.tokens) - generation.prompt_length
    chosen = request.attribution.positions
    indices = sorted(set(chosen)) if chosen is not None else list(range(n_generated))
    bad = [i for i in indices if i >= n_generated]
    if bad:
        raise InvalidRequest(
            "attribution.positions",
            f"index {bad[0]} is out of range: {n_generated} tokens were generated (0..{n_generated - 1})",
        )
    if len(indices) > max_targets:
        raise LimitExceeded("attribution.positions", f"at most {max_targets} tokens per request, got {len(indices)}")
    positions = tuple(generation.prompt_length + i for i in indices)
    return TargetSet(
        positions=positions,
        token_ids=tuple(generation.tokens[p].id for p in positions),
        contrast_ids=contrast_ids(tokenizer, request, indices),
    )


def contrast_ids(tokenizer, request: ExplainRequest, indices: list[int]) -> tuple[int, ...] | None:
    """The contrast token id of each explained token (``indices``: generated-token indices, ascending),
    or None without a contrastive target. ``contrast_tokens`` pair with ``positions`` as given (else with
    the generated tokens in order)."""
    att = request.attribution
    if att.contrast_token is not None:
        one = single_token_id(tokenizer, att.contrast_token, "attribution.contrast_token")
        return (one,) * len(indices)
    if att.contrast_tokens is None:
        return None
    given = att.contrast_tokens
    order = list(att.positions) if att.positions is not None else indices
    if len(set(order)) != len(order):
        raise InvalidRequest("attribution.positions", "must not repeat a position when contrast_tokens are given")
    if len(given) != len(indices):
        raise InvalidRequest(
            "attribution.contrast_tokens",
            f"gives {len(given)} tokens for {len(indices)} explained tokens; give one per explained token",
        )
    by_index = {
        index: single_token_id(tokenizer, token, f"attribution.contrast_tokens[{k}]")
        for k, (index, token) in enumerate(zip(order, given, strict=True))
    }
    return tuple(by_index[i] for i in indices)


def request_groups(tokenizer, request: ExplainRequest, generation: GenerationResult) -> tuple[TokenGroup, ...]:
    """The groups of ``request.grouping`` (() without one); computed before any attribution work, so a
    span past the text fails early."""
    if request.grouping.unit is None:
        return ()
    messages = [(m.role, m.content) for m in request.messages] if request.messages else None
    return group_tokens(generation.tokens, generation.prompt_length, request.grouping, special_ids(tokenizer), messages)


def grouped_view(
    request: ExplainRequest, groups: tuple[TokenGroup, ...], attributions: list[Attribution]
) -> GroupedView | None:
    """Every attribution rolled up to ``groups`` (None without ``request.grouping``)."""
    unit = request.grouping.unit
    if unit is None:
        return None
    grouped = tuple(
        group_scores(
            a.method, a.scores, a.target_positions, groups, renormalize=a.aggregation is Aggregation.L2_NORMALIZED
        )
        for a in attributions
    )
    return GroupedView(unit=unit, groups=groups, attributions=grouped)
