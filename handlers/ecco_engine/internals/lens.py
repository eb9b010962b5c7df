"""Logit lens: read next-token distributions off every depth of the residual stream.

Each depth's residual (captured by hooks, *before* the final norm — unlike transformers'
``hidden_states[-1]``, which already has the final norm applied) goes through the model's own
head: final norm -> any projection between norm and unembedding (OPT's ``project_out``) ->
unembedding -> the logit post-processing the model applies after it (Gemma-2/3 soft-capping,
Cohere's ``logit_scale``, Granite's ``logits_scaling``). So the last depth reproduces the model's
output exactly, and ``inspect_sequence`` measures that on every request (``output_deviation``).
Ecco skips the final norm; we apply it at every depth.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..layout import ModelLayout, get_module

#: modules some families apply between the final norm and the unembedding (relative to the model)
_POST_NORM_PROJECTIONS = ("model.decoder.project_out",)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _scale(factor: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda logits: logits * factor


def _softcap(cap: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda logits: torch.tanh(logits / cap) * cap


def _post_processing(model: nn.Module) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The logit post-processing known families apply after the unembedding, in order."""
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
    config = getattr(model, "config", None)
    scale = _number(getattr(model, "logit_scale", None))  # Cohere: logits * logit_scale
    if scale is not None:
        steps.append(_scale(scale))
    divisor = _number(getattr(config, "logits_scaling", None))  # Granite: logits / logits_scaling
    if divisor is not None and divisor not in (0.0, 1.0):
        steps.append(_scale(1.0 / divisor))
    cap = _number(getattr(config, "final_logit_softcapping", None))  # Gemma-2/3: cap * tanh(x / cap)
    if cap is not None and cap > 0:
        steps.append(_softcap(cap))
    return steps


def vocab_size(layout: ModelLayout) -> int:
    """Rows of the unembedding: the size of the lens's distributions."""
    weight = getattr(layout.unembedding, "weight", None)
    if isinstance(weight, torch.Tensor):
        return int(weight.shape[0])
    return int(getattr(layout.unembedding, "out_features"))  # noqa: B009


class LensHead:
    """``(rows, hidden)`` residuals -> ``(rows, vocab)`` float32 logits, as the model's own head would."""

    def __init__(self, model: nn.Module, layout: ModelLayout) -> None:
        self.layout = layout
        self.projections = [m for p in _POST_NORM_PROJECTIONS if (m := get_module(model, p)) is not None]
        self.post = _post_processing(model)
        weight = next(layout.unembedding.parameters(), None)
        self.dtype = weight.dtype if weight is not None else torch.float32
        self.device = weight.device if weight is not None else torch.device("cpu")

    def __call__(self, residual: torch.Tensor) -> torch.Tensor:
        hidden = self.layout.final_norm(residual.to(device=self.device, dtype=self.dtype).unsqueeze(0))
        for projection in self.projections:
            hidden = projection(hidden)
        logits = self.layout.unembedding(hidden)
        for step in self.post:
            logits = step(logits)
        return logits[0].float()


def ranks_of(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Rank (0 = top) of ``token_ids[r]`` in row ``r`` of ``logits`` ``(rows, vocab)``: how many
    tokens have a strictly larger logit. ``token_ids``: ``(rows,)`` or ``(rows, k)``."""
    ids = token_ids if token_ids.dim() == 2 else token_ids[:, None]
    chosen = logits.gather(1, ids)  # (rows, k)
    ranks = (logits[:, None, :] > chosen[:, :, None]).sum(dim=-1)
    return ranks if token_ids.dim() == 2 else ranks[:, 0]
