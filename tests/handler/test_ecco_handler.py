"""The TorchServe handler with TorchServe's own ``Context`` (no server): rows, kinds, per-row status.

The rows and headers are shaped as TorchServe 0.12 hands them over with ``decode_input_request=false``
(measured; see handlers/ecco_handler.py): REST rows carry HTTP headers, ``explain`` and (except on the
KServe v1 path) ``url_path``; gRPC rows carry none.
"""

from __future__ import annotations

import json
import logging

import ecco_handler
import pytest
from ts.context import Context, RequestProcessor
from ts.utils.util import PredictionException

from ecco_proto.ecco.v1 import ecco_pb2 as pb
from tiny_models import tiny_model, tiny_tokenizer

LIMITS = {"max_new_tokens": 8, "internals": {"max_watch": 2}}  # as model-config.yaml nests them
EXPLAIN = {"prompt": "The capital", "generation": {"max_new_tokens": 2}, "attribution": {"n_steps": 4}}
GENERATE = {"prompt": "The capital", "generation": {"max_new_tokens": 2}}


def rest_row(fields: dict, *, explain: bool = False, kserve: bool = False) -> tuple[dict, dict]:
    headers = {"Content-Type": "application/json", "explain": "True" if explain else "False"}
    if not kserve:
        headers["url_path"] = ""
    return {"body": bytearray(json.dumps(fields).encode())}, headers


def grpc_row(fields: dict, kind: int = pb.GENERATE, key: str = "body") -> tuple[dict, dict]:
    message = pb.ExplainRequest(kind=kind)
    message.MergeFrom(pb.ExplainRequest.FromString(_proto(fields)))
    return {key: bytearray(message.SerializeToString())}, {key: {"content-type": ""}}


def _proto(fields: dict) -> bytes:
    from google.protobuf import json_format

    return json_format.ParseDict(fields, pb.ExplainRequest()).SerializeToString()


@pytest.fixture(scope="module")
def handler(tmp_path_factory) -> ecco_handler.EccoHandler:
    archive = tmp_path_factory.mktemp("archive")
    tiny_model("llama").save_pretrained(archive / "model")
    tiny_tokenizer().save_pretrained(archive / "model")
    settings = {"handler": {"limits": LIMITS, "grpc_stream": True}}  # the stream tests below need gRPC streams
    context = Context("tiny", str(archive), {}, 4, None, "0.12.0", model_yaml_config=settings)
    service = ecco_handler.EccoHandler()
    service.initialize(context)
    return service


def run(handler, rows: list[tuple[dict, dict]]) -> tuple[list[bytes], Context]:
    context = Context("tiny", "", {}, len(rows), None, "0.12.0")
    context.request_processor = [RequestProcessor(headers) for _, headers in rows]
    context.request_ids = {i: f"request-{i}" for i in range(len(rows))}
    return handler.handle([data for data, _ in rows], context), context


def test_rest_kind_comes_from_the_url(handler):
    replies, context = run(handler, [rest_row(EXPLAIN, explain=True), rest_row(EXPLAIN)])
    explained, generated = (json.loads(r) for r in replies)
    assert (len(explained["attributions"]) == 1 and "attributions" not in generated) or not generated["attributions"]
    assert [context.get_response_status(i)[0] for i in range(2)] == [200, 200]
    assert context.get_response_content_type(0) == "application/json"
    assert "ts_stream_next" not in context.get_response_headers(0)  # REST: must not be set (hangs)


def test_kserve_v1_body_is_unwrapped_and_the_reply_wrapped(handler):
    replies, _ = run(handler, [rest_row({"instances": [EXPLAIN, EXPLAIN]}, explain=True, kserve=True)])
    explanations = json.loads(replies[0])["explanations"]
    assert len(explanations) == 2 and explanations[0]["tokens"] == explanations[1]["tokens"]


@pytest.mark.parametrize(("max_new_tokens", "status"), [(0, 400), (9, 413)])  # codec / engine errors
def test_kserve_v1_errors_name_the_instance(handler, max_new_tokens, status):
    bad = {"instances": [EXPLAIN, {"prompt": "x", "generation": {"max_new_tokens": max_new_tokens}}]}
    replies, context = run(handler, [rest_row(bad, explain=True, kserve=True)])
    assert context.get_response_status(0)[0] == status
    assert json.loads(replies[0])["message"].startswith("instances[1].generation.max_new_tokens: must be")


def test_grpc_rows_are_binary_and_end_the_stream(handler):
    replies, context = run(handler, [grpc_row(EXPLAIN, pb.EXPLAIN)])
    assert len(pb.ExplainResponse.FromString(replies[0]).attributions) == 1
    assert context.get_response_headers(0)["ts_stream_next"] == "false"  # StreamPredictions needs it


def test_mixed_batch_every_row_its_own_status(handler):
    rows = [
        rest_row(EXPLAIN, explain=True),
        rest_row({"prompt": "x", "generation": {"max_new_tokens": 0}}),
        grpc_row(GENERATE),
        rest_row({"prompt": "x", "generation": {"max_new_tokens": 9}}),
        grpc_row({"prompt": "x", "attribution": {"methods": ["nope"]}}, pb.EXPLAIN),
    ]
    replies, context = run(handler, rows)
    statuses = [context.get_response_status(i)[0] for i in range(len(rows))]
    assert statuses == [200, 400, 200, 413, 200]  # gRPC: TorchServe ignores a row's status, the reply carries it
    assert json.loads(replies[0])["generated_text"]
    assert json.loads(replies[1]) == {
        "code": 400,
        "type": "INVALID_ARGUMENT",
        "message": "generation.max_new_tokens: must be at least 1, got 0",
    }
    assert pb.GenerateResponse.FromString(replies[2]).generated_text
    assert json.loads(replies[3])["type"] == "RESOURCE_EXHAUSTED"
    error = pb.ExplainResponse.FromString(replies[4]).error  # gRPC row: the error travels in the reply
    assert error.code == 3 and error.message.startswith("attribution.methods")  # google.rpc.Code.INVALID_ARGUMENT
    assert context.get_response_headers(4)["ts_stream_next"] == "false"


def test_grpc_error_reply_follows_the_request_wire(handler):
    """A JSON-bytes gRPC request gets a JSON error; undecodable bytes get a serialized one."""
    json_row = ({"body": bytearray(b'{"prompt": "x", "generation": {"max_new_tokens": 0}}')}, {})
    garbage = ({"body": bytearray(b"\xff\xfe garbage")}, {})
    replies, _ = run(handler, [json_row, garbage, grpc_row(GENERATE)])
    assert json.loads(replies[0]) == {
        "error": {"code": 3, "message": "generation.max_new_tokens: must be at least 1, got 0"}
    }
    assert pb.StreamEvent.FromString(replies[1]).error.code == 3
    assert pb.GenerateResponse.FromString(replies[2]).generated_text


def test_limits_nest_internals_and_unknown_names_fail_at_start_up(handler, tmp_path):
    assert handler.explainer.limits.internals.max_watch == 2
    look = {"prompt": "x", "attribution": {"skip": True}, "internals": {"watch": [{"id": i} for i in range(3)]}}
    replies, context = run(handler, [rest_row(look, explain=True)])
    assert context.get_response_status(0)[0] == 413
    assert json.loads(replies[0])["message"].startswith("internals.watch: ") and "max_watch" in replies[0].decode()
    bad = {"handler": {"limits": {"internals": {"max_wach": 2}}}}
    context = Context("tiny", str(tmp_path), {}, 1, None, "0.12.0", model_yaml_config=bad)
    with pytest.raises(ValueError, match=r"internals\.max_wach"):
        ecco_handler.EccoHandler().initialize(context)


def test_explain_reply_names_the_internals_tokens(handler):
    look = {"prompt": "The capital", "attribution": {"skip": True}, "generation": {"max_new_tokens": 1},
            "internals": {"layer_predictions": True, "top_k": 2}}  # fmt: skip
    replies, _ = run(handler, [grpc_row(look, pb.EXPLAIN)])
    internals = pb.ExplainResponse.FromString(replies[0]).internals
    ids = set(internals.layer_predictions.predictions[0].token_ids.values)
    assert ids and ids <= set(internals.token_texts)  # the handler passes the tokenizer to the codec


@pytest.mark.parametrize(("fields", "status"), [
    ({"prompt": "x", "generation": {"max_new_tokens": 0}}, 400),
    ({"prompt": "x", "generation": {"max_new_tokens": 9}}, 413),
])  # fmt: skip
def test_a_lone_grpc_row_raises_for_a_real_grpc_status(handler, fields, status):
    with pytest.raises(PredictionException) as raised:
        run(handler, [grpc_row(fields)])
    assert raised.value.error_code == status and raised.value.message.startswith("generation.max_new_tokens")


def test_a_lone_rest_row_keeps_its_own_status(handler):
    """PredictionException(413) would reach a REST client as 507; per-row status keeps 413."""
    _, context = run(handler, [rest_row({"prompt": "x", "generation": {"max_new_tokens": 9}})])
    assert context.get_response_status(0) == (413, "RESOURCE_EXHAUSTED")


def test_missing_input_key_is_400(handler):
    with pytest.raises(PredictionException) as raised:
        run(handler, [grpc_row(GENERATE, key="request")])
    assert raised.value.error_code == 400 and 'input["body"]' in raised.value.message


def test_internal_error_is_500_with_a_generic_message_and_logged(handler, monkeypatch, caplog):
    def crash(request):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(handler.explainer, "explain", crash)
    with caplog.at_level(logging.ERROR, logger="ecco_handler"):
        replies, context = run(handler, [rest_row(EXPLAIN, explain=True), rest_row(GENERATE)])
    assert context.get_response_status(0)[0] == 500
    assert "secret" not in replies[0].decode() and json.loads(replies[0])["type"] == "INTERNAL"
    assert context.get_response_status(1)[0] == 200  # the other row is served
    assert "secret detail" in caplog.text and "Traceback" in caplog.text  # the server log has it all


@pytest.fixture
def streamed(monkeypatch):
    """Capture what the handler sends as intermediate replies: ``[(row index, payload bytes)]``."""
    sent: list[tuple[int, bytes]] = []

    def capture(ret, req_id_map, message, code, context):
        assert code == 200 and list(ret) == list(req_id_map)  # only the streaming row is addressed
        sent.extend((index, ret[index]) for index in req_id_map)

    monkeypatch.setattr(ecco_handler, "send_intermediate_predict_response", capture)
    return sent


STREAM_EXPLAIN = {
    **EXPLAIN,
    "attribution": {"methods": ["integrated_gradients", "saliency"], "n_steps": 4},
    "stream": True,
}
#: fails after its tokens were streamed: position 5 of 2 generated tokens
FAILS_MID_STREAM = {**EXPLAIN, "attribution": {"positions": [5], "n_steps": 4}, "stream": True}


def test_stream_sends_tokens_then_rows_then_the_summary(handler, streamed):
    replies, context = run(handler, [grpc_row(STREAM_EXPLAIN, pb.EXPLAIN)])
    events = [pb.StreamEvent.FromString(data) for _, data in streamed]
    assert [e.WhichOneof("event") for e in events] == ["token"] * 2 + ["attribution_row"] * 4
    summary = pb.StreamEvent.FromString(replies[0]).explain_summary
    generated = summary.tokens[summary.prompt_length :]
    assert [(e.token.index, e.token.position, e.token.token) for e in events[:2]] == [
        (i, summary.prompt_length + i, t) for i, t in enumerate(generated)
    ]  # same ids, texts and offsets as the final reply
    for event in events[2:]:
        row = event.attribution_row
        full = next(a for a in summary.attributions if a.method == row.method)
        i = list(full.target_positions).index(row.target_position)
        assert list(row.scores.values) == list(full.scores.values[i * full.scores.cols :][: row.scores.cols])
        assert row.target_score == full.target_scores[i]
        if row.method == "integrated_gradients":  # IG's metadata travels with the row
            assert (row.n_steps, row.baseline_score) == (full.n_steps[i], full.baseline_scores[i])
            assert row.convergence_delta == full.convergence_deltas[i]
        else:
            assert not row.HasField("n_steps") and not row.HasField("baseline_score")
    assert context.get_response_headers(0)["ts_stream_next"] == "false"


def test_generate_stream_sends_tokens_then_the_summary(handler, streamed):
    replies, _ = run(handler, [grpc_row({**GENERATE, "stream": True})])
    events = [pb.StreamEvent.FromString(data) for _, data in streamed]
    summary = pb.StreamEvent.FromString(replies[0]).generate_summary
    assert [e.token.token for e in events] == list(summary.tokens[summary.prompt_length :]) and len(events) == 2
    assert (
        summary.generated_text
        == pb.GenerateResponse.FromString(run(handler, [grpc_row(GENERATE)])[0][0]).generated_text
    )


def test_without_the_flag_nothing_is_streamed(handler, streamed):
    replies, _ = run(handler, [grpc_row(EXPLAIN, pb.EXPLAIN)])
    assert not streamed and pb.ExplainResponse.FromString(replies[0]).attributions


def test_grpc_stream_is_refused_by_default(tmp_path, streamed):
    """Without ``handler.grpc_stream`` a gRPC row never streams: a stream on Predictions kills the worker."""
    tiny_model("llama").save_pretrained(tmp_path / "model")
    tiny_tokenizer().save_pretrained(tmp_path / "model")
    default = ecco_handler.EccoHandler()
    default.initialize(Context("tiny", str(tmp_path), {}, 1, None, "0.12.0", model_yaml_config={"handler": {}}))
    with pytest.raises(PredictionException) as raised:
        run(default, [grpc_row({**GENERATE, "stream": True})])
    assert raised.value.error_code == 400 and raised.value.message.startswith("stream: ")
    assert not streamed
    replies, context = run(default, [grpc_row(GENERATE)])  # without the flag: served as before
    assert pb.GenerateResponse.FromString(replies[0]).generated_text
    assert context.get_response_headers(0)["ts_stream_next"] == "false"


def test_rest_stream_is_json_lines(handler, streamed):
    replies, _ = run(handler, [rest_row({**EXPLAIN, "stream": True}, explain=True)])
    lines = [data for _, data in streamed] + [replies[0]]
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    assert [next(iter(json.loads(line))) for line in lines] == [
        "token",
        "token",
        "attribution_row",
        "attribution_row",
        "explain_summary",
    ]


def test_stream_refusals_are_400_naming_stream(handler, streamed):
    binary = (
        {"body": bytearray(_proto({**GENERATE, "stream": True}))},
        {**rest_row(GENERATE)[1], "Content-Type": "application/x-protobuf"},
    )
    kserve = rest_row({"instances": [{**GENERATE, "stream": True}]}, kserve=True)
    replies, context = run(handler, [binary, kserve])
    assert [context.get_response_status(i)[0] for i in range(2)] == [400, 400]
    assert json.loads(replies[0])["message"].startswith("stream: ")
    assert json.loads(replies[1])["message"].startswith("instances[0].stream: ")
    assert not streamed


def test_rest_stream_failing_after_its_tokens_ends_with_an_error_line(handler, streamed):
    replies, context = run(handler, [rest_row(FAILS_MID_STREAM, explain=True), rest_row(GENERATE)])
    assert [next(iter(json.loads(data))) for _, data in streamed] == ["token", "token"]
    assert context.get_response_status(0)[0] == 200  # already sent with the first line
    error = json.loads(replies[0])["error"]
    assert error["code"] == 3 and error["message"].startswith("attribution.positions: ")
    assert replies[0].endswith(b"\n") and json.loads(replies[1])["generated_text"]  # the other row is served


def test_grpc_stream_failing_after_its_tokens(handler, streamed):
    """Alone: the call ends with the status (after the tokens); in a batch: the last message is the error."""
    with pytest.raises(PredictionException) as raised:
        run(handler, [grpc_row(FAILS_MID_STREAM, pb.EXPLAIN)])
    assert raised.value.error_code == 400 and raised.value.message.startswith("attribution.positions")
    assert len(streamed) == 2
    replies, _ = run(handler, [grpc_row(FAILS_MID_STREAM, pb.EXPLAIN), grpc_row(GENERATE)])
    assert pb.StreamEvent.FromString(replies[0]).WhichOneof("event") == "error"
    assert pb.GenerateResponse.FromString(replies[1]).generated_text
