"""FFNN activations captured by ``captured_mlp_activations`` -> ``NeuronActivations``."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import NonFiniteResult
from .hooks import PositionStore
from .types import NeuronActivations

FLOAT16_MAX = float(np.finfo(np.float16).max)


def stacked(store: PositionStore, layers: tuple[int, ...]) -> torch.Tensor:
    """``(n_layers, n_positions, n_neurons)`` float32 of batch row 0; raises on NaN/inf."""
    values = torch.stack([store.tensor(layer)[0] for layer in layers])
    if not torch.isfinite(values).all():
        bad = [layer for layer in layers if not torch.isfinite(store.tensor(layer)).all()]
        raise NonFiniteResult(f"FFNN activations of block(s) {bad} contain NaN or infinity")
    return values


def neuron_activations(
    store: PositionStore, layers: tuple[int, ...], top_k: int | None, order: str = "value"
) -> NeuronActivations:
    """The full float16 tensor (``top_k=None``) or the top-k neurons per (layer, position)."""
    values = stacked(store, layers)
    positions = store.positions(layers[0])
    n_neurons = int(values.shape[-1])
    if top_k is None:
        peak = float(values.abs().max()) if values.numel() else 0.0
        if peak > FLOAT16_MAX:
            raise NonFiniteResult(
                f"an activation of magnitude {peak:.4g} does not fit float16 (max {FLOAT16_MAX:.0f}); "
                "ask for activation_top_k, which returns float32 values"
            )
        return NeuronActivations(
            layers=layers, positions=positions, n_neurons=n_neurons, values=values.numpy().astype(np.float16)
        )
    k = min(top_k, n_neurons)
    keys = values.abs() if order == "magnitude" else values
    indices = torch.topk(keys, k, dim=-1).indices  # (n_layers, n_positions, k), best first
    return NeuronActivations(
        layers=layers,
        positions=positions,
        n_neurons=n_neurons,
        top_indices=indices.numpy().astype(np.int64),
        top_values=values.gather(-1, indices).numpy().astype(np.float32),
        order=order,
    )
