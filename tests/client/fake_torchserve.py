"""Stand-ins for TorchServe on 127.0.0.1 for the client tests, serving the real engine + codec on a tiny model.

- gRPC: a servicer of TorchServe's ``InferenceAPIsService`` (the generated stubs of protos/torchserve),
  reading ``input["body"]`` and answering like the ecco handler does (codec replies, codec status codes).
- REST: an ``http.server`` with TorchServe's paths (/predictions, /explanations, KServe v1, /ping) and
  its error body ``{"code", "type", "message"}``.
Both require ``Authorization: Bearer <TOKEN>``. They stand in for TorchServe until the end-to-end tests
run the client against the real thing; every server started here is stopped by its fixture.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import grpc

from ecco_codec import (
    decode_request,
    encode_explanation,
    encode_generation,
    encode_stream_attribution_row,
    encode_stream_summary,
    encode_stream_token,
    status_for,
)
from ecco_engine import Explainer
from ecco_proto import INPUT_KEY
from ecco_proto.torchserve import inference_pb2, inference_pb2_grpc
from tiny_models import tiny_model, tiny_tokenizer

MODEL = "tiny"
TOKEN = "test-inference-key"


class Backend:
    """What the ecco handler does for one request, over the real codec and engine (one at a time)."""

    def __init__(self) -> None:
        self.explainer = Explainer(tiny_model("gpt2"), tiny_tokenizer())
        self.lock = threading.Lock()

    def reply(self, body: object, *, content_type: str | None, url_kind: str | None) -> bytes | dict:
        decoded = decode_request(body, content_type=content_type, url_kind=url_kind)
        with self.lock:
            if decoded.kind == "explain":
                explanation = self.explainer.explain(decoded.request)
                return encode_explanation(explanation, decoded, model_name=MODEL, tokenizer=self.explainer.tokenizer)
            return encode_generation(self.explainer.generate(decoded.request), decoded, model_name=MODEL)

    def stream(self, body: bytes) -> Iterator[bytes | dict]:
        decoded = decode_request(body)
        with self.lock:
            generation = self.explainer.generate(decoded.request)
            start = generation.prompt_length
            for index, token in enumerate(generation.tokens[start:]):
                yield encode_stream_token(token, decoded, index=index, position=start + index)
            if decoded.kind == "generate":
                yield encode_stream_summary(generation, decoded, model_name=MODEL)
                return
            explanation = self.explainer.explain(decoded.request)
            for attribution in explanation.attributions:
                for row in range(len(attribution.target_positions)):
                    yield encode_stream_attribution_row(attribution, row, decoded)
            yield encode_stream_summary(explanation, decoded, model_name=MODEL, tokenizer=self.explainer.tokenizer)


def _as_bytes(reply: bytes | dict) -> bytes:
    """What TorchServe sends for a handler's return value: bytes as they are, a dict as JSON text."""
    return reply if isinstance(reply, bytes) else json.dumps(reply).encode()


class Servicer(inference_pb2_grpc.InferenceAPIsServiceServicer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _check(self, request, context) -> bytes:
        if dict(context.invocation_metadata()).get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "Token Authorization failed")
        if request.model_name != MODEL:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Model not found: {request.model_name}")
        return request.input.get(INPUT_KEY, b"")

    def _abort(self, error: Exception, context) -> None:
        _, code, message = status_for(error)
        context.abort(getattr(grpc.StatusCode, code), message)

    def Ping(self, request, context):
        return inference_pb2.TorchServeHealthResponse(health="Healthy")

    def Predictions(self, request, context):
        body = self._check(request, context)
        try:
            reply = self.backend.reply(body, content_type=None, url_kind=None)
        except Exception as error:
            self._abort(error, context)
        return inference_pb2.PredictionResponse(prediction=_as_bytes(reply))

    def StreamPredictions(self, request, context):
        body = self._check(request, context)
        try:
            for event in self.backend.stream(body):
                yield inference_pb2.PredictionResponse(prediction=_as_bytes(event))
        except Exception as error:
            self._abort(error, context)


def http_handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            body = {"code": status, "type": "PredictionException", "message": message}
            self._send(status, json.dumps(body).encode(), "application/json")

        def _route(self) -> tuple[str, bool] | None:
            """(url kind, kserve) for this path, or None."""
            for prefix, kind in (("/predictions/", "generate"), ("/explanations/", "explain")):
                if self.path == prefix + MODEL:
                    return kind, False
            for suffix, kind in ((":predict", "generate"), (":explain", "explain")):
                if self.path == f"/v1/models/{MODEL}{suffix}":
                    return kind, True
            return None

        def do_GET(self) -> None:
            if self.path == "/ping":
                self._send(200, b'{"status": "Healthy"}', "application/json")
            else:
                self._error(404, "Requested resource is not found")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.headers.get("authorization") != f"Bearer {TOKEN}":
                return self._error(401, "Token Authorization failed. Token either incorrect, expired, or not provided")
            route = self._route()
            if route is None:
                return self._error(404, f"Model not found: {self.path}")
            kind, kserve = route
            content_type = self.headers.get("content-type")
            try:
                if kserve:
                    body = json.dumps(json.loads(body)["instances"][0]).encode()
                reply = backend.reply(body, content_type=content_type, url_kind=kind)
            except Exception as error:
                status, _, message = status_for(error)
                return self._error(status, message)
            if isinstance(reply, bytes):
                return self._send(200, reply, "application/x-protobuf")
            if kserve:
                reply = {"explanations" if kind == "explain" else "predictions": [reply]}
            self._send(200, json.dumps(reply).encode(), "application/json")

    return Handler
