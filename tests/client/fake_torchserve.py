"""Stand-ins for TorchServe on 127.0.0.1 for the client tests, serving the real engine + codec on a tiny model.

- gRPC: a servicer of TorchServe's ``InferenceAPIsService`` (the generated stubs of protos/torchserve),
  reading ``input["body"]`` and answering like the ecco handler does (codec replies, codec status codes).
- REST: an ``http.server`` with TorchServe's paths (/predictions, /explanations, KServe v1, /ping) and
  its error body ``{"code", "type", "message"}``; a request with ``stream`` gets one JSON event per line
  (a failure after the first line is an ``error`` event, as the handler sends it).
- Model ``tiny-batched`` (gRPC) answers like a row of a multi-row TorchServe batch: a failure is an OK
  call whose reply carries ``error`` (``ecco_codec.encode_error``), not a status.
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
    Decoded,
    decode_request,
    encode_error,
    encode_explanation,
    encode_generation,
    encode_stream_row,
    encode_stream_summary,
    encode_stream_token,
    status_for,
    wire_of,
)
from ecco_engine import Explainer
from ecco_engine.attribution import AttributionRow
from ecco_engine.explainer import GeneratedToken
from ecco_proto import INPUT_KEY
from ecco_proto.torchserve import inference_pb2, inference_pb2_grpc
from tiny_models import tiny_model, tiny_tokenizer

MODEL = "tiny"
BATCHED_MODEL = "tiny-batched"
TOKEN = "test-inference-key"


class Backend:
    """What the ecco handler does for one request, over the real codec and engine (one at a time)."""

    def __init__(self) -> None:
        self.explainer = Explainer(tiny_model("gpt2"), tiny_tokenizer())
        self.lock = threading.Lock()

    def reply(self, decoded: Decoded) -> bytes | dict:
        with self.lock:
            if decoded.kind == "explain":
                explanation = self.explainer.explain(decoded.request)
                return encode_explanation(explanation, decoded, model_name=MODEL, tokenizer=self.explainer.tokenizer)
            return encode_generation(self.explainer.generate(decoded.request), decoded, model_name=MODEL)

    def stream(self, decoded: Decoded) -> Iterator[bytes | dict]:
        """The handler's stream: the engine's events as they come, then the summary."""
        with self.lock:
            for event in self.explainer.stream(decoded.request, attribute=decoded.kind == "explain"):
                if isinstance(event, GeneratedToken):
                    yield encode_stream_token(event, decoded)
                elif isinstance(event, AttributionRow):
                    yield encode_stream_row(event, decoded)
                else:
                    yield encode_stream_summary(event, decoded, model_name=MODEL, tokenizer=self.explainer.tokenizer)


def _as_bytes(reply: bytes | dict) -> bytes:
    """What TorchServe sends for a handler's return value: bytes as they are, a dict as JSON text."""
    return reply if isinstance(reply, bytes) else json.dumps(reply).encode()


class Servicer(inference_pb2_grpc.InferenceAPIsServiceServicer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _check(self, request, context) -> bytes:
        if dict(context.invocation_metadata()).get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "Token Authorization failed")
        if request.model_name not in (MODEL, BATCHED_MODEL):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Model not found: {request.model_name}")
        return request.input.get(INPUT_KEY, b"")

    def _fail(self, request, error: Exception, context, body: bytes) -> bytes:
        """A lone row's failure is the call's status; a batched row's is its reply's ``error``."""
        _, code, message = status_for(error)
        if request.model_name != BATCHED_MODEL:
            context.abort(getattr(grpc.StatusCode, code), message)
        return _as_bytes(encode_error(code, message, wire_of(body) if body else "proto"))

    def Ping(self, request, context):
        return inference_pb2.TorchServeHealthResponse(health='{\n  "status": "Healthy"\n}')  # as TorchServe 0.12

    def Predictions(self, request, context):
        body = self._check(request, context)
        try:
            reply = _as_bytes(self.backend.reply(decode_request(body)))
        except Exception as error:
            reply = self._fail(request, error, context, body)
        return inference_pb2.PredictionResponse(prediction=reply)

    def StreamPredictions(self, request, context):
        body = self._check(request, context)
        try:
            decoded = decode_request(body)
            events = self.backend.stream(decoded) if decoded.stream else iter([self.backend.reply(decoded)])
            for event in events:
                yield inference_pb2.PredictionResponse(prediction=_as_bytes(event))
        except Exception as error:
            yield inference_pb2.PredictionResponse(prediction=self._fail(request, error, context, body))


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

        def _stream(self, decoded: Decoded) -> None:
            """One JSON event per line; the status is sent with the first line (errors before it: a status)."""
            events = backend.stream(decoded)
            first = json.dumps(next(events)).encode() + b"\n"  # errors before the first event raise here
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()  # HTTP/1.0 without content-length: the body ends when the connection closes
            self.wfile.write(first)
            try:
                for event in events:
                    self.wfile.write(json.dumps(event).encode() + b"\n")
                    self.wfile.flush()
            except Exception as error:
                _, code, message = status_for(error)
                self.wfile.write(json.dumps(encode_error(code, message, "json")).encode() + b"\n")

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
                decoded = decode_request(body, content_type=content_type, url_kind=kind)
                if decoded.stream and not kserve:
                    return self._stream(decoded)
                reply = backend.reply(decoded)
            except Exception as error:
                status, _, message = status_for(error)
                return self._error(status, message)
            if isinstance(reply, bytes):
                return self._send(200, reply, "application/x-protobuf")
            if kserve:
                reply = {"explanations" if kind == "explain" else "predictions": [reply]}
            self._send(200, json.dumps(reply).encode(), "application/json")

    return Handler
