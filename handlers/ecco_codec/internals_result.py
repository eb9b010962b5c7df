"""``ecco_engine.internals.InternalsResult`` <-> ``ecco.v1.InternalsResult``, compactly.

- integers (token ids, ranks, neuron and block indices) as packed int32 ``IntMatrix``;
- full FFNN activations as float16 bytes (``Matrix.float16_values``, the engine's own precision);
- probabilities, top activation values and NMF numbers as packed float32, or float16 bytes when the
  request asked for ``float16`` and every value fits float16 (else float32: readers accept both);
- 3-D arrays as one 2-D matrix per position (layer predictions) or per block (activations);
- layer similarity as one (n_layers, n_layers) matrix per representation (float32, or float16 if asked).

``from_internals_result`` is the inverse (used by tests and in-process comparisons).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ecco_engine.internals import (
    InternalsResult,
    LayerPredictions,
    LayerSimilarity,
    NeuronActivations,
    NmfFactors,
    SimilarityMatrices,
    TokenRankings,
    WatchedTokens,
)
from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .arrays import from_int_matrix, from_matrix, from_matrix_as, to_int_matrix, to_matrix
from .internals_request import ORDERS, REPRESENTATIONS

FLOAT16_MAX = float(np.finfo(np.float16).max)
_ORDER_OF: dict[str, Any] = {v: k for k, v in ORDERS.items()}  # the stubs type enum numbers per enum
_REPRESENTATION_OF: dict[str, Any] = {v: k for k, v in REPRESENTATIONS.items()}


def _floats(array: np.ndarray, float16: bool) -> pb.Matrix:
    """float16 bytes when asked for and lossless in range (finite, |x| <= 65504); else float32."""
    values = np.asarray(array)
    fits = values.size == 0 or float(np.abs(values).max()) <= FLOAT16_MAX
    return to_matrix(values, float16=float16 and fits)


def _lens(lp: LayerPredictions, float16: bool) -> pb.LayerPredictions:
    return pb.LayerPredictions(
        predictions=[
            pb.PositionPredictions(
                position=position,
                token_ids=to_int_matrix(lp.token_ids[i]),
                probabilities=_floats(lp.probabilities[i], float16),
            )
            for i, position in enumerate(lp.positions)
        ],
        output_deviation=lp.output_deviation,
    )


def _rankings(tr: TokenRankings, float16: bool) -> pb.TokenRankings:
    return pb.TokenRankings(
        positions=list(tr.positions),
        token_ids=list(tr.token_ids),
        ranks=to_int_matrix(tr.ranks),
        probabilities=_floats(tr.probabilities, float16),
    )


def _watch(w: WatchedTokens, float16: bool) -> pb.WatchedTokens:
    return pb.WatchedTokens(
        position=w.position,
        token_ids=list(w.token_ids),
        ranks=to_int_matrix(w.ranks),
        probabilities=_floats(w.probabilities, float16),
    )


def _activations(a: NeuronActivations, float16: bool) -> pb.NeuronActivations:
    layers = []
    for i, layer in enumerate(a.layers):
        item = pb.LayerActivations(layer=layer)
        if a.values is not None:
            item.values.CopyFrom(to_matrix(a.values[i], float16=True))  # the engine's values are float16
        else:
            assert a.top_indices is not None and a.top_values is not None  # NeuronActivations' contract
            item.top_neurons.CopyFrom(to_int_matrix(a.top_indices[i]))
            item.top_values.CopyFrom(_floats(a.top_values[i], float16))
        layers.append(item)
    return pb.NeuronActivations(
        positions=list(a.positions),
        n_neurons=a.n_neurons,
        order=_ORDER_OF[a.order] if a.values is None else pb.ACTIVATION_ORDER_UNSPECIFIED,
        layers=layers,
    )


def _nmf(n: NmfFactors, float16: bool) -> pb.NmfFactors:
    return pb.NmfFactors(
        layers=list(n.layers),
        positions=list(n.positions),
        token_strengths=_floats(n.token_strengths, float16),
        top_layers=to_int_matrix(n.top_layers),
        top_neurons=to_int_matrix(n.top_neurons),
        top_weights=_floats(n.top_weights, float16),
        relative_error=n.relative_error,
        n_iter=n.n_iter,
    )


def _similarity(s: SimilarityMatrices, float16: bool) -> pb.SimilarityMatrices:
    return pb.SimilarityMatrices(
        method=s.method,
        positions=list(s.positions),
        matrices=[
            pb.LayerSimilarity(
                representation=_REPRESENTATION_OF[m.representation],
                layers=list(m.layers),
                matrix=_floats(m.matrix, float16),
            )
            for m in s.matrices
        ],
    )


def result_token_ids(result: InternalsResult) -> list[int]:
    """Every token id the result mentions (sorted, distinct)."""
    ids: set[int] = set()
    if result.layer_predictions is not None:
        ids.update(int(i) for i in np.unique(result.layer_predictions.token_ids))
    if result.token_rankings is not None:
        ids.update(int(i) for i in result.token_rankings.token_ids)
    if result.watch is not None:
        ids.update(int(i) for i in result.watch.token_ids)
    return sorted(ids)


def token_texts(tokenizer, ids: Iterable[int]) -> dict[int, str]:
    """Each id decoded alone (special tokens kept); an id the tokenizer cannot decode is left out."""
    texts = {}
    for token_id in ids:
        try:
            texts[token_id] = tokenizer.decode([token_id], skip_special_tokens=False)
        except (ValueError, TypeError, IndexError, OverflowError, KeyError):  # e.g. padded vocabulary rows
            continue
    return texts


def to_internals_result(result: InternalsResult, *, float16: bool = False, tokenizer=None) -> pb.InternalsResult:
    """The wire form of an engine ``InternalsResult``; with ``tokenizer``, ``token_texts`` is filled."""
    message = pb.InternalsResult(n_layers=result.n_layers)
    if result.layer_predictions is not None:
        message.layer_predictions.CopyFrom(_lens(result.layer_predictions, float16))
    if result.token_rankings is not None:
        message.token_rankings.CopyFrom(_rankings(result.token_rankings, float16))
    if result.watch is not None:
        message.watch.CopyFrom(_watch(result.watch, float16))
    if result.activations is not None:
        message.activations.CopyFrom(_activations(result.activations, float16))
    if result.nmf is not None:
        message.nmf.CopyFrom(_nmf(result.nmf, float16))
    if result.similarity is not None:
        message.similarity.CopyFrom(_similarity(result.similarity, float16))
    if tokenizer is not None:
        message.token_texts.update(token_texts(tokenizer, result_token_ids(result)))
    return message


# ---- wire -> engine types (the inverse; token_texts are not part of the engine's result) ----------
def _from_activations(m: pb.NeuronActivations) -> NeuronActivations:
    layers, positions = tuple(item.layer for item in m.layers), tuple(m.positions)
    if m.layers and m.layers[0].HasField("values"):
        values = np.stack([from_matrix_as(item.values, np.float16) for item in m.layers])
        return NeuronActivations(layers, positions, m.n_neurons, values=values)
    return NeuronActivations(
        layers,
        positions,
        m.n_neurons,
        top_indices=np.stack([from_int_matrix(item.top_neurons) for item in m.layers]),
        top_values=np.stack([from_matrix(item.top_values) for item in m.layers]),
        order=ORDERS.get(m.order, "value"),
    )


def from_internals_result(m: pb.InternalsResult) -> InternalsResult:
    """The engine ``InternalsResult`` of a wire message (arrays int64 / float32; full activations float16)."""
    parts: dict[str, object] = {}
    if m.HasField("layer_predictions"):
        lp = m.layer_predictions
        parts["layer_predictions"] = LayerPredictions(
            positions=tuple(p.position for p in lp.predictions),
            token_ids=np.stack([from_int_matrix(p.token_ids) for p in lp.predictions]),
            probabilities=np.stack([from_matrix(p.probabilities) for p in lp.predictions]),
            output_deviation=lp.output_deviation,
        )
    if m.HasField("token_rankings"):
        tr = m.token_rankings
        parts["token_rankings"] = TokenRankings(
            tuple(tr.positions), tuple(tr.token_ids), from_int_matrix(tr.ranks), from_matrix(tr.probabilities)
        )
    if m.HasField("watch"):
        w = m.watch
        parts["watch"] = WatchedTokens(
            w.position, tuple(w.token_ids), from_int_matrix(w.ranks), from_matrix(w.probabilities)
        )
    if m.HasField("activations"):
        parts["activations"] = _from_activations(m.activations)
    if m.HasField("nmf"):
        n = m.nmf
        parts["nmf"] = NmfFactors(
            layers=tuple(n.layers),
            positions=tuple(n.positions),
            token_strengths=from_matrix(n.token_strengths),
            top_layers=from_int_matrix(n.top_layers),
            top_neurons=from_int_matrix(n.top_neurons),
            top_weights=from_matrix(n.top_weights),
            relative_error=n.relative_error,
            n_iter=n.n_iter,
        )
    if m.HasField("similarity"):
        s = m.similarity
        parts["similarity"] = SimilarityMatrices(
            method=s.method,
            positions=tuple(s.positions),
            matrices=tuple(
                LayerSimilarity(REPRESENTATIONS[item.representation], tuple(item.layers), from_matrix(item.matrix))
                for item in s.matrices
            ),
        )
    return InternalsResult(n_layers=m.n_layers, **parts)  # type: ignore[arg-type]
