"""No request takes a model down, and none outlives its deadline, against a real TorchServe.

TorchServe 0.12's worker cannot tell ``StreamPredictions`` from ``Predictions``; a second message for a
``Predictions`` call made its frontend throw ``IllegalStateException: Stream is already completed``
and drop the worker for good (every later request hung). ``tiny-nan`` keeps the default (gRPC
``stream`` refused); its greedy generation is still deterministic, so "answers correctly" is checked
against the in-process engine on the same folder.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse

import grpc
import pytest
from conftest import LIMITS

from ecco_engine import EngineLimits, Explainer
from ecco_engine.loading import load_model
from ecco_proto.ecco.v1 import ecco_pb2 as pb
from ecco_proto.torchserve import inference_pb2
from ts_calls import (
    EXPLAIN,
    GENERATE,
    assert_same,
    grpc_predict,
    grpc_stream_until_status,
    grpc_stub,
    in_process,
    reply_message,
    request_message,
    rest,
)

pytestmark = pytest.mark.slow  # starts TorchServe, as every e2e test

MODEL = "tiny-nan"  # the default model-config (no grpc_stream)
FOLLOW_UP_TIMEOUT_S = 30.0  # a model taken down hangs; a healthy one answers in well under a second


@pytest.fixture(scope="module")
def reference_nan(model_dirs) -> Explainer:
    model, tokenizer = load_model(model_dirs[MODEL])
    return Explainer(model, tokenizer, limits=EngineLimits.from_mapping(LIMITS))


def _answers_correctly(served, reference_nan) -> None:
    body = request_message("generate", GENERATE).SerializeToString()
    reply = reply_message(grpc_predict(served, MODEL, body, timeout=FOLLOW_UP_TIMEOUT_S))
    assert_same(reply, in_process(reference_nan, "generate", GENERATE))


def test_unary_predictions_with_stream_is_refused_and_the_model_keeps_answering(served, reference_nan):
    """The exact call of issue 13: a unary ``Predictions`` whose ExplainRequest sets ``stream: true``."""
    body = request_message("explain", {**EXPLAIN, "stream": True}).SerializeToString()
    with pytest.raises(grpc.RpcError) as raised:
        grpc_predict(served, MODEL, body, timeout=FOLLOW_UP_TIMEOUT_S)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("stream: not served over gRPC by this model")
    _answers_correctly(served, reference_nan)
    _answers_correctly(served, reference_nan)  # and again: the worker is still the same healthy one


def test_stream_predictions_with_stream_is_refused_the_same_way(served, reference_nan):
    """The worker cannot tell the two RPCs apart, so StreamPredictions gets the same one refusal."""
    body = request_message("generate", {**GENERATE, "stream": True}).SerializeToString()
    received, error = grpc_stream_until_status(served, MODEL, body)
    assert received == [] and error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("stream: ")
    _answers_correctly(served, reference_nan)


#: a deadline every request overruns (tokenizing alone takes longer), so the test never races the clock
OVERDUE = {**EXPLAIN, "deadline_seconds": 1e-6}


def test_rest_deadline_is_504_and_the_next_request_is_served_at_once(served, reference):
    reply = rest(served, "/explanations/tiny", OVERDUE)
    assert reply.status == 504 and reply.json()["type"] == "DEADLINE_EXCEEDED"
    assert reply.json()["message"].startswith("deadline_seconds: the request ran past its deadline of 1e-06 s")
    after = rest(served, "/explanations/tiny", EXPLAIN)
    assert after.status == 200
    assert_same(reply_message(after.json()), in_process(reference, "explain", EXPLAIN))


def test_grpc_deadline_is_deadline_exceeded_and_the_next_request_is_served_at_once(served, reference):
    body = request_message("explain", OVERDUE).SerializeToString()
    with pytest.raises(grpc.RpcError) as raised:
        grpc_predict(served, "tiny", body, timeout=FOLLOW_UP_TIMEOUT_S)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert raised.value.details().startswith("deadline_seconds: the request ran past its deadline")
    after = grpc_predict(served, "tiny", request_message("explain", EXPLAIN).SerializeToString(), timeout=30)
    assert_same(reply_message(after), in_process(reference, "explain", EXPLAIN))


def test_a_request_deadline_beyond_the_server_limit_is_capped_not_refused(served, reference):
    fields = {**EXPLAIN, "deadline_seconds": 1e9}
    assert_same(
        reply_message(rest(served, "/explanations/tiny", fields).json()), in_process(reference, "explain", EXPLAIN)
    )
    bad = rest(served, "/explanations/tiny", {**EXPLAIN, "deadline_seconds": 0})
    assert bad.status == 400 and bad.json()["message"].startswith("deadline_seconds: must be a positive number")


#: abandoned work: ~100 s of integrated gradients on the tiny model without a deadline (measured
#: in-process), stopped by its 3 s deadline instead
ABANDONED = {
    "prompt": "The capital of France is a city with many old buildings and",
    "generation": {"max_new_tokens": 32},
    "attribution": {"methods": ["integrated_gradients"], "n_steps": 128},
    "stream": True,
    "deadline_seconds": 3,
}
#: the follow-up's bound: the abandoned request's deadline, its last chunk and the follow-up itself
SERVED_WITHIN_S = 30.0


def _served_soon_after(served, reference) -> None:
    started = time.perf_counter()
    after = rest(served, "/explanations/tiny", EXPLAIN)
    assert after.status == 200 and time.perf_counter() - started < SERVED_WITHIN_S
    assert_same(reply_message(after.json()), in_process(reference, "explain", EXPLAIN))


def test_a_closed_rest_stream_stops_by_its_deadline(served, reference):
    """The worker cannot see the closed connection (docs/serving.md); the deadline bounds the waste."""
    url = urllib.parse.urlsplit(served.server.inference_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    headers = {"content-type": "application/json", "authorization": f"Bearer {served.token}"}
    connection.request("POST", "/explanations/tiny", json.dumps(ABANDONED), headers)
    response = connection.getresponse()
    assert response.status == 200 and "token" in json.loads(response.readline())
    connection.close()  # the client goes away after the first event
    _served_soon_after(served, reference)


def test_a_cancelled_grpc_stream_stops_by_its_deadline(served, reference):
    """``tiny`` opts in to gRPC streams; the cancel never reaches the worker, the deadline stops it."""
    request = inference_pb2.PredictionsRequest(
        model_name="tiny", input={"body": request_message("explain", ABANDONED).SerializeToString()}
    )
    call = grpc_stub(served).StreamPredictions(request, metadata=[("authorization", f"Bearer {served.token}")])
    first = next(call)
    assert pb.StreamEvent.FromString(first.prediction).HasField("token")
    call.cancel()
    _served_soon_after(served, reference)
