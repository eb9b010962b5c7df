"""The page's data for ``InternalsResult``: logit lens, rankings, watch list, activations, NMF, similarity.

Lens layers are 0..n_layers (0 = the embeddings), blocks 0..n_layers-1, positions absolute (as on the wire).
Full activation tensors are not embedded in the page: the top ``TOP_NEURONS`` neurons per (block, position)
are, by value, the way the server's ``activation_top_k`` orders them.
"""

from __future__ import annotations

from collections.abc import Sequence

from .wire import Json, enum, field, int_matrix, ints, matrix, number

#: neurons shown per (block, position) when the reply carries the full activation tensor
TOP_NEURONS = 8


def _stays_ahead_from(winner: list[int], loser: list[int]) -> int | None:
    """First lens layer from which ``winner`` is ranked strictly above ``loser`` at every later layer."""
    layer = None
    for depth in range(len(winner) - 1, -1, -1):
        if winner[depth] >= loser[depth]:
            break
        layer = depth
    return layer


def _overtakes(ranks: list[list[int]]) -> list[Json]:
    """Every ordered pair (winner, loser) of watched rows where the winner ends above: the layer it overtakes."""
    found = []
    for w, winner in enumerate(ranks):
        for loser_row, loser in enumerate(ranks):
            layer = _stays_ahead_from(winner, loser) if w != loser_row else None
            if layer is not None:
                found.append({"winner": w, "loser": loser_row, "layer": layer})
    return found


def _top(values: Sequence[float | None], k: int) -> list[list[float | None]]:
    finite = [(n, v) for n, v in enumerate(values) if v is not None]
    return [[n, v] for n, v in sorted(finite, key=lambda item: item[1], reverse=True)[:k]]


def _activation_layer(layer: Json) -> Json:
    """One block: ``top[row]`` is a list of [neuron, value], strongest first, for each position row."""
    full = matrix(field(layer, "values"))
    top: list[list[list[float | None]]]  # a non-finite value is None (shown as n/a)
    if full:
        top = [_top(row, TOP_NEURONS) for row in full]
    else:
        neurons = int_matrix(field(layer, "top_neurons"))
        values = matrix(field(layer, "top_values"))
        top = [[[n, v] for n, v in zip(ns, vs, strict=True)] for ns, vs in zip(neurons, values, strict=True)]
    return {"layer": int(field(layer, "layer", 0)), "top": top}


def _activations(a: Json) -> Json:
    return {
        "positions": ints(field(a, "positions")),
        "n_neurons": int(field(a, "n_neurons", 0)),
        "order": enum(field(a, "order")) or "value",
        "layers": [_activation_layer(layer) for layer in field(a, "layers", ())],
    }


def _nmf(m: Json) -> Json:
    """``strengths`` (n_components, n_positions); ``top[c]`` = [block, neuron, weight] heaviest first."""
    layers = int_matrix(field(m, "top_layers"))
    neurons = int_matrix(field(m, "top_neurons"))
    weights = matrix(field(m, "top_weights"))
    return {
        "layers": ints(field(m, "layers")),
        "positions": ints(field(m, "positions")),
        "strengths": matrix(field(m, "token_strengths")),
        "top": [
            [[b, n, w] for b, n, w in zip(bs, ns, ws, strict=True)]
            for bs, ns, ws in zip(layers, neurons, weights, strict=True)
        ],
        "relative_error": number(field(m, "relative_error", 0.0)),
        "n_iter": int(field(m, "n_iter", 0)),
    }


def _ranked(r: Json, position_field: str) -> Json:
    """Rankings or a watch list: ``ranks``/``probabilities`` of shape (n_tokens, n_layers + 1)."""
    ranks = int_matrix(field(r, "ranks"))
    return {
        position_field: field(r, position_field),
        "token_ids": ints(field(r, "token_ids")),
        "ranks": ranks,
        "probabilities": matrix(field(r, "probabilities")),
    }


def internals_data(i: Json) -> Json:
    """Everything present in one ``InternalsResult``; absent parts are None."""
    lens = field(i, "layer_predictions")
    rankings = field(i, "token_rankings")
    watch = field(i, "watch")
    activations = field(i, "activations")
    nmf = field(i, "nmf")
    similarity = field(i, "similarity")
    watched = _ranked(watch, "position") if watch else None
    if watched is not None:
        watched["position"] = int(watched["position"] or 0)
        watched["overtakes"] = _overtakes(watched["ranks"])
    return {
        "n_layers": int(field(i, "n_layers", 0)),
        "token_texts": {str(k): str(v) for k, v in (field(i, "token_texts") or {}).items()},
        "layer_predictions": {
            "predictions": [
                {
                    "position": int(field(p, "position", 0)),
                    "token_ids": int_matrix(field(p, "token_ids")),
                    "probabilities": matrix(field(p, "probabilities")),
                }
                for p in field(lens, "predictions", ())
            ],
            "output_deviation": number(field(lens, "output_deviation", 0.0)),
        }
        if lens
        else None,
        "token_rankings": {**_ranked(rankings, "positions"), "positions": ints(field(rankings, "positions"))}
        if rankings
        else None,
        "watch": watched,
        "activations": _activations(activations) if activations else None,
        "nmf": _nmf(nmf) if nmf else None,
        "similarity": {
            "method": str(field(similarity, "method", "")),
            "positions": ints(field(similarity, "positions")),
            "matrices": [
                {
                    "representation": enum(field(s, "representation")),
                    "layers": ints(field(s, "layers")),
                    "matrix": matrix(field(s, "matrix")),
                }
                for s in field(similarity, "matrices", ())
            ],
        }
        if similarity
        else None,
    }
