"""The wire form of issue 12's user-facing options: token log-probs and alternatives, warnings, the
grouped view and per-target contrast ids, exactly as the engine computed them, on JSON and proto."""

from __future__ import annotations

import json

import numpy as np
import pytest
from google.protobuf import json_format
from wire_inverse import to_proto_request

from ecco_codec import decode_request, encode_explanation, encode_generation, encode_stream_token, from_matrix
from ecco_engine import (
    AttributionParams,
    ChatMessage,
    ExplainRequest,
    GeneratedToken,
    GenerationParams,
    GroupingParams,
)
from ecco_proto.ecco.v1 import ecco_pb2 as pb
from tiny_models import tiny_tokenizer


@pytest.fixture(scope="module")
def words_request() -> ExplainRequest:
    tok = tiny_tokenizer()
    split = tok.convert_tokens_to_ids(["Ġ", "c", "a", "p"])  # re-tokenizes to other ids: a warning
    return ExplainRequest(
        messages=(ChatMessage("user", "The capital of France is"),),
        continuation_ids=tuple(split),
        generation=GenerationParams(top_n_tokens=2),
        attribution=AttributionParams(
            methods=("grad_x_input",), target="contrastive", contrast_tokens=(5, 6, 7, 8), aggregation="sum"
        ),
        grouping=GroupingParams(unit="words", keep_special=True),
    )


def _reply(explainer, request: ExplainRequest, wire: str, *, float16: bool = False) -> pb.ExplainResponse:
    message = to_proto_request(request, "explain", float16=float16)
    if wire == "proto":
        decoded = decode_request(message.SerializeToString(), content_type="application/x-protobuf")
    else:
        decoded = decode_request(json.dumps(json_format.MessageToDict(message)), content_type="application/json")
    assert decoded.request == request
    body = encode_explanation(explainer.explain(decoded.request), decoded, model_name="tiny")
    if isinstance(body, bytes):
        return pb.ExplainResponse.FromString(body)
    return json_format.Parse(json.dumps(body), pb.ExplainResponse())


@pytest.mark.parametrize("wire", ["json", "proto"])
def test_words_options_travel_exactly(explainer, words_request, wire: str) -> None:
    ours = explainer.explain(words_request)
    reply = _reply(explainer, words_request, wire)
    assert [t.id for t in reply.tokens[reply.prompt_length :]] == list(words_request.continuation_ids)
    for wire_token, token in zip(reply.tokens, ours.generation.tokens, strict=True):
        assert wire_token.HasField("logprob") == (token.logprob is not None)
        if token.logprob is not None:
            assert np.float32(wire_token.logprob) == np.float32(token.logprob)
        assert [(a.id, a.text, np.float32(a.logprob)) for a in wire_token.top_tokens] == [
            (a.id, a.text, np.float32(a.logprob)) for a in token.top_tokens
        ]
    assert list(reply.warnings) == list(ours.generation.warnings) and reply.warnings[0].startswith("continuation_ids")
    assert list(reply.attributions[0].contrast_token_ids) == [5, 6, 7, 8]
    assert not reply.attributions[0].HasField("contrast_token_id")
    grouped, view = reply.grouped, ours.grouped
    assert pb.GroupUnit.Name(grouped.unit) == "WORDS"
    assert [(g.text, g.start, g.end, tuple(g.positions), g.special, g.generated) for g in grouped.groups] == [
        (g.text, g.start, g.end, g.positions, g.special, g.generated) for g in view.groups
    ]
    (wire_grouped,) = grouped.attributions
    assert wire_grouped.method == "grad_x_input"
    assert tuple(wire_grouped.target_groups) == view.attributions[0].target_groups
    np.testing.assert_array_equal(from_matrix(wire_grouped.scores), view.attributions[0].scores)


def test_grouped_matrices_are_float16_when_asked(explainer, words_request) -> None:
    reply = _reply(explainer, words_request, "proto", float16=True)
    (wire_grouped,) = reply.grouped.attributions
    assert wire_grouped.scores.float16_values and not wire_grouped.scores.values


def test_generate_reply_and_stream_tokens_carry_log_probs(explainer) -> None:
    request = ExplainRequest(prompt="The capital", generation=GenerationParams(max_new_tokens=2, top_n_tokens=1))
    decoded = decode_request(json_format.MessageToDict(to_proto_request(request, "generate")))
    *tokens, result = list(explainer.stream(request, attribute=False))
    reply = json_format.Parse(json.dumps(encode_generation(result, decoded, model_name="tiny")), pb.GenerateResponse())
    generated = reply.tokens[reply.prompt_length :]
    assert all(t.HasField("logprob") and len(t.top_tokens) == 1 for t in generated)
    assert not any(t.HasField("logprob") for t in reply.tokens[: reply.prompt_length])
    for event, token in zip(tokens, generated, strict=True):
        assert isinstance(event, GeneratedToken)
        streamed = json_format.Parse(json.dumps(encode_stream_token(event, decoded)), pb.StreamEvent())
        assert streamed.token.token == token
