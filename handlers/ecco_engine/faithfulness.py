"""Faithfulness of an attribution: does the model's prediction depend on the sources it ranks first?

For every explained token (at position ``t``, sources ``0 .. t-1``) the sources are ranked by score
(largest first, ties by position) and a few perturbed copies of its prefix are scored: the top
``k`` removed (comprehensiveness and the AOPC curve) or everything but the top ``k`` removed
(sufficiency); definitions in ``Faithfulness``. Forward passes only: every perturbed prefix is one
row of ``TargetForward.per_row`` (probability of the explained token), identical prefixes are scored
once, and rows are batched by length so that rows x padded length <= the token budget. Rows are
right-padded: a causal model's prediction at a row's last real position never sees the padding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .attribution import accumulation_dtype, autocast
from .errors import InvalidRequest
from .faithfulness_types import Faithfulness, FaithfulnessParams, Perturbation
from .layout import ModelLayout
from .targets import TargetForward
from .types import Precision, TargetKind

#: ``per_row`` signature: embeddings (rows, n, hidden), read positions, token ids, contrast ids -> (rows,)
RowForward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Plan:
    """The perturbed prefixes of one explained token, as masks of kept sources (True: kept)."""

    full: bytes
    comprehensive: tuple[bytes, ...]  # one per fraction
    sufficient: tuple[bytes, ...]  # one per fraction
    curve: tuple[bytes, ...]  # top 1 .. top K removed


def _plan(scores: np.ndarray, params: FaithfulnessParams) -> _Plan:
    """Masks for one token's ``scores`` ``(n_sources,)``."""
    n = scores.shape[0]
    order = np.lexsort((np.arange(n), -scores.astype(np.float64)))  # largest first, ties by position
    most = n - 1 if params.perturbation is Perturbation.DELETION else n  # deletion keeps one token

    def removed(k: int) -> bytes:
        kept = np.ones(n, dtype=bool)
        kept[order[:k]] = False
        return kept.tobytes()

    def only(k: int) -> bytes:
        kept = np.zeros(n, dtype=bool)
        kept[order[:k]] = True
        return kept.tobytes()

    counts = [math.ceil(f * n - 1e-9) for f in params.fractions]
    return _Plan(
        full=np.ones(n, dtype=bool).tobytes(),
        comprehensive=tuple(removed(min(k, most)) for k in counts),
        sufficient=tuple(only(k) for k in counts),
        curve=tuple(removed(k) for k in range(1, min(params.aopc_steps, most) + 1)),
    )


def _row(embeddings: torch.Tensor, kept: np.ndarray, replacement: torch.Tensor | None) -> torch.Tensor:
    """The perturbed prefix ``(length, hidden)``: deleted sources left out, or replaced."""
    mask = torch.from_numpy(kept.copy()).to(embeddings.device)
    if replacement is None:
        return embeddings[mask]
    return torch.where(mask.view(-1, 1), embeddings, replacement.view(1, -1))


def score_prefixes(
    forward: RowForward,
    embeddings: torch.Tensor,
    replacement: torch.Tensor | None,
    rows: Sequence[tuple[int, bytes]],
    token_ids: Sequence[int],
    token_budget: int,
) -> tuple[dict[tuple[int, bytes], float], int]:
    """Score every ``(target index, kept mask)`` row: ``({row: probability}, forward token-rows)``.

    ``embeddings`` ``(n, hidden)`` are the whole sequence's; a mask of length ``m`` takes its first
    ``m``; ``replacement`` ``(hidden,)`` replaces the unkept sources, or None to delete them."""
    built = [(key, _row(embeddings[: len(key[1])], np.frombuffer(key[1], dtype=bool), replacement)) for key in rows]
    built.sort(key=lambda item: item[1].shape[0])
    out: dict[tuple[int, bytes], float] = {}
    cost = 0
    start = 0
    while start < len(built):
        longest = built[start][1].shape[0]
        stop = start + 1
        while stop < len(built) and (stop - start + 1) * built[stop][1].shape[0] <= max(token_budget, longest):
            stop += 1
        chunk = built[start:stop]
        length = chunk[-1][1].shape[0]
        batch = torch.stack(
            [torch.cat([row, row[:1].expand(length - row.shape[0], -1)]) for _, row in chunk]
        )  # (rows, length, hidden), right-padded with finite values
        device = embeddings.device
        read = torch.tensor([row.shape[0] - 1 for _, row in chunk], device=device)
        ids = torch.tensor([token_ids[key[0]] for key, _ in chunk], device=device)
        probabilities = forward(batch, read, ids, torch.zeros_like(ids)).double().cpu().numpy()
        out.update({key: float(p) for (key, _), p in zip(chunk, probabilities, strict=True)})
        cost += len(chunk) * length
        start = stop
    return out, cost


def faithfulness_of_scores(
    forward: RowForward,
    embeddings: torch.Tensor,
    target_positions: Sequence[int],
    token_ids: Sequence[int],
    scores: np.ndarray,
    params: FaithfulnessParams,
    *,
    replacement: torch.Tensor | None = None,
    replacement_token_id: int | None = None,
    token_budget: int = 1024,
) -> Faithfulness:
    """The metrics of ``scores`` ``(n_targets, n_sources)`` for the targets at ``target_positions`` (their
    ids ``token_ids``), given ``forward`` (probability of a token, ``TargetForward.per_row``'s signature)
    and the sequence's ``embeddings`` ``(n, hidden)``."""
    if (params.perturbation is Perturbation.REPLACEMENT) != (replacement is not None):
        raise ValueError("a replacement embedding is needed exactly for perturbation 'replacement'")
    plans = [_plan(scores[i, :end], params) for i, end in enumerate(target_positions)]
    wanted = {
        (i, mask): None for i, p in enumerate(plans) for mask in (p.full, *p.comprehensive, *p.sufficient, *p.curve)
    }
    probability, cost = score_prefixes(forward, embeddings, replacement, list(wanted), token_ids, token_budget)

    def drop(i: int, mask: bytes) -> float:
        return probability[(i, plans[i].full)] - probability[(i, mask)]

    comprehensiveness = np.array([[drop(i, m) for m in p.comprehensive] for i, p in enumerate(plans)])
    sufficiency = np.array([[drop(i, m) for m in p.sufficient] for i, p in enumerate(plans)])
    aopc = np.array([sum(drop(i, m) for m in p.curve) / (len(p.curve) + 1) for i, p in enumerate(plans)])
    n_fractions = len(params.fractions)
    return Faithfulness(
        perturbation=params.perturbation,
        replacement_token=params.replacement,
        replacement_token_id=replacement_token_id,
        fractions=params.fractions,
        aopc_steps=params.aopc_steps,
        comprehensiveness=comprehensiveness.reshape(-1, n_fractions).astype(np.float32),
        sufficiency=sufficiency.reshape(-1, n_fractions).astype(np.float32),
        aopc=aopc.astype(np.float32),
        mean_comprehensiveness=float(comprehensiveness.mean()),
        mean_sufficiency=float(sufficiency.mean()),
        mean_aopc=float(aopc.mean()),
        forward_token_rows=cost,
    )


def replacement_id(tokenizer, params: FaithfulnessParams) -> int | None:
    """The id of the special token a REPLACEMENT uses (None for DELETION)."""
    name = params.replacement
    if name is None:
        return None
    token_id = getattr(tokenizer, f"{name}_token_id", None)
    if token_id is None:
        raise InvalidRequest(
            "faithfulness.replacement_token", f"the tokenizer has no {name} token; choose another replacement"
        )
    return int(token_id)


def measure_faithfulness(
    model: nn.Module,
    layout: ModelLayout,
    tokenizer,
    input_ids: Sequence[int],
    target_positions: Sequence[int],
    scores: np.ndarray,
    params: FaithfulnessParams,
    *,
    token_budget: int,
    precision: Precision = Precision.FLOAT32,
) -> Faithfulness:
    """The metrics of an attribution's ``scores`` ``(n_targets, n_sources)`` of the tokens of ``input_ids``
    at ``target_positions``, measured on ``model`` in ``precision`` (forwards only)."""
    device = layout.embedding.weight.device
    n_sources = max(target_positions)
    token_id = replacement_id(tokenizer, params)
    with torch.no_grad():
        embeddings = layout.embedding(torch.tensor([list(input_ids[:n_sources])], device=device))[0]
        replacement = layout.embedding.weight[token_id].detach() if token_id is not None else None
    forward = TargetForward(model, layout.unembedding, TargetKind.PROBABILITY)
    with forward.attach(), torch.no_grad(), autocast(precision, device):
        result = faithfulness_of_scores(
            lambda *args: forward.per_row(*args).to(accumulation_dtype(embeddings.dtype)),
            embeddings,
            target_positions,
            [int(input_ids[p]) for p in target_positions],
            np.asarray(scores, dtype=np.float64),
            params,
            replacement=replacement,
            replacement_token_id=token_id,
            token_budget=token_budget,
        )
    return result


def faithfulness_cost(params: FaithfulnessParams, length: int, n_targets: int) -> int:
    """An upper bound on the forward token-rows of ``n_targets`` targets over at most ``length`` sources."""
    rows_per_target = 1 + 2 * len(params.fractions) + params.aopc_steps
    return n_targets * rows_per_target * length
