"""The scalar each attribution explains, computed only where a target is.

``TargetForward`` runs the model on input embeddings ``(rows, n, hidden)`` and returns target scores.
A forward pre-hook on the unembedding gathers the target positions before the vocabulary projection,
so the (expensive) unembedding runs once per target, not once per position, and any logit
post-processing the model applies after it (soft-capping, scaling) still applies. Two layouts:

- ``per_row``: row ``r`` has its own position and token: ``(rows,)`` scores (one target per row);
- ``shared``: every row is scored at the same ``T`` positions: ``(rows, T)`` scores. With
  ``split=True`` the gathered hidden states are cut from the graph at the unembedding: the scores
  hang off a leaf ``head_input`` ``(rows, T, hidden)`` and ``hidden`` ``(rows, T, hidden)`` keeps the
  graph back to the embeddings, so each target's backward through the decoder starts from its own
  position's hidden state (``attribution.py``) and the vocabulary projection is differentiated once.
- ``segments``: ``shared(..., split=True)`` cut along the sequence: one forward per segment of positions,
  each attending to the earlier segments' keys and values through the model's own KV cache, which keeps
  its graph. The values are those of one forward, but a backward from a target in segment ``k`` never
  runs through a later segment: a target's backward costs its own prefix, not the longest one.

Scores are computed in the model's dtype promoted to at least float32 (a float64 model stays float64).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .generation import cache_kwarg, output_cache
from .types import TargetKind


def target_function(kind: TargetKind, logits: torch.Tensor, token_ids: torch.Tensor, contrast_ids: torch.Tensor):
    """``(..., vocab)`` logits -> ``(...)`` target scores; ``token_ids`` / ``contrast_ids`` broadcast
    against ``logits.shape[:-1]``."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    token_ids = token_ids.expand(logits.shape[:-1])
    chosen = logits.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)
    if kind is TargetKind.LOGIT:
        return chosen
    if kind is TargetKind.CONTRASTIVE:  # log p(a) - log p(b): the log-partition cancels
        other = logits.gather(-1, contrast_ids.expand(logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        return chosen - other
    log_probs = chosen - torch.logsumexp(logits, dim=-1)
    return log_probs if kind is TargetKind.LOG_PROBABILITY else log_probs.exp()


@dataclass(frozen=True)
class SplitScores:
    """``TargetForward.shared(..., split=True)``: see the module doc."""

    scores: torch.Tensor  # (rows, T)
    head_input: torch.Tensor  # (rows, T, hidden) leaf the scores depend on
    hidden: torch.Tensor  # (rows, T, hidden) the same values, attached to the decoder's graph


class TargetForward:
    """Target scores of input embeddings, the unembedding gathered at the target positions.

    Use inside ``attach()`` (it installs the gathering hook for the block)."""

    def __init__(self, model: nn.Module, unembedding: nn.Module, kind: TargetKind) -> None:
        self.model = model
        self.unembedding = unembedding
        self.kind = kind
        self._positions: torch.Tensor | None = None
        self._per_row = True
        self._split = False
        self._hidden: torch.Tensor | None = None
        self._leaf: torch.Tensor | None = None

    @contextmanager
    def attach(self) -> Iterator[TargetForward]:
        """Install the gathering pre-hook on the unembedding for the duration of the block."""

        def gather(_module: nn.Module, args: tuple) -> tuple:
            hidden = args[0]  # (rows, n, hidden)
            if self._positions is None or hidden.dim() != 3:
                return args
            if self._per_row:
                index = self._positions.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
                gathered = hidden.gather(1, index)  # (rows, 1, hidden)
            else:
                gathered = hidden[:, self._positions, :]  # (rows, T, hidden)
            if self._split:
                self._hidden = gathered
                self._leaf = gathered.detach().requires_grad_()
                gathered = self._leaf
            return (gathered, *args[1:])

        handle = self.unembedding.register_forward_pre_hook(gather)
        try:
            yield self
        finally:
            handle.remove()
            self._positions = self._hidden = self._leaf = None

    def _forward(self, embeddings: torch.Tensor, positions: torch.Tensor, *, per_row: bool, split: bool, **cache):
        """The model's output on ``embeddings``, the hook gathering ``positions``; ``cache``: the KV-cache
        arguments of a segment (none: no cache)."""
        self._positions, self._per_row, self._split = positions, per_row, split
        try:
            return self.model(inputs_embeds=embeddings, **(cache or {"use_cache": False}))
        finally:
            self._positions = None

    def _split_scores(self, scores: torch.Tensor) -> SplitScores:
        """``scores`` with the head input and hidden states the hook kept for them."""
        assert self._hidden is not None and self._leaf is not None  # set by the hook
        result = SplitScores(scores=scores, head_input=self._leaf, hidden=self._hidden)
        self._hidden = self._leaf = None
        return result

    def per_row(self, embeddings, positions, token_ids, contrast_ids) -> torch.Tensor:
        """``(rows, n, hidden)`` -> ``(rows,)``: row ``r`` scored at ``positions[r]`` for ``token_ids[r]``
        (Captum's forward-function signature)."""
        logits = self._forward(embeddings, positions, per_row=True, split=False).logits[:, 0, :]
        return target_function(self.kind, logits, token_ids, contrast_ids)

    def shared(self, embeddings, positions, token_ids, contrast_ids, *, split: bool = False):
        """``(rows, n, hidden)`` -> ``(rows, T)`` scores at ``positions`` ``(T,)`` for ``token_ids`` ``(T,)``;
        a ``SplitScores`` with ``split=True``."""
        logits = self._forward(embeddings, positions, per_row=False, split=split).logits  # (rows, T, vocab)
        scores = target_function(self.kind, logits, token_ids, contrast_ids)
        return self._split_scores(scores) if split else scores

    def segments(self, embeddings, positions, token_ids, contrast_ids, bounds) -> list[SplitScores]:
        """``shared(..., split=True)`` cut into segments: ``bounds`` ``[(first, last), ...]`` index runs of the
        (sorted) ``positions``; segment ``k`` covers the sequence up to and including ``positions[last_k]``
        and scores targets ``first_k .. last_k``. One segment is exactly ``shared``."""
        if len(bounds) == 1:
            return [self.shared(embeddings, positions, token_ids, contrast_ids, split=True)]
        results, cache, start = [], None, 0
        name = cache_kwarg(self.model)
        for first, last in bounds:
            end = int(positions[last]) + 1
            chosen = slice(first, last + 1)
            earlier: dict[str, object] = {name: cache} if cache is not None else {}
            output = self._forward(
                embeddings[:, start:end], positions[chosen] - start, per_row=False, split=True, use_cache=True,
                **earlier,
            )  # fmt: skip
            cache = output_cache(output)
            results.append(
                self._split_scores(target_function(self.kind, output.logits, token_ids[chosen], contrast_ids[chosen]))
            )
            start = end
        return results
