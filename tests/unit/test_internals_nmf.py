"""NMF of FFNN activations (Ecco's run_nmf): non-negative factors that recover planted structure."""

from __future__ import annotations

import numpy as np
import pytest

from ecco_engine import InvalidRequest, LimitExceeded
from ecco_engine.internals import InternalsLimits, InternalsParams, factorize, inspect_sequence, nmf_factors
from ecco_engine.layout import discover_layout
from tiny_models import tiny_model, tiny_tokenizer


def planted(rng: np.random.Generator, n_tokens: int, n_features: int, rank: int):
    w = rng.random((n_tokens, rank))
    h = rng.random((rank, n_features)) * (rng.random((rank, n_features)) < 0.3)
    return w, h


def test_factorize_reconstructs_a_planted_low_rank_matrix():
    rng = np.random.default_rng(0)
    w, h = planted(rng, 40, 200, 3)
    matrix = w @ h
    w_hat, h_hat, n_iter = factorize(matrix, 3)
    assert 1 <= n_iter <= 500
    assert w_hat.shape == (40, 3) and h_hat.shape == (3, 200)
    assert (w_hat >= 0).all() and (h_hat >= 0).all()
    assert np.linalg.norm(matrix - w_hat @ h_hat) / np.linalg.norm(matrix) < 1e-3  # measured 2.6e-5
    again = factorize(matrix, 3)  # deterministic: nndsvda init, fixed random_state
    np.testing.assert_array_equal(again[0], w_hat)


def test_components_find_the_planted_neurons_and_tokens():
    """Two groups of neurons, in different layers, each firing on its own tokens; negatives are clipped."""
    rng = np.random.default_rng(1)
    n_layers, n_positions, n_neurons = 2, 12, 16
    activations = -rng.random((n_layers, n_positions, n_neurons))  # all negative: clipped to 0
    group_a = [(0, 3), (0, 4), (0, 5)]  # (layer, neuron)
    group_b = [(1, 10), (1, 11)]
    tokens_a, tokens_b = [0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]
    for group, tokens in ((group_a, tokens_a), (group_b, tokens_b)):
        strengths = 1.0 + rng.random(len(tokens))  # rank one per group: token strength x neuron weight
        for layer, neuron in group:
            activations[layer, tokens, neuron] = strengths * (1.0 + rng.random())
    factors = nmf_factors(activations, (4, 9), tuple(range(100, 112)), n_components=2, n_top=3)
    assert factors.token_strengths.shape == (2, n_positions) and (factors.token_strengths >= 0).all()
    assert factors.top_layers.shape == factors.top_neurons.shape == factors.top_weights.shape == (2, 3)
    assert (factors.top_weights >= 0).all() and factors.relative_error < 1e-3
    found = {}
    for c in range(2):
        neurons = {(layer, neuron) for layer, neuron, weight in factors.component_neurons(c) if weight > 1e-3}
        tokens = set(np.flatnonzero(factors.token_strengths[c] > 1e-3 * factors.token_strengths[c].max()))
        found[frozenset(neurons)] = tokens
    # layers are reported by their block index (4 and 9), not their position in the selection
    assert found == {
        frozenset({(4, 3), (4, 4), (4, 5)}): set(tokens_a),
        frozenset({(9, 10), (9, 11)}): set(tokens_b),
    }


def test_inspection_nmf_shapes_and_ranges():
    model = tiny_model("gpt2")
    layout = discover_layout(model)
    tok = tiny_tokenizer()
    ids = tok.encode("The capital of France is Paris. The capital of Italy is Rome.")
    params = InternalsParams(nmf_components=3, nmf_layers=(1,), activation_positions=tuple(range(2, 12)))
    nmf = inspect_sequence(model, layout, tok, ids, 6, params).nmf
    assert nmf.layers == (1,) and nmf.positions == tuple(range(2, 12)) and nmf.n_components == 3
    assert nmf.token_strengths.shape == (3, 10) and (nmf.token_strengths >= 0).all()
    assert set(nmf.top_layers.ravel()) == {1} and ((nmf.top_neurons >= 0) & (nmf.top_neurons < 128)).all()
    assert 0 <= nmf.relative_error < 1 and nmf.n_iter >= 1


def test_nmf_components_are_bounded_by_positions_and_the_limit():
    model = tiny_model("gpt2")
    layout = discover_layout(model)
    tok = tiny_tokenizer()
    ids = tok.encode("The capital of France is")
    with pytest.raises(InvalidRequest) as error:
        inspect_sequence(model, layout, tok, ids, 2, InternalsParams(nmf_components=len(ids) + 1))
    assert error.value.field == "nmf_components" and f"1..{len(ids)}" in str(error.value)
    with pytest.raises(LimitExceeded) as error:
        inspect_sequence(
            model, layout, tok, ids, 2, InternalsParams(nmf_components=3), InternalsLimits(max_nmf_components=2)
        )
    assert error.value.field == "nmf_components" and "max_nmf_components" in str(error.value)
