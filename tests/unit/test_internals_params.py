"""Request checks and server limits for inspection: errors name the field and the range or the limit."""

from __future__ import annotations

import pytest

from ecco_engine import InvalidRequest, LimitExceeded
from ecco_engine.internals import InternalsLimits, InternalsParams, count_hooks, inspect_sequence, precheck_params
from ecco_engine.layout import discover_layout
from tiny_models import tiny_model, tiny_tokenizer

IDS_TEXT = "The capital of France is Paris."


@pytest.fixture(scope="module")
def setup():
    model = tiny_model("llama")  # 2 blocks, 64 FFNN neurons, vocabulary ~320
    return model, discover_layout(model), tiny_tokenizer(), tiny_tokenizer().encode(IDS_TEXT)[:8]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"top_k": 0}, "top_k"),
        ({"positions": ()}, "positions"),
        ({"positions": (1, -2)}, "positions"),
        ({"watch": ("",)}, "watch[0]"),
        ({"watch": (" a", 1.5)}, "watch[1]"),
        ({"watch_position": 2}, "watch_position"),
        ({"activation_layers": (0, True)}, "activation_layers"),
        ({"activation_top_k": 0}, "activation_top_k"),
        ({"activation_order": "abs"}, "activation_order"),
        ({"nmf_components": 0}, "nmf_components"),
        ({"nmf_layers": (0,)}, "nmf_layers"),
        ({"layer_predictions": "yes"}, "layer_predictions"),
    ],
)
def test_model_free_checks_name_the_field(kwargs, field):
    with pytest.raises(InvalidRequest) as error:
        InternalsParams(**kwargs)
    assert error.value.field == field
    assert not isinstance(error.value, LimitExceeded)


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"layer_predictions": True, "positions": (0, 99)}, "positions", "0..7"),
        ({"watch": (5,), "watch_position": 8}, "watch_position", "0..7"),
        ({"watch": (5, 5)}, "watch", "twice"),
        ({"watch": (100_000,)}, "watch[0]", "token id must be in"),
        ({"activations": True, "activation_layers": (2,)}, "activation_layers", "blocks 0..1"),
        ({"activations": True, "activation_positions": (8,)}, "activation_positions", "0..7"),
        ({"nmf_components": 2, "nmf_layers": (0, 3)}, "nmf_layers", "blocks 0..1"),
    ],
)
def test_sequence_and_model_checks_name_the_field_and_range(setup, kwargs, field, text):
    model, layout, tok, ids = setup
    assert len(ids) == 8
    with pytest.raises(InvalidRequest) as error:
        inspect_sequence(model, layout, tok, ids, 3, InternalsParams(**kwargs))
    assert error.value.field == field and text in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "limits", "field", "limit"),
    [
        ({"layer_predictions": True, "top_k": 11}, {"max_top_k": 10}, "top_k", "max_top_k"),
        ({"layer_predictions": True}, {"max_positions": 3}, "positions", "max_positions"),
        ({"watch": (1, 2, 3)}, {"max_watch": 2}, "watch", "max_watch"),
        ({"activations": True, "activation_top_k": 11}, {"max_top_k": 10}, "activation_top_k", "max_top_k"),
        ({"activations": True}, {"max_activation_elements": 2 * 8 * 64 - 1}, "activations", "max_activation_elements"),
        (
            {"activations": True, "activation_top_k": 4},
            {"max_activation_elements": 2 * 8 * 4 - 1},
            "activations",
            "max_activation_elements",
        ),
        ({"nmf_components": 2}, {"max_captured_elements": 2 * 8 * 64 - 1}, "activations", "max_captured_elements"),
        ({"nmf_components": 2, "nmf_top_neurons": 11}, {"max_top_k": 10}, "nmf_top_neurons", "max_top_k"),
    ],
)
def test_limits_raise_limit_exceeded_naming_the_limit(setup, kwargs, limits, field, limit):
    model, layout, tok, ids = setup
    before = count_hooks(model)
    with pytest.raises(LimitExceeded) as error:
        inspect_sequence(model, layout, tok, ids, 3, InternalsParams(**kwargs), InternalsLimits(**limits))
    assert error.value.field == field and limit in str(error.value)
    assert count_hooks(model) == before


def test_within_the_limits_everything_is_returned(setup):
    model, layout, tok, ids = setup
    limits = InternalsLimits(max_activation_elements=2 * 8 * 64, max_positions=4, max_top_k=10)
    params = InternalsParams(layer_predictions=True, top_k=10, activations=True)
    result = inspect_sequence(model, layout, tok, ids, 4, params, limits)  # 4 default lens positions: 3..6
    assert result.layer_predictions.positions == (3, 4, 5, 6)
    assert result.activations.values.shape == (2, 8, 64)


def test_nothing_asked_nothing_computed(setup):
    model, layout, tok, ids = setup
    result = inspect_sequence(model, layout, tok, ids, 3, InternalsParams())
    assert not InternalsParams().needs_forward
    assert (result.layer_predictions, result.token_rankings, result.watch, result.activations, result.nmf) == (
        None,
        None,
        None,
        None,
        None,
    )


def test_prompt_only_sequence_has_empty_rankings_and_lens_at_the_last_position(setup):
    model, layout, tok, ids = setup
    params = InternalsParams(layer_predictions=True, token_rankings=True)
    result = inspect_sequence(model, layout, tok, ids, len(ids), params)
    assert result.token_rankings.ranks.shape == (0, layout.n_layers + 1)
    assert result.layer_predictions.positions == (len(ids) - 1,)


@pytest.mark.parametrize(
    ("kwargs", "limits", "error", "field"),
    [
        ({"layer_predictions": True, "top_k": 11}, {"max_top_k": 10}, LimitExceeded, "top_k"),
        ({"watch": (" capital", " Paris")}, {}, InvalidRequest, "watch[1]"),
        ({"activations": True, "activation_layers": (5,)}, {}, InvalidRequest, "activation_layers"),
        ({"nmf_components": 3}, {"max_nmf_components": 2}, LimitExceeded, "nmf_components"),
    ],
)
def test_precheck_fails_before_any_generation(setup, kwargs, limits, error, field):
    """What needs only the model is checked by precheck_params, so the explainer can call it first."""
    _model, layout, tok, _ids = setup
    with pytest.raises(error) as raised:
        precheck_params(InternalsParams(**kwargs), layout, tok, InternalsLimits(**limits))
    assert raised.value.field == field


def test_precheck_resolves_watch_ids_and_layers(setup):
    _model, layout, tok, _ids = setup
    checked = precheck_params(
        InternalsParams(watch=(" capital", 7), activations=True, nmf_components=2, nmf_layers=(1,)),
        layout,
        tok,
        InternalsLimits(),
    )
    assert checked.watch_ids == (tok.encode(" capital")[0], 7)
    assert checked.activation_layers == (0, 1) and checked.nmf_layers == (1,) and checked.ffn_width == 64
