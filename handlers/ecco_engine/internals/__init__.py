"""Inside the model: logit lens, token rankings, watch list, FFNN activations, interventions, NMF.

Entry points:

* ``inspect_sequence(model, layout, tokenizer, input_ids, prompt_length, params, limits)``: one
  teacher-forced forward of prompt + generated tokens -> ``InternalsResult`` (incl. the layer x
  layer representation similarity of the sequence's tokens).
* ``neuron_interventions(layout, interventions, limits)``: a context manager that sets / scales
  FFNN neurons in every forward inside it (wrap generation, attribution and inspection in it).
* ``captured_mlp_activations(layout, layers)``: a context manager that records FFNN activations of
  any forwards inside it (e.g. KV-cached generation).

Layers ``0..n_layers`` (residual stream, 0 = embeddings) and blocks ``0..n_layers-1``: see
docs/internals.md, "Layers and blocks".
"""

from .hooks import (
    PositionStore,
    captured_mlp_activations,
    captured_residual_stream,
    count_hooks,
    ffn_width,
    gathered_unembedding,
)
from .inspect import inspect_sequence
from .interventions import neuron_interventions, validate_interventions
from .lens import LensHead, ranks_of
from .nmf import factorize, nmf_factors
from .plan import CheckedParams, InspectionPlan, precheck_params, validate_params
from .types import (
    InternalsLimits,
    InternalsParams,
    InternalsResult,
    Intervention,
    LayerPredictions,
    LayerSimilarity,
    NeuronActivations,
    NmfFactors,
    SimilarityMatrices,
    TokenRankings,
    WatchedTokens,
)

__all__ = [
    "CheckedParams",
    "InspectionPlan",
    "InternalsLimits",
    "InternalsParams",
    "InternalsResult",
    "Intervention",
    "LayerPredictions",
    "LayerSimilarity",
    "LensHead",
    "NeuronActivations",
    "NmfFactors",
    "PositionStore",
    "SimilarityMatrices",
    "TokenRankings",
    "WatchedTokens",
    "captured_mlp_activations",
    "captured_residual_stream",
    "count_hooks",
    "factorize",
    "ffn_width",
    "gathered_unembedding",
    "inspect_sequence",
    "neuron_interventions",
    "nmf_factors",
    "precheck_params",
    "ranks_of",
    "validate_interventions",
    "validate_params",
]
