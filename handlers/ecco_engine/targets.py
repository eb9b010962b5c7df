"""The scalar each attribution explains, computed only where a target is.

``TargetForward`` maps input embeddings ``(rows, n, hidden)`` to one score per row: the target
function of the logits that row's position predicts. A forward pre-hook on the unembedding
gathers each row's single position before the vocabulary projection, so the (expensive)
unembedding runs once per row, not once per position, and any logit post-processing the model
applies after it (soft-capping, scaling) still applies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .types import TargetKind


def target_function(kind: TargetKind, logits: torch.Tensor, token_ids: torch.Tensor, contrast_ids: torch.Tensor):
    """``(rows, vocab)`` logits -> ``(rows,)`` target scores for ``token_ids``."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    if kind is TargetKind.LOGIT:
        return logits[rows, token_ids]
    if kind is TargetKind.CONTRASTIVE:  # log p(a) - log p(b): the log-partition cancels
        return logits[rows, token_ids] - logits[rows, contrast_ids]
    log_probs = torch.log_softmax(logits, dim=-1)[rows, token_ids]
    return log_probs if kind is TargetKind.LOG_PROBABILITY else log_probs.exp()


class TargetForward:
    """Callable for Captum: ``(embeddings, positions, token_ids, contrast_ids) -> (rows,)``.

    ``positions[r]`` is the position whose output predicts ``token_ids[r]`` (target position - 1).
    Use inside ``gathered_unembedding`` (see ``attach``).
    """

    def __init__(self, model: nn.Module, unembedding: nn.Module, kind: TargetKind) -> None:
        self.model = model
        self.unembedding = unembedding
        self.kind = kind
        self._positions: torch.Tensor | None = None

    @contextmanager
    def attach(self) -> Iterator[TargetForward]:
        """Install the gathering pre-hook on the unembedding for the duration of the block."""

        def gather(_module: nn.Module, args: tuple) -> tuple:
            hidden = args[0]  # (rows, n, hidden)
            if self._positions is None or hidden.dim() != 3:
                return args
            index = self._positions.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
            return (hidden.gather(1, index), *args[1:])

        handle = self.unembedding.register_forward_pre_hook(gather)
        try:
            yield self
        finally:
            handle.remove()
            self._positions = None

    def __call__(self, embeddings, positions, token_ids, contrast_ids) -> torch.Tensor:
        self._positions = positions
        logits = self.model(inputs_embeds=embeddings, use_cache=False).logits[:, 0, :]
        return target_function(self.kind, logits.float(), token_ids, contrast_ids)
