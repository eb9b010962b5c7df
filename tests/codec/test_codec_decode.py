"""Wire request -> engine request: every field survives both wires, defaults, and errors naming the field."""

from __future__ import annotations

import dataclasses
import json

import pytest
from google.protobuf import json_format
from wire_inverse import to_proto_request

from ecco_codec import decode_request
from ecco_codec.fields import ONEOFS, OVERRIDES, WIRE_ONLY, engine_enum
from ecco_engine import (
    Aggregation,
    AttributionParams,
    CharSpan,
    ChatMessage,
    ExplainRequest,
    GenerationParams,
    GroupingParams,
    Integration,
    InvalidRequest,
    TargetKind,
)
from ecco_engine.faithfulness_types import FaithfulnessParams, Perturbation
from ecco_engine.internals import InternalsParams, Intervention
from ecco_engine.types import Precision
from ecco_proto.ecco.v1 import ecco_pb2 as pb

FULL_PROMPT = ExplainRequest(
    prompt="The capital of France is",
    continuation=" Paris.",
    generation=GenerationParams(
        max_new_tokens=7, do_sample=True, temperature=0.7, top_k=5, top_p=0.9, seed=2**40 + 3, stop=(".", "\n")
    ),
    attribution=AttributionParams(
        methods=("grad_x_input", "integrated_gradients"),
        target=TargetKind.CONTRASTIVE,
        contrast_token=" Rome",
        n_steps=12,
        integration=Integration.RIEMANN_TRAPEZOID,
        baseline="zero",
        aggregation=Aggregation.SUM,
        positions=(2, 0),
        completeness_tolerance=0.015,
        max_n_steps=96,
        precision=Precision.BFLOAT16,
        n_samples=12,
        sampling_seed=2**32 - 1,
        stdevs=0.25,
        faithfulness=FaithfulnessParams(
            fractions=(0.1, 0.3), perturbation=Perturbation.REPLACEMENT, replacement_token="bos", aopc_steps=5
        ),
    ),
)
FULL_CHAT = ExplainRequest(
    messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "Capital of Italy?")),
    generation=GenerationParams(max_new_tokens=2, seed=-1),
    attribution=AttributionParams(
        target="contrastive", contrast_token=17, integration="riemann_left", precision="float16"
    ),
)
FULL_REPLAY = ExplainRequest(
    messages=(ChatMessage("user", "Capital of Italy?"),),
    continuation_ids=(5, 9, 11),
    generation=GenerationParams(top_n_tokens=3),
    attribution=AttributionParams(target="contrastive", contrast_tokens=(" Rome", 17, 4), positions=(2, 0, 1)),
    grouping=GroupingParams(unit="spans", spans=(CharSpan(0, 3), CharSpan(5, 9)), keep_special=True),
)
FULL = [
    pytest.param(FULL_PROMPT, id="prompt"),
    pytest.param(FULL_CHAT, id="chat"),
    pytest.param(FULL_REPLAY, id="replay"),
]


def _json(message: pb.ExplainRequest, *, camel: bool) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=not camel)


@pytest.mark.parametrize("request_", FULL)
@pytest.mark.parametrize("kind", ["generate", "explain"])
def test_every_field_survives_json_and_binary(request_: ExplainRequest, kind: str) -> None:
    message = to_proto_request(request_, kind, float16=True)
    bodies = {
        "json-snake": (_json(message, camel=False), None),
        "json-camel-text": (json.dumps(_json(message, camel=True)), "application/json; charset=utf-8"),
        "json-bytes": (json.dumps(_json(message, camel=False)).encode(), None),
        "proto": (message.SerializeToString(), "application/x-protobuf"),
        "proto-sniffed": (message.SerializeToString(), None),
    }
    for name, (body, content_type) in bodies.items():
        decoded = decode_request(body, content_type=content_type)
        assert decoded.request == request_, name
        assert (decoded.kind, decoded.float16) == (kind, True), name
        assert decoded.wire == ("proto" if name.startswith("proto") else "json"), name


@pytest.mark.parametrize("stream", [False, True])
def test_stream_flag_survives_json_and_binary(stream: bool) -> None:
    message = to_proto_request(ExplainRequest(prompt="x"), "generate", stream=stream)
    assert message.HasField("stream") == stream  # only set when asked for
    for body in (
        message.SerializeToString(),
        json_format.MessageToDict(message),
        json.dumps({"prompt": "x", "stream": stream}),
    ):
        decoded = decode_request(body)
        assert decoded.stream is stream and decoded.request == ExplainRequest(prompt="x")


def test_stream_flag_must_be_a_boolean() -> None:
    assert "true or false" in str(_invalid({"prompt": "x", "stream": "yes"}, "stream"))


def test_json_body_as_written_by_hand() -> None:
    body = {
        "prompt": "Hi",
        "generation": {"maxNewTokens": "3", "stop": ["!"]},  # quoted int64/int32 are proto3 JSON too
        "attribution": {"methods": ["saliency"], "target": "log_probability", "aggregation": "l2", "positions": [1]},
    }
    decoded = decode_request(body, url_kind="explain")
    assert decoded.request == ExplainRequest(
        prompt="Hi",
        generation=GenerationParams(max_new_tokens=3, stop=("!",)),
        attribution=AttributionParams(
            methods=("saliency",), target=TargetKind.LOG_PROBABILITY, aggregation=Aggregation.L2, positions=(1,)
        ),
    )
    assert (decoded.kind, decoded.wire, decoded.float16) == ("explain", "json", False)


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "x"},
        {"prompt": "x", "generation": {}, "attribution": {}, "messages": [], "float16": False},
        {"prompt": "x", "generation": {"max_new_tokens": None}, "continuation": None},
        pb.ExplainRequest(prompt="x").SerializeToString(),
        pb.ExplainRequest(prompt="x", generation=pb.GenerationParams(), kind=pb.EXPLAIN).SerializeToString(),
    ],
)
def test_omitted_fields_give_engine_defaults(body) -> None:
    decoded = decode_request(body)
    assert decoded.request == ExplainRequest(prompt="x")
    assert decoded.float16 is False and decoded.stream is False


def test_enum_tables_cover_both_sides() -> None:
    for engine_type, proto_enum in [
        (TargetKind, pb.TargetKind),
        (Aggregation, pb.Aggregation),
        (Integration, pb.Integration),
        (Precision, pb.Precision),
        (Perturbation, pb.Perturbation),
    ]:
        table = {n: engine_enum(n, proto_enum.DESCRIPTOR, engine_type, "test") for n in proto_enum.values() if n != 0}
        assert set(table.values()) == set(engine_type)
        assert set(table) == {v for v in proto_enum.values() if v != 0}


@pytest.mark.parametrize(
    ("url_kind", "body_kind", "expected"),
    [
        (None, None, "generate"),  # gRPC without kind: generate, as REST /predictions
        (None, "EXPLAIN", "explain"),
        (None, "GENERATE", "generate"),
        ("explain", None, "explain"),
        ("generate", None, "generate"),
        ("explain", "explain", "explain"),
        ("generate", "REQUEST_KIND_UNSPECIFIED", "generate"),
    ],
)
def test_kind_from_url_and_body(url_kind, body_kind, expected) -> None:
    body = {"prompt": "x"} | ({"kind": body_kind} if body_kind else {})
    assert decode_request(body, url_kind=url_kind).kind == expected


def _invalid(body, field: str, *, content_type: str | None = None, url_kind: str | None = None) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        decode_request(body, content_type=content_type, url_kind=url_kind)
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(f"{field}: ")
    return info.value


BAD_JSON = [
    # unknown / typo fields, at every depth
    ({"prompt": "x", "max_new_tokens": 3}, "max_new_tokens", "unknown field"),
    ({"prompt": "x", "generation": {"max_new_token": 3}}, "generation.max_new_token", "did you mean 'max_new_tokens'"),
    ({"prompt": "x", "attribution": {"method": ["saliency"]}}, "attribution.method", "did you mean 'methods'"),
    ({"prompt": "x", "messages": [{"role": "u", "contnt": "c"}]}, "messages[0].contnt", "unknown field"),
    # wrong JSON types
    ({"prompt": 3}, "prompt", "must be a string"),
    ({"prompt": "x", "generation": {"max_new_tokens": "abc"}}, "generation.max_new_tokens", "must be an integer"),
    ({"prompt": "x", "generation": {"max_new_tokens": 3.5}}, "generation.max_new_tokens", "must be an integer"),
    ({"prompt": "x", "generation": {"max_new_tokens": True}}, "generation.max_new_tokens", "must be an integer"),
    ({"prompt": "x", "generation": {"max_new_tokens": 2**31}}, "generation.max_new_tokens", "-2147483648..2147483647"),
    ({"prompt": "x", "generation": {"temperature": "hot"}}, "generation.temperature", "must be a number"),
    ({"prompt": "x", "generation": {"do_sample": "yes"}}, "generation.do_sample", "true or false"),
    ({"prompt": "x", "generation": []}, "generation", "must be a JSON object"),
    ({"prompt": "x", "generation": {"stop": "."}}, "generation.stop", "must be an array"),
    ({"prompt": "x", "messages": "hi"}, "messages", "must be an array"),
    ({"prompt": "x", "attribution": {"positions": [1, "a"]}}, "attribution.positions[1]", "must be an integer"),
    ({"prompt": "x", "attribution": {"target": "probabilty"}}, "attribution.target", "must be one of PROBABILITY"),
    ({"prompt": "x", "attribution": {"target": 9}}, "attribution.target", "must be one of"),
    ({"prompt": "x", "float16": 1}, "float16", "true or false"),
    # the same field twice, two members of a oneof
    ({"prompt": "x", "generation": {"max_new_tokens": 1, "maxNewTokens": 2}}, "generation.max_new_tokens", "twice"),
    (
        {"prompt": "x", "attribution": {"contrast_token": "a", "contrast_token_id": 3}},
        "attribution.contrast",
        "only one of",
    ),
    # engine-level validation, reported with the wire path
    ({"prompt": "x", "generation": {"max_new_tokens": 0}}, "generation.max_new_tokens", "at least 1"),
    ({"prompt": "x", "generation": {"temperature": 0}}, "generation.temperature", "0.0001..100"),
    ({"prompt": "x", "generation": {"top_p": 0}}, "generation.top_p", "(0, 1]"),
    ({"prompt": "x", "generation": {"stop": [""]}}, "generation.stop", "non-empty"),
    ({"prompt": "x", "attribution": {"methods": ["saliency", "saliency"]}}, "attribution.methods", "twice"),
    ({"prompt": "x", "attribution": {"n_steps": 0}}, "attribution.n_steps", ">= 1"),
    ({"prompt": "x", "attribution": {"n_steps": 8, "max_n_steps": 4}}, "attribution.max_n_steps", ">= n_steps"),
    ({"prompt": "x", "attribution": {"baseline": "noise"}}, "attribution.baseline", "must be one of zero"),
    ({"prompt": "x", "attribution": {"target": "CONTRASTIVE"}}, "attribution.contrast_token", "required"),
    ({"prompt": "x", "attribution": {"contrast_token": "a"}}, "attribution.contrast_token", "only meaningful"),
    ({"prompt": "x", "attribution": {"positions": [-1]}}, "attribution.positions", ">= 0"),
    ({"prompt": "x", "attribution": {"completeness_tolerance": 0}}, "attribution.completeness_tolerance", "must be in"),
    ({"prompt": "x", "attribution": {"n_samples": 0}}, "attribution.n_samples", ">= 1"),
    ({"prompt": "x", "attribution": {"sampling_seed": -1}}, "attribution.sampling_seed", "0..4294967295"),
    ({"prompt": "x", "attribution": {"stdevs": -1}}, "attribution.stdevs", "must be in"),
    ({"messages": [{"role": "", "content": "c"}]}, "messages[0].role", "non-empty"),
    ({"prompt": "x", "messages": [{"role": "user", "content": "c"}]}, "prompt", "exactly one"),
    ({}, "prompt", "exactly one"),
    ({"prompt": ""}, "prompt", "non-empty"),
    ({"prompt": "x", "continuation": ""}, "continuation", "non-empty"),
    # the body as a whole
    ("{not json", "body", "not valid JSON"),
    ("[1, 2]", "body", "must be a JSON object"),
    (b"{\xff}", "body", "not valid UTF-8"),
    ("", "body", "empty"),
]


@pytest.mark.parametrize(("body", "field", "words"), BAD_JSON, ids=[f"{i}-{c[1]}" for i, c in enumerate(BAD_JSON)])
def test_bad_json_is_invalid_request_naming_the_field(body, field: str, words: str) -> None:
    error = _invalid(body, field)
    assert words in str(error)


def test_kind_disagreeing_with_url_is_invalid() -> None:
    error = _invalid({"prompt": "x", "kind": "GENERATE"}, "kind", url_kind="explain")
    assert "GENERATE" in str(error) and "explain" in str(error)
    _invalid(pb.ExplainRequest(prompt="x", kind=pb.EXPLAIN).SerializeToString(), "kind", url_kind="generate")


def test_bad_binary_bodies() -> None:
    _invalid(b"\x0a\xff\xff", "body", content_type="application/x-protobuf")  # truncated length-delimited
    _invalid(b"\x12\x02\xc3\x28", "body", content_type="application/octet-stream")  # invalid UTF-8 string
    good = pb.ExplainRequest(prompt="x", generation=pb.GenerationParams(max_new_tokens=2)).SerializeToString()
    # an unknown field number (a newer client's field) at the top and nested in generation
    error = _invalid(good + b"\xa0\x06\x01", "body", content_type="application/x-protobuf")  # field 100, varint
    assert "field number 100" in str(error)
    nested = pb.ExplainRequest(prompt="x").SerializeToString() + b"\x2a\x03\xa0\x06\x01"  # generation{field 100}
    _invalid(nested, "generation", content_type="application/x-protobuf")
    unknown_enum = pb.ExplainRequest(prompt="x", attribution=pb.AttributionParams(target=9)).SerializeToString()
    _invalid(unknown_enum, "attribution.target")
    _invalid(pb.ExplainRequest(prompt="x", kind=7).SerializeToString(), "kind")


def test_faithfulness_by_hand_and_its_errors() -> None:
    body = {"prompt": "x", "attribution": {"faithfulness": {}}}
    assert decode_request(body).request.attribution.faithfulness == FaithfulnessParams()
    body = {"prompt": "x", "attribution": {"faithfulness": {"fractions": [0.5], "perturbation": "REPLACEMENT"}}}
    params = decode_request(body).request.attribution.faithfulness
    assert params == FaithfulnessParams(fractions=(0.5,), perturbation=Perturbation.REPLACEMENT)
    assert params.replacement == "eos"
    _invalid({"prompt": "x", "attribution": {"faithfulness": {"fractions": [2]}}}, "attribution.faithfulness.fractions")
    bad_token = {"faithfulness": {"replacement_token": "eos"}}  # with the default perturbation, deletion
    _invalid({"prompt": "x", "attribution": bad_token}, "attribution.faithfulness.replacement_token")


def test_content_types() -> None:
    _invalid(b"<xml/>", "content-type", content_type="application/xml")
    _invalid({"prompt": "x"}, "content-type", content_type="application/x-protobuf")
    assert decode_request(b' \n{"prompt": "x"}').wire == "json"  # sniffed
    assert decode_request('{"prompt": "x"}', content_type="text/plain").wire == "json"
    with pytest.raises(ValueError, match="url_kind"):
        decode_request({"prompt": "x"}, url_kind="predict")


REQUEST_TYPES = {
    "ecco.v1.ExplainRequest": ExplainRequest,
    "ecco.v1.GenerationParams": GenerationParams,
    "ecco.v1.AttributionParams": AttributionParams,
    "ecco.v1.FaithfulnessParams": FaithfulnessParams,
    "ecco.v1.ChatMessage": ChatMessage,
    "ecco.v1.GroupingParams": GroupingParams,
    "ecco.v1.CharSpan": CharSpan,
    "ecco.v1.InternalsParams": InternalsParams,
    "ecco.v1.Intervention": Intervention,
}


def test_every_request_field_is_mapped_by_name_or_declared() -> None:
    """A request field is decoded by name into the engine field of the same name; the rest is declared in
    ``ecco_codec.fields`` (wire-only, a oneof, an override), so nothing is silently dropped."""
    for full_name, engine_type in REQUEST_TYPES.items():
        engine = {f.name for f in dataclasses.fields(engine_type)}
        for field in pb.DESCRIPTOR.message_types_by_name[full_name.rsplit(".", 1)[1]].fields:
            oneof = field.containing_oneof
            declared = field.full_name in WIRE_ONLY or field.full_name in OVERRIDES
            declared = declared or (oneof is not None and oneof.full_name in ONEOFS)
            assert declared or field.name in engine, field.full_name
            if field.message_type is not None and not declared:
                assert field.message_type.full_name in REQUEST_TYPES, field.full_name
