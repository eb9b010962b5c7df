"""Representation similarity between activation matrices (numpy / scipy only).

``cca``, ``svcca``, ``pwcca``, ``linear_cka`` over two ``(n_examples, n_neurons)`` matrices, and
``layer_similarity(activations_by_layer, method)`` -> ``(n_layers, n_layers)``. The server uses them
for ``internals.similarity``; the offline probing experiment (``ecco_tools.probing``) too.
"""

from .similarity import (
    SIMILARITY_METHODS,
    canonical_correlations,
    cca,
    layer_similarity,
    linear_cka,
    pwcca,
    similarity,
    similarity_function,
    svcca,
)

__all__ = [
    "SIMILARITY_METHODS",
    "canonical_correlations",
    "cca",
    "layer_similarity",
    "linear_cka",
    "pwcca",
    "similarity",
    "similarity_function",
    "svcca",
]
