"""Attention methods (``AttentionMethod``): scores read from the attention weights of one forward.

Attention weights exist only on the eager attention path (SDPA and flash kernels never form them), so
the forward runs inside ``eager_attention``, which switches the model's attention implementation and
restores it in ``finally``. Heads are averaged; the unembedding runs at the last position only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..errors import LimitExceeded, UnsupportedModel
from .base import AttentionMethod, register


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """The model on the eager attention path for the block; its own implementation restored after it."""
    hf: Any = model  # a Hugging Face PreTrainedModel
    previous = hf.config._attn_implementation
    if previous == "eager":
        yield
        return
    hf.set_attn_implementation("eager")
    try:
        yield
    finally:
        hf.set_attn_implementation(previous)


@contextmanager
def _last_position_only(unembedding: nn.Module) -> Iterator[None]:
    """The vocabulary projection at the last position only (the attention forward needs no logits)."""

    def crop(_module: nn.Module, args: tuple) -> tuple:
        return (args[0][:, -1:], *args[1:]) if args[0].dim() == 3 else args

    handle = unembedding.register_forward_pre_hook(crop)
    try:
        yield
    finally:
        handle.remove()


def attention_bytes(model: nn.Module, n_layers: int, length: int) -> int:
    """The float32 bytes of every layer's attention weights over ``length`` tokens."""
    heads = int(getattr(model.config, "num_attention_heads", 1) or 1)
    return n_layers * heads * length * length * 4


def attention_weights(
    model: nn.Module, unembedding: nn.Module, embeddings: torch.Tensor, n_layers: int, memory_bytes: int
) -> tuple[torch.Tensor, ...]:
    """Every layer's attention weights ``(heads, n, n)`` (float32) for ``embeddings`` ``(1, n, hidden)``."""
    need = attention_bytes(model, n_layers, embeddings.shape[1])
    if need > memory_bytes:
        raise LimitExceeded(
            "prompt",
            f"the attention weights of {embeddings.shape[1]} tokens take about {need / 2**20:.0f} MiB; the server's"
            f" memory budget (memory_budget_bytes) is {memory_bytes / 2**20:.0f} MiB",
        )
    with eager_attention(model), _last_position_only(unembedding), torch.no_grad():
        out = model(inputs_embeds=embeddings, output_attentions=True, use_cache=False)
    attentions = getattr(out, "attentions", None)
    if not attentions or any(a is None for a in attentions):
        raise UnsupportedModel(f"{type(model).__name__} returns no attention weights on its eager attention path")
    return tuple(a[0].float() for a in attentions)


@register
class LastLayerAttention(AttentionMethod):
    name = "attention_last_layer"
    description = "The last layer's attention weights from the predicting position, mean over heads (one forward)"

    def combine(self, attentions, queries):
        return attentions[-1].mean(dim=0)[queries]


@register
class AttentionRollout(AttentionMethod):
    name = "attention_rollout"
    description = (
        "Attention rollout (Abnar & Zuidema 2020): per layer the head-mean attention plus the residual"
        " (0.5 A + 0.5 I, rows renormalized), multiplied through the layers (one forward)"
    )

    def combine(self, attentions, queries):
        n = attentions[0].shape[-1]
        flow = torch.eye(n, dtype=torch.float64, device=queries.device)[queries]  # (k, n): from the top
        identity = torch.eye(n, dtype=torch.float64, device=queries.device)
        for layer in reversed(attentions):
            mixed = 0.5 * layer.mean(dim=0).double() + 0.5 * identity
            flow = flow @ (mixed / mixed.sum(dim=-1, keepdim=True))
        return flow
