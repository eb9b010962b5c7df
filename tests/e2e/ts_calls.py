"""Raw calls to a running TorchServe (urllib and TorchServe's generated gRPC stubs), for the e2e tests.

Deliberately not the ecco_client: these tests pin the server's contract (status codes, bodies, bytes).
"""

from __future__ import annotations

import functools
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from ecco_codec import decode_request, encode_explanation, encode_generation, from_matrix
from ecco_proto.ecco.v1 import ecco_pb2 as pb
from ecco_proto.torchserve import inference_pb2, inference_pb2_grpc
from ecco_serving.server import Server

TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Served:
    """A TorchServe started by the session fixture, and what the tests need to talk to it."""

    server: Server
    model_dirs: dict[str, Path]  # served name -> the model folder archived
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return self.keys["inference"]


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)


def rest(
    served: Served,
    path: str,
    body: bytes | dict[str, Any],
    *,
    token: str | None = "",
    content_type: str = "application/json",
) -> Reply:
    """POST ``body`` to the inference port; ``token=""`` uses the server's key, ``None`` sends none."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"content-type": content_type}
    token = served.token if token == "" else token
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(served.server.inference_url + path, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return Reply(response.status, response.read(), response.headers.get("content-type", ""))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.read(), error.headers.get("content-type", ""))


def management(served: Served, path: str) -> Any:
    request = urllib.request.Request(
        served.server.management_url + path, headers={"authorization": f"Bearer {served.keys['management']}"}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return json.loads(response.read())


def worker_pids(served: Served, model: str) -> list[int]:
    return sorted(w["pid"] for w in management(served, f"/models/{model}")[0]["workers"])


@functools.lru_cache(maxsize=8)
def _channel_stub(target: str) -> inference_pb2_grpc.InferenceAPIsServiceStub:
    return inference_pb2_grpc.InferenceAPIsServiceStub(grpc.insecure_channel(target))


def grpc_stub(served: Served) -> inference_pb2_grpc.InferenceAPIsServiceStub:
    """One channel per server for the whole session (as a real client keeps its connection)."""
    return _channel_stub(served.server.grpc_target)


def _metadata(served: Served, token: str | None) -> list[tuple[str, str]]:
    token = served.token if token == "" else token
    return [] if token is None else [("authorization", f"Bearer {token}")]


def grpc_predict(
    served: Served, model: str, body: bytes, *, token: str | None = "", timeout: float = TIMEOUT_S
) -> bytes:
    """``Predictions`` with ``body`` under input key "body"; raises ``grpc.RpcError`` on a status."""
    request = inference_pb2.PredictionsRequest(model_name=model, input={"body": body})
    return grpc_stub(served).Predictions(request, metadata=_metadata(served, token), timeout=timeout).prediction


def grpc_stream(served: Served, model: str, body: bytes, *, token: str | None = "") -> list[bytes]:
    """``StreamPredictions``: every message's bytes; raises ``grpc.RpcError`` on a status."""
    received, error = grpc_stream_until_status(served, model, body, token=token)
    if error is not None:
        raise error
    return received


def grpc_stream_until_status(
    served: Served, model: str, body: bytes, *, token: str | None = ""
) -> tuple[list[bytes], grpc.RpcError | None]:
    """``StreamPredictions``: the messages received, and the error status that ended the call (or None)."""
    request = inference_pb2.PredictionsRequest(model_name=model, input={"body": body})
    replies = grpc_stub(served).StreamPredictions(request, metadata=_metadata(served, token), timeout=TIMEOUT_S)
    received: list[bytes] = []
    try:
        for reply in replies:
            received.append(reply.prediction)
    except grpc.RpcError as error:
        return received, error
    return received, None


def request_message(kind: str, fields: dict[str, Any]) -> pb.ExplainRequest:
    """An ``ecco.v1.ExplainRequest`` from its proto3 JSON fields, with ``kind`` set."""
    message = json_format.ParseDict(fields, pb.ExplainRequest())
    message.kind = pb.EXPLAIN if kind == "explain" else pb.GENERATE
    return message


def reply_message(data: bytes | dict[str, Any]) -> pb.ExplainResponse:
    """A reply (JSON dict / JSON bytes / serialized) as an ``ExplainResponse`` without its timings.

    Every reply parses as ``ExplainResponse`` (GenerateResponse shares its field numbers).
    """
    message = pb.ExplainResponse()
    if isinstance(data, dict):
        json_format.ParseDict(data, message)
    elif data.lstrip()[:1] == b"{":
        json_format.Parse(data, message)
    else:
        message.ParseFromString(data)
    del message.timings[:]
    return message


EXPLAIN = {
    "prompt": "The capital of France is",
    "generation": {"max_new_tokens": 3},
    "attribution": {"methods": ["integrated_gradients", "grad_x_input"], "n_steps": 8},
}
GENERATE = {"prompt": "The capital of France is", "generation": {"max_new_tokens": 5}}
CHAT_SAMPLED = {
    "messages": [{"role": "user", "content": "hello there!"}],
    "generation": {"max_new_tokens": 4, "do_sample": True, "seed": 7, "top_k": 20},
}


def in_process(reference, kind: str, fields: dict) -> pb.ExplainResponse:
    """What the served ``tiny`` should reply: the same codec around the in-process engine."""
    decoded = decode_request(request_message(kind, fields).SerializeToString(), content_type="application/x-protobuf")
    if kind == "explain":
        return reply_message(encode_explanation(reference.explain(decoded.request), decoded, model_name="tiny"))
    return reply_message(encode_generation(reference.generate(decoded.request), decoded, model_name="tiny"))


def assert_same(served: pb.ExplainResponse, expected: pb.ExplainResponse) -> None:
    assert list(served.tokens) == list(expected.tokens)
    assert (served.prompt_length, served.generated_text, served.finish_reason) == (
        expected.prompt_length,
        expected.generated_text,
        expected.finish_reason,
    )
    assert [a.method for a in served.attributions] == [a.method for a in expected.attributions]
    for got, want in zip(served.attributions, expected.attributions, strict=True):
        assert list(got.target_positions) == list(want.target_positions)
        want_scores = from_matrix(want.scores)
        scale = float(np.abs(want_scores).max()) or 1.0
        np.testing.assert_allclose(from_matrix(got.scores), want_scores, rtol=0, atol=1e-6 * scale)
        np.testing.assert_allclose(got.target_scores, want.target_scores, rtol=1e-6, atol=1e-9)
