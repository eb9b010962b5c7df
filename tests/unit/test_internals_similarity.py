"""Layer x layer representation similarity as part of ``inspect_sequence`` (one forward, the tokens as examples).

Tolerances: the request's matrix equals ``layer_similarity`` on activations captured by hooks of the
test's own (same float32 forward) to 1e-6 absolute; CKA's diagonal is 1 and the matrix symmetric to 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecco_engine import InvalidRequest, LimitExceeded, UnknownMethod
from ecco_engine.analysis import layer_similarity
from ecco_engine.internals import (
    InternalsLimits,
    InternalsParams,
    count_hooks,
    inspect_sequence,
    precheck_params,
)
from ecco_engine.layout import discover_layout
from tiny_models import tiny_model, tiny_tokenizer

TEXT = "The capital of France is Paris, and the capital of Italy is Rome."
BOTH = ("hidden", "ffn")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def setup(request):
    model = tiny_model(request.param)
    tok = tiny_tokenizer()
    return model, discover_layout(model), tok, tok.encode(TEXT)


def _inspect(setup, limits: InternalsLimits | None = None, prompt_length: int = 4, **kwargs):
    model, layout, tok, ids = setup
    return inspect_sequence(model, layout, tok, ids, prompt_length, InternalsParams(**kwargs), limits)


def manual_representations(model, layout, ids: list[int]) -> dict[str, list[np.ndarray]]:
    """Residual stream (block 0's input, every block's output) and MLP down-projection inputs,
    recorded by the test's own hooks around a plain forward: ``(n_tokens, width)`` per layer."""
    hidden: list[torch.Tensor] = []
    ffn: list[torch.Tensor] = []

    def block_input(_m, args, kwargs):
        hidden.append((args[0] if args else kwargs["hidden_states"])[0])

    def block_output(_m, _a, out):
        hidden.append((out[0] if isinstance(out, tuple) else out)[0])

    def mlp_input(_m, args):
        ffn.append(args[0].reshape(-1, args[0].shape[-1]))

    handles = [layout.blocks[0].register_forward_pre_hook(block_input, with_kwargs=True)]
    handles += [block.register_forward_hook(block_output) for block in layout.blocks]
    handles += [down.register_forward_pre_hook(mlp_input) for down in layout.mlp_down]
    try:
        with torch.inference_mode():
            model(input_ids=torch.tensor([ids]), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return {"hidden": [h.float().numpy() for h in hidden], "ffn": [f.float().numpy() for f in ffn]}


def test_cka_matrices_have_a_unit_diagonal_and_are_symmetric(setup):
    _, layout, _, ids = setup
    result = _inspect(setup, similarity=BOTH).similarity
    assert result is not None and result.method == "linear_cka"
    assert result.positions == tuple(range(len(ids))) and result.n_tokens == len(ids)
    assert [m.representation for m in result.matrices] == list(BOTH)
    hidden, ffn = result.of("hidden"), result.of("ffn")
    assert hidden.layers == tuple(range(layout.n_layers + 1)) and ffn.layers == tuple(range(layout.n_layers))
    assert hidden.labels[0] == "emb" and ffn.labels[0] == "f0"
    for item in result.matrices:
        n = len(item.layers)
        assert item.matrix.shape == (n, n)
        np.testing.assert_allclose(np.diag(item.matrix), 1.0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(item.matrix, item.matrix.T, rtol=0, atol=1e-12)
        assert (item.matrix >= 0).all() and (item.matrix <= 1).all()


@pytest.mark.parametrize("positions", [None, (1, 3, 4, 6, 9, 12)])
def test_matrix_equals_layer_similarity_of_a_manual_forward(setup, positions):
    model, layout, _, ids = setup
    result = _inspect(setup, similarity=BOTH, similarity_method="cka", similarity_positions=positions).similarity
    assert result is not None and result.method == "linear_cka"  # the alias is reported by its canonical name
    rows = list(positions) if positions is not None else list(range(len(ids)))
    assert result.positions == tuple(rows)
    manual = manual_representations(model, layout, ids)
    for representation in BOTH:
        want = layer_similarity([layer[rows] for layer in manual[representation]], "linear_cka")
        np.testing.assert_allclose(result.of(representation).matrix, want, rtol=0, atol=1e-6)
    assert count_hooks(model) == 0


def test_similarity_shares_the_forward_and_leaves_other_results_unchanged(setup):
    alone = _inspect(setup, activations=True, layer_predictions=True)
    together = _inspect(setup, activations=True, layer_predictions=True, similarity=("ffn",))
    np.testing.assert_array_equal(together.activations.values, alone.activations.values)
    np.testing.assert_array_equal(together.layer_predictions.probabilities, alone.layer_predictions.probabilities)
    assert alone.similarity is None and together.similarity is not None
    assert InternalsParams(similarity=("hidden",)).needs_forward
    assert not InternalsParams().needs_forward


def test_cca_with_more_tokens_than_twice_the_width_matches_layer_similarity(setup):
    """The CCA family needs n_tokens > rank_i + rank_j: a long sequence, the hidden states (width 32)."""
    model, layout, tok, _ = setup
    ids = (tok.encode(TEXT) * 6)[:80]
    setup80 = (model, layout, tok, ids)
    result = _inspect(setup80, similarity=("hidden",), similarity_method="cca").similarity
    want = layer_similarity(manual_representations(model, layout, ids)["hidden"], "cca")
    np.testing.assert_allclose(result.of("hidden").matrix, want, rtol=0, atol=1e-6)
    assert result.method == "cca"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"similarity": ("attention",)}, "similarity[0]"),
        ({"similarity": ("ffn", "ffn")}, "similarity"),
        ({"similarity": "hidden"}, "similarity"),
        ({"similarity_method": ""}, "similarity_method"),
        ({"similarity": ("ffn",), "similarity_positions": ()}, "similarity_positions"),
        ({"similarity": ("ffn",), "similarity_positions": (1, -1)}, "similarity_positions"),
        ({"similarity_positions": (1, 2)}, "similarity_positions"),
    ],
)
def test_model_free_checks_name_the_field(kwargs, field):
    with pytest.raises(InvalidRequest) as error:
        InternalsParams(**kwargs)
    assert error.value.field == field


def test_unknown_method_is_rejected_before_any_work(setup):
    model, layout, tok, _ = setup
    params = InternalsParams(similarity=("hidden",), similarity_method="procrustes")
    with pytest.raises(UnknownMethod) as error:
        precheck_params(params, layout, tok, InternalsLimits())
    assert error.value.field == "similarity_method" and "linear_cka" in str(error.value)
    with pytest.raises(UnknownMethod):
        _inspect(setup, similarity=("hidden",), similarity_method="procrustes")
    assert count_hooks(model) == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"similarity_positions": (2, 99)}, "similarity_positions"),
        ({"similarity_positions": (2,)}, "similarity_positions"),  # one token: nothing to compare
        ({"similarity_method": "cca"}, "similarity_method"),  # 16 tokens vs width 32: CCA is degenerate
    ],
)
def test_sequence_checks_name_the_field(setup, kwargs, field):
    with pytest.raises(InvalidRequest) as error:
        _inspect(setup, similarity=("hidden",), **kwargs)
    assert error.value.field == field
    assert count_hooks(setup[0]) == 0


def test_memory_limit_counts_captures_and_gram_matrices(setup):
    _, layout, _, ids = setup
    n, width = len(ids), layout.embedding.embedding_dim
    needed = (layout.n_layers + 1) * n * (width + n)
    with pytest.raises(LimitExceeded) as error:
        _inspect(setup, InternalsLimits(max_captured_elements=needed - 1), similarity=("hidden",))
    assert error.value.field == "similarity" and "max_captured_elements" in str(error.value)
    assert _inspect(setup, InternalsLimits(max_captured_elements=needed), similarity=("hidden",)).similarity
