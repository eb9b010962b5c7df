"""Engine results -> wire replies, checked against explanations computed by the real engine on a tiny model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, json_format
from wire_inverse import to_proto_request

from ecco_codec import (
    ENGINE_VERSION,
    decode_request,
    encode_error,
    encode_explanation,
    encode_generation,
    encode_stream_row,
    encode_stream_summary,
    encode_stream_token,
    from_matrix,
    status_for,
)
from ecco_codec.encode import Served
from ecco_codec.result_fields import OVERRIDES, WIRE_ONLY, Encoding, to_message
from ecco_engine import (
    Attribution,
    AttributionParams,
    ExplainRequest,
    Explanation,
    GenerationParams,
    GenerationResult,
    LimitExceeded,
    Timing,
    Token,
)
from ecco_engine.attribution import AttributionRow
from ecco_engine.explainer import GeneratedToken
from ecco_engine.faithfulness_types import Faithfulness, FaithfulnessParams
from ecco_engine.grouping import GroupedAttribution, GroupedView, TokenGroup
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
from ecco_engine.tokens import TokenAlternative
from ecco_engine.types import AttributionCost
from ecco_proto.ecco.v1 import ecco_pb2 as pb

#: IEEE half precision: relative rounding error <= 2**-11 for normal numbers, absolute <= 2**-25 below 2**-14
FLOAT16_RTOL, FLOAT16_ATOL = 2.0**-11, 2.0**-24


def _decoded(request, wire: str, *, float16: bool = False, kind: str = "explain"):
    message = to_proto_request(request, kind, float16=float16)
    if wire == "proto":
        return decode_request(message.SerializeToString(), content_type="application/x-protobuf")
    return decode_request(json_format.MessageToDict(message))


def _parse(reply, message_type):
    """A reply (dict for JSON, bytes for proto) back to its message, the way a client would."""
    if isinstance(reply, bytes):
        return message_type.FromString(reply)
    return json_format.Parse(json.dumps(reply), message_type())  # through JSON text, as on the wire


def _assert_exact(explanation: Explanation, reply: pb.ExplainResponse) -> None:
    generation = explanation.generation
    assert [(t.id, t.text, t.start, t.end) for t in reply.tokens] == [
        (t.id, t.text, t.start, t.end) for t in generation.tokens
    ]
    assert reply.prompt_length == generation.prompt_length
    assert reply.generated_text == generation.generated_text
    assert reply.finish_reason == generation.finish_reason
    assert [(t.stage, t.seconds) for t in reply.timings] == [(t.stage, t.seconds) for t in explanation.timings]
    assert (reply.model, reply.engine_version) == ("tiny", ENGINE_VERSION)
    assert len(reply.attributions) == len(explanation.attributions)
    for ours, wire in zip(explanation.attributions, reply.attributions, strict=True):
        assert wire.method == ours.method
        assert pb.TargetKind.Name(wire.target) == ours.target.name
        assert pb.Aggregation.Name(wire.aggregation) == ours.aggregation.name
        assert tuple(wire.target_positions) == ours.target_positions
        assert wire.n_sources == ours.scores.shape[1]
        # float32 on the wire: bit-for-bit the engine's float32 arrays
        assert not wire.scores.float16_values
        np.testing.assert_array_equal(from_matrix(wire.scores), ours.scores.astype(np.float32))
        np.testing.assert_array_equal(np.float32(wire.target_scores), ours.target_scores.astype(np.float32))
        if ours.method == "integrated_gradients":
            np.testing.assert_array_equal(np.float32(wire.baseline_scores), ours.baseline_scores)
            np.testing.assert_array_equal(np.float32(wire.convergence_deltas), ours.convergence_deltas)
            assert tuple(wire.n_steps) == ours.n_steps
            assert wire.baseline == ours.baseline
            assert pb.Integration.Name(wire.integration) == ours.integration.name
        else:
            assert not wire.baseline_scores and not wire.convergence_deltas and not wire.n_steps
            assert wire.integration == pb.INTEGRATION_UNSPECIFIED
            assert (wire.baseline if wire.HasField("baseline") else None) == ours.baseline
        assert not wire.HasField("contrast_token_id")
        assert (wire.n_samples if wire.HasField("n_samples") else None) == ours.n_samples
        assert (wire.sampling_seed if wire.HasField("sampling_seed") else None) == ours.sampling_seed


@pytest.mark.parametrize("wire", ["json", "proto"])
def test_explanation_is_encoded_exactly(explanation, explain_request, wire: str) -> None:
    assert {a.method for a in explanation.attributions} == {"integrated_gradients", "grad_x_input"}
    decoded = _decoded(explain_request, wire)
    reply = encode_explanation(explanation, decoded, model_name="tiny")
    assert isinstance(reply, bytes if wire == "proto" else dict)
    _assert_exact(explanation, _parse(reply, pb.ExplainResponse))


@pytest.mark.parametrize("wire", ["json", "proto"])
def test_sampled_and_forward_only_methods_are_encoded_exactly(explainer, wire: str) -> None:
    """A sampled method reports its samples and seed, a perturbation method its baseline."""
    request = ExplainRequest(
        prompt="The capital of France is",
        generation=GenerationParams(max_new_tokens=2),
        attribution=AttributionParams(
            methods=("kernel_shap", "occlusion", "attention_rollout"), n_samples=4, sampling_seed=7
        ),
    )
    explanation = explainer.explain(request)
    assert [(a.n_samples, a.sampling_seed, a.baseline) for a in explanation.attributions] == [
        (4, 7, "eos"),
        (None, None, "eos"),
        (None, None, None),
    ]
    reply = encode_explanation(explanation, _decoded(request, wire), model_name="tiny")
    _assert_exact(explanation, _parse(reply, pb.ExplainResponse))


def test_json_reply_uses_snake_case_and_prints_every_field(explanation, explain_request) -> None:
    reply = encode_explanation(explanation, _decoded(explain_request, "json"), model_name="tiny")
    fields = pb.ExplainResponse.DESCRIPTOR.fields
    # internals: absent when not asked; cost_estimate (a message): always there
    assert set(reply) == {f.name for f in fields if not f.has_presence} | {"cost_estimate"}
    assert int(reply["cost_estimate"]["backward_token_rows"]) > 0
    saliency_like = reply["attributions"][1]
    assert saliency_like["method"] == "grad_x_input"
    assert saliency_like["baseline_scores"] == [] and "baseline" not in saliency_like  # optional: absent
    assert saliency_like["scores"]["rows"] == len(explanation.attributions[1].target_positions)


@pytest.mark.parametrize("wire", ["json", "proto"])
def test_float16_matrices_decode_within_float16_tolerance(explanation, explain_request, wire: str) -> None:
    reply = _parse(
        encode_explanation(explanation, _decoded(explain_request, wire, float16=True), model_name="tiny"),
        pb.ExplainResponse,
    )
    for ours, wire_attribution in zip(explanation.attributions, reply.attributions, strict=True):
        matrix = wire_attribution.scores
        assert not matrix.values and len(matrix.float16_values) == 2 * ours.scores.size
        np.testing.assert_allclose(from_matrix(matrix), ours.scores, rtol=FLOAT16_RTOL, atol=FLOAT16_ATOL)
        # per-token vectors stay float32 (exact)
        np.testing.assert_array_equal(np.float32(wire_attribution.target_scores), ours.target_scores)


@pytest.mark.parametrize("wire", ["json", "proto"])
def test_generation_reply(explainer, explain_request, wire: str) -> None:
    result = explainer.generate(explain_request)
    decoded = _decoded(explain_request, wire, kind="generate")
    assert decoded.kind == "generate"
    extra = (Timing("handler", 0.25),)
    reply = _parse(encode_generation(result, decoded, model_name="tiny", extra_timings=extra), pb.GenerateResponse)
    assert [t.id for t in reply.tokens] == [t.id for t in result.tokens]
    assert (reply.prompt_length, reply.generated_text, reply.finish_reason) == (
        result.prompt_length,
        result.generated_text,
        result.finish_reason,
    )
    assert [t.stage for t in reply.timings] == [*(t.stage for t in result.timings), "handler"]
    # any reply parses as an ExplainResponse (aligned field numbers), with no attributions
    as_explain = pb.ExplainResponse.FromString(reply.SerializeToString())
    assert list(as_explain.tokens) == list(reply.tokens) and not as_explain.attributions


def test_generate_and_explain_responses_share_field_numbers() -> None:
    generate = {f.name: (f.number, f.type) for f in pb.GenerateResponse.DESCRIPTOR.fields}
    explain = {f.name: (f.number, f.type) for f in pb.ExplainResponse.DESCRIPTOR.fields}
    only_explain = {"attributions", "internals", "cost_estimate", "grouped"}
    assert generate == {k: v for k, v in explain.items() if k not in only_explain}
    shape = descriptor_pb2.DescriptorProto()
    pb.GenerateResponse.DESCRIPTOR.CopyToProto(shape)
    reserved = {n for r in shape.reserved_range for n in range(r.start, r.end)}
    assert {explain[name][0] for name in only_explain} <= reserved  # never reused by GenerateResponse


@pytest.fixture(scope="module")
def stream_events(explainer, explain_request) -> list:
    """The engine's own stream of the conftest request: tokens, rows, then the explanation."""
    return list(explainer.stream(explain_request))


@pytest.mark.parametrize("float16", [False, True])
def test_stream_events_round_trip(stream_events, explain_request, float16: bool) -> None:
    decoded = _decoded(explain_request, "proto", float16=float16)
    tokens = [e for e in stream_events if isinstance(e, GeneratedToken)]
    rows = [e for e in stream_events if isinstance(e, AttributionRow)]
    explanation = stream_events[-1]
    assert isinstance(explanation, Explanation) and len(tokens) == 3 and len(rows) == 2 * 3
    generation = explanation.generation
    for token in tokens:  # index, position, id, text and offsets exactly as the engine streamed them
        event = pb.StreamEvent.FromString(encode_stream_token(token, decoded))
        assert event.WhichOneof("event") == "token"
        got = event.token
        assert (got.index, got.position, got.token.id, got.token.text, got.token.start, got.token.end) == (
            token.index, token.position, token.id, token.text, token.start, token.end,
        )  # fmt: skip
        final = generation.tokens[token.position]  # ... which are those of the final reply
        assert (got.token.id, got.token.text, got.token.start, got.token.end) == (
            final.id, final.text, final.start, final.end,
        )  # fmt: skip
    for row in rows:
        event = pb.StreamEvent.FromString(encode_stream_row(row, decoded))
        got = event.attribution_row
        assert (event.WhichOneof("event"), got.method, got.target_position) == (
            "attribution_row", row.method, row.target_position,
        )  # fmt: skip
        assert (got.scores.rows, got.scores.cols) == (1, row.target_position)
        expected = np.asarray(row.scores, dtype=np.float32)[None, :]
        if float16:
            assert not got.scores.values
            np.testing.assert_allclose(from_matrix(got.scores), expected, rtol=FLOAT16_RTOL, atol=FLOAT16_ATOL)
        else:
            np.testing.assert_array_equal(from_matrix(got.scores), expected)
        assert np.float32(got.target_score) == np.float32(row.target_score)
        is_ig = row.method == "integrated_gradients"
        for name in ("convergence_delta", "baseline_score", "n_steps"):
            assert got.HasField(name) == is_ig, name
        if is_ig:
            assert np.float32(got.convergence_delta) == np.float32(row.convergence_delta)
            assert np.float32(got.baseline_score) == np.float32(row.baseline_score)
            assert got.n_steps == row.n_steps == 4
        # the streamed row is the final attribution's row (its first target_position sources)
        final = explanation.attribution(row.method)
        i = final.target_positions.index(row.target_position)
        np.testing.assert_array_equal(expected[0], final.scores[i, : row.target_position])
    summary = pb.StreamEvent.FromString(encode_stream_summary(explanation, decoded, model_name="tiny"))
    assert summary.WhichOneof("event") == "explain_summary"
    assert summary.explain_summary == pb.ExplainResponse.FromString(
        encode_explanation(explanation, decoded, model_name="tiny")
    )
    generate_summary = pb.StreamEvent.FromString(encode_stream_summary(generation, decoded, model_name="tiny"))
    assert generate_summary.WhichOneof("event") == "generate_summary"


def test_generate_stream_round_trip(explainer, explain_request) -> None:
    decoded = _decoded(explain_request, "json", kind="generate")
    *tokens, result = list(explainer.stream(explain_request, attribute=False))
    assert isinstance(result, GenerationResult)
    events = [_parse(encode_stream_token(t, decoded), pb.StreamEvent) for t in tokens]
    assert [(e.token.position, e.token.token) for e in events] == [
        (result.prompt_length + i, pb.Token(id=t.id, text=t.text, start=t.start, end=t.end, logprob=t.logprob))
        for i, t in enumerate(result.tokens[result.prompt_length :])
    ]
    summary = _parse(encode_stream_summary(result, decoded, model_name="tiny"), pb.StreamEvent)
    assert summary.generate_summary.generated_text == result.generated_text


def test_stream_events_follow_a_json_wire(stream_events, explain_request) -> None:
    decoded = _decoded(explain_request, "json")
    row = next(e for e in stream_events if isinstance(e, AttributionRow))
    event = encode_stream_row(row, decoded)
    assert isinstance(event, dict) and set(event) == {"attribution_row"}
    assert _parse(event, pb.StreamEvent) == pb.StreamEvent.FromString(
        encode_stream_row(row, _decoded(explain_request, "proto"))
    )
    token = encode_stream_token(stream_events[0], decoded)
    assert isinstance(token, dict) and set(token) == {"token"}


@pytest.mark.parametrize("wire", ["json", "proto"])
def test_error_reply_parses_as_every_reply_type(wire: str) -> None:
    _status, code, message = status_for(LimitExceeded("generation.max_new_tokens", "must be at most 32, got 99"))
    reply = encode_error(code, message, wire)
    if wire == "json":
        assert reply == {"error": {"code": 8, "message": "generation.max_new_tokens: must be at most 32, got 99"}}
    for message_type in (pb.GenerateResponse, pb.ExplainResponse, pb.StreamEvent):
        parsed = _parse(reply, message_type)
        assert parsed.error.code == 8  # google.rpc.Code.RESOURCE_EXHAUSTED
        assert parsed.error.message == message
        assert [f.name for f, _ in parsed.ListFields()] == ["error"]  # nothing else is set
    assert pb.StreamEvent.FromString(encode_error("INVALID_ARGUMENT", "x", "proto")).WhichOneof("event") == "error"
    with pytest.raises(ValueError, match=r"google\.rpc\.Code"):
        encode_error("BAD_CODE", "x", wire)


def test_error_field_has_the_same_number_everywhere() -> None:
    numbers = {m.DESCRIPTOR.fields_by_name["error"].number for m in (pb.GenerateResponse, pb.ExplainResponse)}
    assert numbers == {pb.StreamEvent.DESCRIPTOR.fields_by_name["error"].number} == {15}
    assert pb.StreamEvent.DESCRIPTOR.fields_by_name["error"].containing_oneof.name == "event"


@pytest.mark.parametrize("wire", ["json", "proto"])
def test_precision_and_cost_are_encoded(explainer, explain_request, wire: str) -> None:
    attribution = dataclasses.replace(explain_request.attribution, precision="bfloat16")
    request = dataclasses.replace(explain_request, attribution=attribution)
    explanation = explainer.explain(request)
    reply = _parse(encode_explanation(explanation, _decoded(request, wire), model_name="tiny"), pb.ExplainResponse)
    for ours, got in zip(explanation.attributions, reply.attributions, strict=True):
        assert got.precision == pb.BFLOAT16
        assert (got.cost.forward_token_rows, got.cost.backward_token_rows) == (
            ours.cost.forward_token_rows,
            ours.cost.backward_token_rows,
        )
        assert got.cost.backward_token_rows > 0  # gradient methods: backward passes over the targets
    estimate = explanation.cost_estimate
    assert (reply.cost_estimate.forward_token_rows, reply.cost_estimate.backward_token_rows) == (
        estimate.forward_token_rows,
        estimate.backward_token_rows,
    )
    # the estimate bounds the work done (an upper bound, known before generation)
    assert sum(a.cost.token_rows for a in explanation.attributions) <= estimate.token_rows


#: every result message the codec writes -> the engine types whose attributes fill it (in lookup order)
RESULT_TYPES: dict[str, tuple[type, ...]] = {
    "ecco.v1.GenerateResponse": (Served, GenerationResult),
    "ecco.v1.ExplainResponse": (Served, Explanation, GenerationResult),
    "ecco.v1.Token": (Token,),
    "ecco.v1.TokenAlternative": (TokenAlternative,),
    "ecco.v1.GroupedView": (GroupedView,),
    "ecco.v1.TokenGroup": (TokenGroup,),
    "ecco.v1.GroupedAttribution": (GroupedAttribution,),
    "ecco.v1.Timing": (Timing,),
    "ecco.v1.Attribution": (Attribution,),
    "ecco.v1.Cost": (AttributionCost,),
    "ecco.v1.Faithfulness": (Faithfulness,),
    "ecco.v1.GeneratedToken": (GeneratedToken,),
    "ecco.v1.AttributionRow": (AttributionRow,),
    "ecco.v1.InternalsResult": (InternalsResult,),
    "ecco.v1.LayerPredictions": (LayerPredictions,),
    "ecco.v1.TokenRankings": (TokenRankings,),
    "ecco.v1.WatchedTokens": (WatchedTokens,),
    "ecco.v1.NeuronActivations": (NeuronActivations,),
    "ecco.v1.NmfFactors": (NmfFactors,),
    "ecco.v1.SimilarityMatrices": (SimilarityMatrices,),
    "ecco.v1.LayerSimilarity": (LayerSimilarity,),
}


def _attributes(cls: type) -> set[str]:
    """A dataclass's fields and properties: what ``to_message`` reads by name."""
    return {f.name for f in dataclasses.fields(cls)} | {n for n in dir(cls) if isinstance(getattr(cls, n), property)}


def test_every_result_field_is_filled_by_name_or_declared() -> None:
    """A result field is filled from the engine attribute of the same name; the rest is declared in
    ``ecco_codec.result_fields`` (wire-only or an override), so no result field is silently left out."""
    for full_name, engine_types in RESULT_TYPES.items():
        names = set().union(*(_attributes(t) for t in engine_types))
        for field in pb.DESCRIPTOR.message_types_by_name[full_name.rsplit(".", 1)[1]].fields:
            declared = field.full_name in WIRE_ONLY or field.full_name in OVERRIDES
            assert declared or field.name in names, field.full_name
            kind = field.message_type.full_name if field.message_type is not None else None
            if not declared and kind not in (None, "ecco.v1.Matrix", "ecco.v1.IntMatrix"):
                assert kind in RESULT_TYPES, field.full_name


def test_a_result_field_without_a_source_is_an_error() -> None:
    with pytest.raises(TypeError, match=r"ecco\.v1\.Cost\.forward_token_rows has no attribute in Timing"):
        to_message(pb.Cost, Timing("tokenize", 0.1), Encoding())


@pytest.fixture(scope="module")
def faithful_explanation(explainer):
    request = ExplainRequest(
        prompt="The capital of France is",
        generation=GenerationParams(max_new_tokens=2),
        attribution=AttributionParams(
            methods=("occlusion",),
            faithfulness=FaithfulnessParams(fractions=(0.2, 0.5), perturbation="replacement", replacement_token="pad"),
        ),
    )
    return request, explainer.explain(request)


@pytest.mark.parametrize("wire", ["json", "proto"])
def test_faithfulness_is_encoded_exactly(faithful_explanation, wire: str) -> None:
    request, explanation = faithful_explanation
    reply = _parse(encode_explanation(explanation, _decoded(request, wire), model_name="tiny"), pb.ExplainResponse)
    ours = explanation.attributions[0].faithfulness
    assert ours is not None
    f = reply.attributions[0].faithfulness
    assert pb.Perturbation.Name(f.perturbation) == "REPLACEMENT"
    assert (f.replacement_token, f.replacement_token_id) == ("pad", ours.replacement_token_id)
    assert tuple(f.fractions) == ours.fractions == (0.2, 0.5) and f.aopc_steps == ours.aopc_steps
    np.testing.assert_array_equal(from_matrix(f.comprehensiveness), ours.comprehensiveness)
    np.testing.assert_array_equal(from_matrix(f.sufficiency), ours.sufficiency)
    np.testing.assert_array_equal(np.float32(f.aopc), ours.aopc)
    assert (f.mean_comprehensiveness, f.mean_sufficiency, f.mean_aopc) == (
        ours.mean_comprehensiveness,
        ours.mean_sufficiency,
        ours.mean_aopc,
    )
    assert f.forward_token_rows == ours.forward_token_rows > 0


def test_faithfulness_absent_unless_asked(explanation, explain_request) -> None:
    reply = encode_explanation(explanation, _decoded(explain_request, "json"), model_name="tiny")
    assert all("faithfulness" not in a for a in reply["attributions"])
