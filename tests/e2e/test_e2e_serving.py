"""REST and gRPC against a real TorchServe: generation, explanation, KServe v1, streaming (gRPC
StreamPredictions and REST JSON lines). Latency is measured, never asserted, by
``benchmarks/serving_overhead.py`` (median per path: in-process, REST, gRPC; ``--model`` any folder).

Served results are compared with the in-process engine on the same model folder (same codec): tokens
exactly, attribution matrices to ``1e-6 * max|value|`` (same CPU kernels; a different thread count
in the worker could reorder float sums). REST and gRPC replies of one server are compared exactly.
"""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
from google.protobuf import json_format

from ecco_codec import from_matrix
from ecco_proto.ecco.v1 import ecco_pb2 as pb
from ts_calls import (
    CHAT_SAMPLED,
    EXPLAIN,
    GENERATE,
    assert_same,
    grpc_predict,
    grpc_stream,
    grpc_stream_until_status,
    in_process,
    reply_message,
    request_message,
    rest,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("kind", "path", "fields"), [
    ("generate", "/predictions/tiny", GENERATE),
    ("generate", "/predictions/tiny", CHAT_SAMPLED),
    ("explain", "/explanations/tiny", EXPLAIN),
])  # fmt: skip
def test_rest_equals_in_process_engine(served, reference, kind, path, fields):
    reply = rest(served, path, fields)
    assert reply.status == 200, reply.body
    assert reply.content_type.startswith("application/json")
    assert_same(reply_message(reply.json()), in_process(reference, kind, fields))


def test_rest_binary_wire_gets_a_binary_reply(served, reference):
    body = request_message("explain", EXPLAIN).SerializeToString()
    reply = rest(served, "/explanations/tiny", body, content_type="application/x-protobuf")
    assert reply.status == 200, reply.body
    assert reply.content_type.startswith("application/x-protobuf")
    assert_same(reply_message(reply.body), in_process(reference, "explain", EXPLAIN))


def test_kserve_v1_explain_path_wraps_the_same_reply(served):
    direct = reply_message(rest(served, "/explanations/tiny", EXPLAIN).json())
    reply = rest(served, "/v1/models/tiny:explain", {"instances": [EXPLAIN, GENERATE]})
    assert reply.status == 200, reply.body
    explanations = reply.json()["explanations"]
    assert reply_message(explanations[0]) == direct
    assert len(explanations) == 2 and len(explanations[1]["attributions"]) == 1  # URL kind: explain
    predicted = rest(served, "/v1/models/tiny:predict", {"instances": [GENERATE]})
    assert predicted.status == 200 and reply_message(predicted.json()["predictions"][0]).generated_text


@pytest.mark.parametrize(("kind", "path", "fields"), [
    ("generate", "/predictions/tiny", GENERATE),
    ("explain", "/explanations/tiny", EXPLAIN),
])  # fmt: skip
def test_grpc_predictions_equal_rest(served, kind, path, fields):
    over_grpc = grpc_predict(served, "tiny", request_message(kind, fields).SerializeToString())
    over_rest = rest(served, path, fields)
    assert over_rest.status == 200
    assert reply_message(over_grpc) == reply_message(over_rest.json())  # exact: same worker, same request


def test_grpc_accepts_proto3_json_bytes_too(served):
    body = b'{"kind": "EXPLAIN", "prompt": "The capital", "generation": {"max_new_tokens": 2}}'
    reply = grpc_predict(served, "tiny", body)
    assert reply.lstrip().startswith(b"{")  # JSON in, JSON out
    assert len(reply_message(reply).attributions) == 1


def test_stream_predictions_without_stream_flag_is_one_message(served):
    """A request that does not ask for a stream gets its whole reply as one message (and the call ends)."""
    body = request_message("explain", EXPLAIN).SerializeToString()
    replies = grpc_stream(served, "tiny", body)
    assert len(replies) == 1
    assert reply_message(replies[0]) == reply_message(grpc_predict(served, "tiny", body))


def _streamed(kind: str, fields: dict) -> bytes:
    message = request_message(kind, fields)
    message.stream = True
    return message.SerializeToString()


def _check_tokens(token_events: list[pb.StreamEvent], summary: pb.ExplainResponse) -> None:
    """Streamed tokens are the summary's generated tokens: index, position, id, text and offsets."""
    generated = summary.tokens[summary.prompt_length :]
    assert [(e.token.index, e.token.position) for e in token_events] == [
        (i, summary.prompt_length + i) for i in range(len(generated))
    ]
    assert [e.token.token for e in token_events] == list(generated)  # pb.Token: id, text, start, end


def _check_rows(row_events: list[pb.StreamEvent], summary: pb.ExplainResponse) -> None:
    """Each streamed row is its token's row of the summary's attribution (exactly: same float32)."""
    seen = set()
    for event in row_events:
        row = event.attribution_row
        full = next(a for a in summary.attributions if a.method == row.method)
        i = list(full.target_positions).index(row.target_position)
        np.testing.assert_array_equal(from_matrix(row.scores)[0], from_matrix(full.scores)[i, : row.target_position])
        assert row.target_score == full.target_scores[i]
        if row.method == "integrated_gradients":
            assert (row.n_steps, row.convergence_delta) == (full.n_steps[i], full.convergence_deltas[i])
        seen.add((row.method, row.target_position))
    assert seen == {(a.method, p) for a in summary.attributions for p in a.target_positions}


def test_stream_predictions_streams_tokens_then_rows_then_summary(served):
    events = [pb.StreamEvent.FromString(data) for data in grpc_stream(served, "tiny", _streamed("explain", EXPLAIN))]
    kinds = [event.WhichOneof("event") for event in events]
    n_tokens, n_rows = 3, 2 * 3  # 3 generated tokens; 2 methods x 3 explained tokens
    assert kinds == ["token"] * n_tokens + ["attribution_row"] * n_rows + ["explain_summary"]
    summary = events[-1].explain_summary
    del summary.timings[:]
    unary = reply_message(grpc_predict(served, "tiny", request_message("explain", EXPLAIN).SerializeToString()))
    assert summary == unary  # exact: same worker, same request
    _check_tokens(events[:n_tokens], summary)
    _check_rows(events[n_tokens:-1], summary)


def test_stream_predictions_of_a_generate_request(served):
    events = [pb.StreamEvent.FromString(data) for data in grpc_stream(served, "tiny", _streamed("generate", GENERATE))]
    assert [e.WhichOneof("event") for e in events] == ["token"] * 5 + ["generate_summary"]
    summary = pb.ExplainResponse.FromString(events[-1].generate_summary.SerializeToString())
    del summary.timings[:]
    assert summary == reply_message(
        grpc_predict(served, "tiny", request_message("generate", GENERATE).SerializeToString())
    )
    _check_tokens(events[:-1], summary)


def test_rest_stream_is_one_json_event_per_line(served):
    """REST with ``"stream": true``: a chunked reply, one proto3-JSON StreamEvent per line, the same events."""
    reply = rest(served, "/explanations/tiny", {**EXPLAIN, "stream": True})
    assert reply.status == 200 and reply.content_type.startswith("application/json"), reply.body
    lines = reply.body.splitlines()
    events = [json_format.Parse(line, pb.StreamEvent()) for line in lines]
    assert [e.WhichOneof("event") for e in events] == ["token"] * 3 + ["attribution_row"] * 6 + ["explain_summary"]
    over_grpc = [pb.StreamEvent.FromString(d) for d in grpc_stream(served, "tiny", _streamed("explain", EXPLAIN))]
    for event in (events[-1], over_grpc[-1]):
        del event.explain_summary.timings[:]
    assert events == over_grpc  # the same events over both transports


@pytest.mark.parametrize(("fields", "text"), [
    ({"prompt": "x", "generation": {"max_new_tokens": 0}}, "generation.max_new_tokens"),
    ({"prompt": "x", "attribution": {"methods": ["nope"]}}, "attribution.methods"),
])  # fmt: skip
def test_stream_with_bad_input_is_refused_before_any_event(served, fields, text):
    received, error = grpc_stream_until_status(served, "tiny", _streamed("explain", fields))
    assert received == [] and error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(text)
    reply = rest(served, "/explanations/tiny", {**fields, "stream": True})
    assert reply.status == 400 and reply.json()["message"].startswith(text)


#: fails after its tokens were streamed: explains generated token 5 of 2
FAILS_AFTER_TOKENS = {
    "prompt": "x",
    "generation": {"max_new_tokens": 2},
    "attribution": {"positions": [5], "n_steps": 4},
}


def test_stream_failing_after_its_tokens(served):
    """gRPC: the tokens, then the call ends with INVALID_ARGUMENT; REST: the tokens, then an error line."""
    received, error = grpc_stream_until_status(served, "tiny", _streamed("explain", FAILS_AFTER_TOKENS))
    assert [pb.StreamEvent.FromString(d).WhichOneof("event") for d in received] == ["token", "token"]
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("attribution.positions: ")
    reply = rest(served, "/explanations/tiny", {**FAILS_AFTER_TOKENS, "stream": True})
    assert reply.status == 200  # sent with the first line
    *tokens, last = [json.loads(line) for line in reply.body.splitlines()]
    assert [next(iter(t)) for t in tokens] == ["token", "token"]
    assert last["error"]["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert last["error"]["message"].startswith("attribution.positions: ")
    # and the worker goes on streaming correctly
    assert len(grpc_stream(served, "tiny", _streamed("generate", GENERATE))) == 6
