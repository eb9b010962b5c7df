"""Internals errors name the wire path (``internals.…``), at decode time and when the engine raises them.

The ``Explainer`` prefixes the errors of each section it enters (``top_k`` raised by the internals
leaves it as ``internals.top_k``); ``status_for`` only passes the message on.
"""

from __future__ import annotations

import pytest

from ecco_codec import decode_request, status_for
from ecco_engine import EngineLimits, Explainer, InvalidRequest, LimitExceeded
from ecco_engine.internals import InternalsLimits
from ecco_proto.ecco.v1 import ecco_pb2 as pb


def _decode_error(internals: dict, **extra) -> str:
    with pytest.raises(InvalidRequest) as info:
        decode_request({"prompt": "x", "internals": internals, **extra}, url_kind="explain")
    return str(info.value)


@pytest.mark.parametrize(("internals", "path", "text"), [
    ({"top_kk": 3}, "internals.top_kk", "did you mean 'top_k'"),
    ({"top_k": 0}, "internals.top_k", ">= 1"),
    ({"positions": [-1]}, "internals.positions", ">= 0"),
    ({"watch": [{"text": " a"}, {}]}, "internals.watch[1]", "text or its id"),
    ({"watch": [{"text": " a", "id": 3}]}, "internals.watch[0].token", "only one of"),
    ({"watch_position": 2}, "internals.watch_position", "non-empty 'watch'"),
    ({"activation_order": "loudest"}, "internals.activation_order", "VALUE, MAGNITUDE"),
    ({"nmf_layers": [0]}, "internals.nmf_layers", "nmf_components"),
    ({"interventions": [{"layer": 0, "neuron": 1}, {"layer": -1, "neuron": 1}]},
     "internals.interventions[1].layer", ">= 0"),
    ({"interventions": [{"layer": 0, "neuron": 1, "mode": "double"}]}, "internals.interventions[0].mode", "SET"),
    ({"interventions": [{"layer": 0, "neuron": 1, "value": "NaN"}]}, "internals.interventions[0].value", "finite"),
    ({"layer_predictions": "yes"}, "internals.layer_predictions", "true or false"),
])  # fmt: skip
def test_decode_errors_name_the_wire_path(internals: dict, path: str, text: str) -> None:
    message = _decode_error(internals)
    assert message.startswith(f"{path}: ") and text in message, message


def test_binary_unknown_enum_values_name_the_path() -> None:
    body = pb.ExplainRequest(prompt="x", internals=pb.InternalsParams(interventions=[pb.Intervention(mode=7)]))
    with pytest.raises(InvalidRequest, match=r"^internals\.interventions\[0\]\.mode: unknown enum value 7"):
        decode_request(body.SerializeToString(), content_type="application/x-protobuf")
    body = pb.ExplainRequest(prompt="x", internals=pb.InternalsParams(activation_order=9))
    with pytest.raises(InvalidRequest, match=r"^internals\.activation_order: unknown enum value 9"):
        decode_request(body.SerializeToString(), content_type="application/x-protobuf")


def test_skip_with_methods_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match=r"^attribution\.skip: "):
        decode_request({"prompt": "x", "attribution": {"skip": True, "methods": ["saliency"]}}, url_kind="explain")


# ---- errors the engine raises while serving ----------------------------------------------------
SMALL = EngineLimits(internals=InternalsLimits(max_activation_elements=500, max_top_k=8, max_watch=2))


@pytest.fixture(scope="module")
def small(explainer) -> Explainer:
    """The session's tiny model with small internals limits (2 blocks x 128 neurons)."""
    return Explainer(explainer.model, explainer.tokenizer, layout=explainer.layout, limits=SMALL)


def _served_error(explainer: Explainer, body: dict, kind: str = "explain") -> tuple[int, str, str]:
    request = decode_request({"prompt": "The capital", "generation": {"max_new_tokens": 2}, **body}, url_kind=kind)
    run = explainer.explain if kind == "explain" else explainer.generate
    with pytest.raises(InvalidRequest) as info:
        run(request.request)
    return status_for(info.value)


NO_IG = {"attribution": {"skip": True}}


@pytest.mark.parametrize(("body", "status", "path", "text"), [
    ({**NO_IG, "internals": {"layer_predictions": True, "top_k": 9}}, 413, "internals.top_k", "limit max_top_k"),
    ({**NO_IG, "internals": {"activations": True}}, 413, "internals.activations", "max_activation_elements"),
    ({**NO_IG, "internals": {"activations": True, "activation_top_k": 9}}, 413, "internals.activation_top_k",
     "max_top_k"),
    ({**NO_IG, "internals": {"watch": [{"id": 1}, {"id": 2}, {"id": 3}]}}, 413, "internals.watch", "max_watch"),
    ({**NO_IG, "internals": {"layer_predictions": True, "positions": [99]}}, 400, "internals.positions",
     "out of range"),
    ({**NO_IG, "internals": {"watch": [{"text": " is"}, {"text": "France is"}]}}, 400, "internals.watch[1]",
     "tokens"),
    ({**NO_IG, "internals": {"activations": True, "activation_layers": [2]}}, 400, "internals.activation_layers",
     "blocks 0..1"),
    ({"internals": {"interventions": [{"layer": 0, "neuron": 128}]}}, 400, "internals.interventions[0].neuron",
     "0..127"),
    ({"attribution": {"positions": [5], "n_steps": 2}}, 400, "attribution.positions", "out of range"),
])  # fmt: skip
def test_engine_errors_map_to_wire_paths(small, body: dict, status: int, path: str, text: str) -> None:
    got_status, code, message = _served_error(small, body)
    assert got_status == status and code == ("RESOURCE_EXHAUSTED" if status == 413 else "INVALID_ARGUMENT")
    assert message.startswith(f"{path}: ") and text in message, message


def test_interventions_are_checked_on_generate_too(small) -> None:
    body = {"internals": {"interventions": [{"layer": 5, "neuron": 0}]}}
    status, _, message = _served_error(small, body, kind="generate")
    assert status == 400 and message.startswith("internals.interventions[0].layer: ")


@pytest.mark.parametrize(("body", "error", "field", "reason"), [
    ({**NO_IG, "internals": {"layer_predictions": True, "top_k": 9}}, LimitExceeded, "internals.top_k",
     "must be at most 8 (limit max_top_k), got 9"),
    ({**NO_IG, "internals": {"layer_predictions": True, "positions": [99]}}, InvalidRequest, "internals.positions",
     "position 99 is out of range"),
    ({"attribution": {"positions": [5], "n_steps": 2}}, InvalidRequest, "attribution.positions", "index 5 is out"),
    ({"attribution": {"methods": ["lime"]}}, InvalidRequest, "attribution.methods", "unknown attribution method"),
])  # fmt: skip
def test_engine_errors_carry_their_section_apart_from_the_reason(small, body, error, field, reason) -> None:
    """The same name (``top_k``, ``positions``) in two sections: the error itself says which one."""
    request = decode_request({"prompt": "The capital", "generation": {"max_new_tokens": 2}, **body}, url_kind="explain")
    with pytest.raises(error) as info:
        small.explain(request.request)
    assert info.value.field == field and info.value.reason.startswith(reason), str(info.value)
    assert str(info.value) == f"{field}: {info.value.reason}"
