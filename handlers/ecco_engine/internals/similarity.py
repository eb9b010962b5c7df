"""Layer x layer representation similarity of one sequence, from the same forward as the other internals.

``captured_for_similarity`` adds the capture hooks (the residual stream at lens depths
``0..n_layers`` and / or the FFNN activations of every block, at the plan's similarity positions);
``similarity_matrices`` turns what they held into ``SimilarityMatrices`` with
``analysis.layer_similarity``, the tokens being the examples. Sizes are checked by
``plan.validate_params`` before the forward (``max_captured_elements``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np
import torch

from ..analysis.similarity import layer_similarity
from ..errors import InvalidRequest, NonFiniteResult, UnknownMethod
from ..layout import ModelLayout
from .hooks import PositionStore, captured_mlp_activations, captured_residual_stream
from .plan import InspectionPlan
from .types import LayerSimilarity, SimilarityMatrices


@contextmanager
def captured_for_similarity(layout: ModelLayout, plan: InspectionPlan) -> Iterator[dict[str, PositionStore]]:
    """Stores keyed by representation (``"hidden"``: keys = lens depths; ``"ffn"``: keys = blocks)."""
    with ExitStack() as stack:
        stores: dict[str, PositionStore] = {}
        if "hidden" in plan.similarity:
            stores["hidden"] = stack.enter_context(captured_residual_stream(layout, plan.similarity_positions))
        if "ffn" in plan.similarity:
            stores["ffn"] = stack.enter_context(
                captured_mlp_activations(layout, None, positions=plan.similarity_positions)
            )
        yield stores


def _by_layer(store: PositionStore, representation: str) -> list[np.ndarray]:
    """``(n_positions, width)`` float32 per layer (batch row 0); raises on NaN / infinity."""
    layers = [store.tensor(key)[0] for key in store.keys]
    bad = [key for key, values in zip(store.keys, layers, strict=True) if not torch.isfinite(values).all()]
    if bad:
        raise NonFiniteResult(f"{representation} representations of layer(s) {bad} contain NaN or infinity")
    return [values.numpy() for values in layers]


def similarity_matrices(stores: dict[str, PositionStore], plan: InspectionPlan) -> SimilarityMatrices:
    """One ``LayerSimilarity`` per representation, in the order of ``plan.similarity``."""
    matrices = []
    for representation in plan.similarity:
        store = stores[representation]
        try:
            matrix = layer_similarity(_by_layer(store, representation), plan.similarity_method)
        except UnknownMethod:
            raise
        except InvalidRequest as error:  # e.g. the CCA family with fewer tokens than rank_i + rank_j
            field = "similarity_positions" if plan.similarity_method == "linear_cka" else "similarity_method"
            raise InvalidRequest(field, f"{representation}: {error.reason}") from None
        matrices.append(LayerSimilarity(representation, tuple(store.keys), matrix))
    first = stores[plan.similarity[0]]
    positions = first.positions(first.keys[0])
    return SimilarityMatrices(plan.similarity_method, positions, tuple(matrices))
