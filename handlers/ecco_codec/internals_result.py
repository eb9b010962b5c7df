"""``ecco_engine.internals.InternalsResult`` <-> ``ecco.v1.InternalsResult``, compactly.

- integers (token ids, ranks, neuron and block indices) as packed int32 ``IntMatrix``;
- full FFNN activations as float16 bytes (``Matrix.float16_values``, the engine's own precision);
- probabilities, top activation values and NMF numbers as packed float32, or float16 bytes when the
  request asked for ``float16`` and every value fits float16 (else float32: readers accept both);
- 3-D arrays as one 2-D matrix per position (layer predictions) or per block (activations);
- layer similarity as one (n_layers, n_layers) matrix per representation (float32, or float16 if asked).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ecco_engine.internals import (
    InternalsResult,
    LayerPredictions,
    NeuronActivations,
    NmfFactors,
    SimilarityMatrices,
    TokenRankings,
    WatchedTokens,
)
from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .arrays import to_int_matrix, to_matrix
from .fields import wire_enum

FLOAT16_MAX = float(np.finfo(np.float16).max)


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
        order=wire_enum(pb.ActivationOrder.DESCRIPTOR, a.order)
        if a.values is None
        else pb.ACTIVATION_ORDER_UNSPECIFIED,
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
                representation=wire_enum(pb.Representation.DESCRIPTOR, m.representation),
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
