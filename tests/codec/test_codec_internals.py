"""Internals on the wire: round trips of real engine results (tiny GPT-2), compact encodings, requests.

Tolerances: float32 numbers round-trip exactly (packed float32); full activations are float16 in the
engine and on the wire, so they round-trip exactly too; with ``float16`` requested, probabilities and
weights are float16 (relative error <= 2**-11, absolute <= 2**-24 near zero).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from google.protobuf import json_format
from wire_inverse import from_internals_result, to_proto_internals, to_proto_request

from ecco_codec import (
    Decoded,
    decode_internals,
    decode_request,
    encode_explanation,
    encode_stream_summary,
    to_internals_result,
)
from ecco_codec.fields import engine_enum
from ecco_engine import AttributionParams, ExplainRequest, GenerationParams
from ecco_engine.internals import InternalsParams, InternalsResult, Intervention
from ecco_engine.internals.types import ACTIVATION_ORDERS, INTERVENTION_MODES
from ecco_proto.ecco.v1 import ecco_pb2 as pb

F16_RTOL, F16_ATOL = 2.0**-11, 2.0**-24
PROMPT = "The capital of France is"
#: lens, rankings, watch (texts and an id), full activations
LOOK = InternalsParams(layer_predictions=True, top_k=4, token_rankings=True, watch=(" is", " the", 5), activations=True)
#: top-k activations by magnitude of two positions, NMF, and an intervention
TOPK = InternalsParams(
    activations=True,
    activation_layers=(1,),
    activation_positions=(2, 5),
    activation_top_k=6,
    activation_order="magnitude",
    nmf_components=2,
    nmf_layers=(0, 1),
    nmf_top_neurons=3,
    interventions=(Intervention(layer=0, neuron=3, mode="scale", value=2.0),),
)


def _request(internals: InternalsParams, methods: tuple[str, ...] = ()) -> ExplainRequest:
    return ExplainRequest(
        prompt=PROMPT,
        generation=GenerationParams(max_new_tokens=3),
        attribution=AttributionParams(methods=methods, n_steps=4),
        internals=internals,
    )


@pytest.fixture(scope="module")
def looked(explainer):
    return explainer.explain(_request(LOOK))


@pytest.fixture(scope="module")
def topk(explainer):
    return explainer.explain(_request(TOPK))


def _decoded(request: ExplainRequest, wire: str, float16: bool = False) -> Decoded:
    return Decoded(kind="explain", request=request, wire=wire, float16=float16)  # type: ignore[arg-type]


def _reply(data: bytes | dict) -> pb.ExplainResponse:
    message = pb.ExplainResponse()
    if isinstance(data, dict):
        json_format.ParseDict(json.loads(json.dumps(data)), message)  # through JSON text, as a client gets it
    else:
        message.ParseFromString(data)
    return message


def _assert_same(got: InternalsResult, want: InternalsResult, *, float16: bool = False) -> None:
    """Integers and float16 activations exactly; floats exactly, or to float16 precision."""
    assert got.n_layers == want.n_layers
    for part in ("layer_predictions", "token_rankings", "watch", "activations", "nmf"):
        a, b = getattr(got, part), getattr(want, part)
        assert (a is None) == (b is None), part
        if b is None:
            continue
        for field in dataclasses.fields(b):
            x, y = getattr(a, field.name), getattr(b, field.name)
            if not isinstance(y, np.ndarray):
                assert x == pytest.approx(y) if isinstance(y, float) else x == y, f"{part}.{field.name}"
            elif y.dtype.kind in "iu" or y.dtype == np.float16:
                np.testing.assert_array_equal(x, y, err_msg=f"{part}.{field.name}")
                assert x.dtype == y.dtype or y.dtype.kind in "iu", f"{part}.{field.name}"
            elif float16:
                np.testing.assert_allclose(x, y, rtol=F16_RTOL, atol=F16_ATOL, err_msg=f"{part}.{field.name}")
            else:
                np.testing.assert_array_equal(x, y.astype(np.float32), err_msg=f"{part}.{field.name}")


@pytest.mark.parametrize("wire", ["json", "proto"])
@pytest.mark.parametrize("float16", [False, True])
@pytest.mark.parametrize("which", ["looked", "topk"])
def test_internals_round_trip(request, which: str, wire: str, float16: bool) -> None:
    explanation = request.getfixturevalue(which)
    assert explanation.internals is not None
    reply = encode_explanation(explanation, _decoded(_request(LOOK), wire, float16), model_name="tiny")
    _assert_same(from_internals_result(_reply(reply).internals), explanation.internals, float16=float16)


def test_layer_predictions_are_one_matrix_per_position(looked) -> None:
    internals = to_internals_result(looked.internals)
    lens = looked.internals.layer_predictions
    assert [p.position for p in internals.layer_predictions.predictions] == list(lens.positions)
    first = internals.layer_predictions.predictions[0]
    assert (first.token_ids.rows, first.token_ids.cols) == (looked.internals.n_layers + 1, 4)  # (lens layers, top_k)
    assert (first.probabilities.rows, first.probabilities.cols) == (looked.internals.n_layers + 1, 4)
    assert list(first.token_ids.values) == lens.token_ids[0].ravel().tolist()  # row-major
    # the lens positions default to the positions that predicted each generated token (t - 1)
    assert lens.positions == tuple(range(looked.generation.prompt_length - 1, len(looked.generation.tokens) - 1))


def test_full_activations_are_float16_bytes(looked) -> None:
    acts = looked.internals.activations
    n_values = acts.values.size
    message = to_internals_result(looked.internals).activations
    assert [layer.layer for layer in message.layers] == list(acts.layers)
    for layer in message.layers:
        assert not layer.values.values and len(layer.values.float16_values) == 2 * layer.values.rows * layer.values.cols
        assert not layer.HasField("top_neurons") and not layer.HasField("top_values")
    assert message.order == pb.ACTIVATION_ORDER_UNSPECIFIED
    size = message.ByteSize()
    assert 2 * n_values <= size <= 2 * n_values + 64 * len(acts.layers) + 8 * len(acts.positions)  # ~2 bytes each


def test_top_activations_are_packed_indices_and_values(topk) -> None:
    acts = topk.internals.activations
    message = to_internals_result(topk.internals).activations
    assert message.order == pb.MAGNITUDE and list(message.positions) == [2, 5]
    (layer,) = message.layers
    assert layer.layer == 1 and not layer.HasField("values")
    assert (layer.top_neurons.rows, layer.top_neurons.cols) == (2, 6)
    assert list(layer.top_neurons.values) == acts.top_indices[0].ravel().tolist()
    magnitudes = np.abs(np.asarray(layer.top_values.values).reshape(2, 6))
    assert (np.diff(magnitudes, axis=1) <= 0).all()  # largest magnitude first


def test_nmf_and_watch_encoding(looked, topk) -> None:
    nmf = to_internals_result(topk.internals).nmf
    assert list(nmf.layers) == [0, 1] and (nmf.token_strengths.rows, nmf.token_strengths.cols) == (
        2,
        len(nmf.positions),
    )
    assert (nmf.top_layers.rows, nmf.top_layers.cols) == (2, 3) and set(nmf.top_layers.values) <= {0, 1}
    watch = to_internals_result(looked.internals).watch
    assert watch.position == looked.generation.prompt_length - 1  # default: predicts the first generated token
    assert len(watch.token_ids) == 3 and watch.token_ids[2] == 5
    assert (watch.ranks.rows, watch.ranks.cols) == (3, looked.internals.n_layers + 1)


def test_token_texts_name_every_id_when_given_the_tokenizer(looked, explainer) -> None:
    plain = to_internals_result(looked.internals)
    assert not plain.token_texts
    named = to_internals_result(looked.internals, tokenizer=explainer.tokenizer)
    ids = set(np.unique(looked.internals.layer_predictions.token_ids).tolist())
    ids |= set(looked.internals.token_rankings.token_ids) | set(looked.internals.watch.token_ids)
    assert set(named.token_texts) == ids
    assert named.token_texts[looked.internals.watch.token_ids[0]] == " is"
    assert all(named.token_texts[i] == explainer.tokenizer.decode([i]) for i in ids)
    reply = encode_explanation(
        looked, _decoded(_request(LOOK), "json"), model_name="tiny", tokenizer=explainer.tokenizer
    )
    assert reply["internals"]["token_texts"][str(looked.internals.watch.token_ids[0])] == " is"  # JSON map keys


def test_json_reply_shape(looked) -> None:
    reply = encode_explanation(looked, _decoded(_request(LOOK), "json"), model_name="tiny")
    internals = reply["internals"]
    assert set(internals) == {"n_layers", "layer_predictions", "token_rankings", "watch", "activations", "token_texts"}
    assert "nmf" not in internals  # not asked: absent
    values = internals["activations"]["layers"][0]["values"]
    assert values["values"] == [] and isinstance(values["float16_values"], str)  # base64
    no_internals = encode_explanation(
        dataclasses.replace(looked, internals=None), _decoded(_request(LOOK), "json"), model_name="tiny"
    )
    assert "internals" not in no_internals


def test_stream_summary_carries_the_internals(looked) -> None:
    event = pb.StreamEvent.FromString(encode_stream_summary(looked, _decoded(_request(LOOK), "proto"), model_name="t"))
    assert event.explain_summary.internals.layer_predictions.predictions


def test_large_values_fall_back_to_float32_when_float16_cannot_hold_them(topk) -> None:
    acts = topk.internals.activations
    huge = dataclasses.replace(acts, top_values=acts.top_values * 0 + 1e6)
    message = to_internals_result(dataclasses.replace(topk.internals, activations=huge), float16=True)
    assert not message.activations.layers[0].top_values.float16_values
    assert message.activations.layers[0].top_values.values[0] == 1e6


# ---- requests -----------------------------------------------------------------------------------
FULL = InternalsParams(
    layer_predictions=True,
    top_k=7,
    positions=(1, 3),
    token_rankings=True,
    watch=(" Paris", 42),
    watch_position=2,
    activations=True,
    activation_layers=(0,),
    activation_positions=(0, 4),
    activation_top_k=3,
    activation_order="magnitude",
    nmf_components=2,
    nmf_layers=(1,),
    nmf_top_neurons=4,
    interventions=(Intervention(1, 2, "set", 0.5), Intervention(0, 7, "scale", -1.0)),
)


@pytest.mark.parametrize("params", [InternalsParams(), FULL, TOPK, LOOK])
def test_request_round_trip(params: InternalsParams) -> None:
    assert decode_internals(to_proto_internals(params)) == params
    request = _request(params)
    for wire in ("json", "proto"):
        message = to_proto_request(request)
        body = json_format.MessageToDict(message) if wire == "json" else message.SerializeToString()
        assert decode_request(body, url_kind="explain").request == request


def test_json_request_with_enum_names_in_any_case() -> None:
    body = {
        "prompt": "x",
        "internals": {
            "layerPredictions": True,
            "watch": [{"text": " Paris"}, {"id": 42}],
            "activations": True,
            "activation_top_k": 5,
            "activation_order": "magnitude",
            "interventions": [{"layer": 1, "neuron": 2, "mode": "scale", "value": 0.5}, {"layer": 0, "neuron": 1}],
        },
    }
    internals = decode_request(body, url_kind="explain").request.internals
    assert internals.layer_predictions and internals.watch == (" Paris", 42)
    assert internals.activation_order == "magnitude" and internals.activation_top_k == 5
    assert internals.interventions == (Intervention(1, 2, "scale", 0.5), Intervention(0, 1, "set", 0.0))


def test_attribution_skip_computes_none(explainer) -> None:
    body = {"prompt": PROMPT, "attribution": {"skip": True}, "internals": {"layer_predictions": True, "top_k": 2}}
    decoded = decode_request(body, url_kind="explain")
    assert decoded.request.attribution.methods == ()
    reply = _reply(encode_explanation(explainer.explain(decoded.request), decoded, model_name="tiny"))
    assert not reply.attributions and reply.internals.layer_predictions.predictions
    # the server default: occlusion, the most faithful method measured (docs/faithfulness.md)
    assert decode_request({"prompt": "x"}, url_kind="explain").request.attribution.methods == ("occlusion",)


def test_enum_tables_are_complete() -> None:
    MODES = {n: engine_enum(n, pb.InterventionMode.DESCRIPTOR, str, "test") for n in pb.InterventionMode.values() if n}
    ORDERS = {n: engine_enum(n, pb.ActivationOrder.DESCRIPTOR, str, "test") for n in pb.ActivationOrder.values() if n}
    assert sorted(MODES.values()) == sorted(INTERVENTION_MODES)
    assert sorted(ORDERS.values()) == sorted(ACTIVATION_ORDERS)
    assert set(MODES) == {v.number for v in pb.InterventionMode.DESCRIPTOR.values if v.number}
    assert set(ORDERS) == {v.number for v in pb.ActivationOrder.DESCRIPTOR.values if v.number}


def test_every_internals_param_has_a_wire_field() -> None:
    wire = {f.name for f in pb.InternalsParams.DESCRIPTOR.fields}
    assert wire == {f.name for f in dataclasses.fields(InternalsParams)}
