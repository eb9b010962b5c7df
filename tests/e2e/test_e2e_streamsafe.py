"""No request takes a model down: ``stream`` on a unary gRPC call, against a real TorchServe.

TorchServe 0.12's worker cannot tell ``StreamPredictions`` from ``Predictions``; a second message for a
``Predictions`` call made its frontend throw ``IllegalStateException: Stream is already completed``
and drop the worker for good (every later request hung). ``tiny-nan`` keeps the default (gRPC
``stream`` refused); its greedy generation is still deterministic, so "answers correctly" is checked
against the in-process engine on the same folder.
"""

from __future__ import annotations

import grpc
import pytest

from ecco_engine import EngineLimits, Explainer
from ecco_engine.loading import load_model
from ts_calls import (
    EXPLAIN,
    GENERATE,
    assert_same,
    grpc_predict,
    grpc_stream_until_status,
    in_process,
    reply_message,
    request_message,
)

from conftest import LIMITS

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
