"""NMF of FFNN activations, as Ecco's ``run_nmf``: which groups of neurons fire together, on which tokens.

Like Ecco, negative activations are clipped to 0 before factoring (NMF needs a non-negative
matrix; GELU/SiLU negatives are small, but gated MLPs' negatives are simply dropped — the factors
describe *positive* firing). Unlike Ecco (random init), the factorisation is deterministic:
scikit-learn's ``NMF(init="nndsvda", random_state=0)``.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning

from ..errors import InvalidRequest
from .types import NmfFactors


def factorize(matrix: np.ndarray, n_components: int, max_iter: int = 500) -> tuple[np.ndarray, np.ndarray, int]:
    """``matrix`` ``(n_tokens, n_features)`` >= 0 -> ``(W (n_tokens, c), H (c, n_features), n_iter)``."""
    model = NMF(n_components=n_components, init="nndsvda", random_state=0, max_iter=max_iter, tol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported via n_iter / relative_error
        w = model.fit_transform(matrix)
    return w.astype(np.float32), model.components_.astype(np.float32), int(model.n_iter_)


def nmf_factors(
    activations: np.ndarray,
    layers: tuple[int, ...],
    positions: tuple[int, ...],
    n_components: int,
    n_top: int,
) -> NmfFactors:
    """``activations`` ``(n_layers, n_positions, n_neurons)`` -> components over tokens and neurons."""
    n_layers, n_positions, n_neurons = activations.shape
    if n_components > min(n_positions, n_layers * n_neurons):
        raise InvalidRequest(
            "nmf_components",
            f"must be in 1..{min(n_positions, n_layers * n_neurons)} (at most the number of positions "
            f"factored, {n_positions}), got {n_components}",
        )
    # (n_positions, n_layers * n_neurons): feature j is neuron j % n_neurons of layers[j // n_neurons]
    matrix = np.clip(activations, 0.0, None).transpose(1, 0, 2).reshape(n_positions, -1).astype(np.float32)
    norm = float(np.linalg.norm(matrix.astype(np.float64)))
    if norm == 0.0:
        raise InvalidRequest("nmf_layers", "every activation of these layers and positions is <= 0: nothing to factor")
    w, h, n_iter = factorize(matrix, n_components)
    residual = matrix.astype(np.float64) - w.astype(np.float64) @ h.astype(np.float64)
    relative_error = float(np.linalg.norm(residual) / norm)
    n_top = min(n_top, h.shape[1])
    top = np.argsort(-h, axis=1, kind="stable")[:, :n_top]  # (c, n_top) feature indices
    layer_of = np.asarray(layers, dtype=np.int64)
    return NmfFactors(
        layers=layers,
        positions=positions,
        token_strengths=np.ascontiguousarray(w.T),
        top_layers=layer_of[top // n_neurons],
        top_neurons=(top % n_neurons).astype(np.int64),
        top_weights=np.take_along_axis(h, top, axis=1).astype(np.float32),
        relative_error=relative_error,
        n_iter=n_iter,
    )
