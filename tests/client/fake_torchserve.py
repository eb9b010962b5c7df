"""Stand-ins for TorchServe on 127.0.0.1 for the client tests, serving the real data plane on a tiny model.

Both carry calls to ``ecco_dataplane`` (the real ``DataPlane`` and transport adapters, as the handler
does) and add only what TorchServe's frontend adds:

- gRPC: a servicer of TorchServe's ``InferenceAPIsService`` (the generated stubs of protos/torchserve)
  carrying ``input["body"]`` over the gRPC adapter (opted in to streaming: ``GRPC_STREAMING``); a
  failure is the call's status, as for a TorchServe call alone in its batch. Model ``tiny-batched``
  answers like a row of a multi-row TorchServe batch: a failure is an OK call whose reply carries
  ``error``.
- REST: an ``http.server`` with TorchServe's paths (/predictions, /explanations over the REST adapter,
  KServe v1 over the KServe adapter, /ping); stream events go out as the lines of one response.
Both require ``Authorization: Bearer <TOKEN>``. They stand in for TorchServe until the end-to-end tests
run the client against the real thing; every server started here is stopped by its fixture.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import grpc

from ecco_dataplane import GRPC_STREAMING, KSERVE_V1, REST, Call, DataPlane, Reply, Transport, media_type
from ecco_engine import Explainer
from ecco_proto import INPUT_KEY
from ecco_proto.torchserve import inference_pb2, inference_pb2_grpc
from tiny_models import tiny_model, tiny_tokenizer

MODEL = "tiny"
BATCHED_MODEL = "tiny-batched"
TOKEN = "test-inference-key"


class Backend:
    """The data plane on the tiny model, one call at a time (as one TorchServe worker)."""

    def __init__(self) -> None:
        self.explainer = Explainer(tiny_model("gpt2"), tiny_tokenizer())
        self.plane = DataPlane(self.explainer, MODEL)
        self.lock = threading.Lock()

    def serve(self, transport: Transport, call: Call) -> Iterator[Reply]:
        with self.lock:
            yield from self.plane.serve(transport, call)


class Servicer(inference_pb2_grpc.InferenceAPIsServiceServicer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _replies(self, request, context) -> Iterator[bytes]:
        """The call's messages; a failure aborts the call with its status unless the model is batched."""
        if dict(context.invocation_metadata()).get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "Token Authorization failed")
        if request.model_name not in (MODEL, BATCHED_MODEL):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Model not found: {request.model_name}")
        for reply in self.backend.serve(GRPC_STREAMING, Call(request.input.get(INPUT_KEY))):
            if reply.failure is not None and request.model_name != BATCHED_MODEL:
                context.abort(getattr(grpc.StatusCode, reply.failure.code), reply.failure.message)
            yield reply.body

    def Ping(self, request, context):
        return inference_pb2.TorchServeHealthResponse(health='{\n  "status": "Healthy"\n}')  # as TorchServe 0.12

    def Predictions(self, request, context):
        *_, final = self._replies(request, context)  # a unary call has one reply (clients never stream on it)
        return inference_pb2.PredictionResponse(prediction=final)

    def StreamPredictions(self, request, context):
        for body in self._replies(request, context):
            yield inference_pb2.PredictionResponse(prediction=body)


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
            """TorchServe's own refusals (authorization, routing), before any handler runs."""
            body = {"code": status, "type": "PredictionException", "message": message}
            self._send(status, json.dumps(body).encode(), "application/json")

        def _route(self) -> tuple[Transport, str] | None:
            """(transport, url kind) for this path, or None."""
            for prefix, kind in (("/predictions/", "generate"), ("/explanations/", "explain")):
                if self.path == prefix + MODEL:
                    return REST, kind
            for suffix, kind in ((":predict", "generate"), (":explain", "explain")):
                if self.path == f"/v1/models/{MODEL}{suffix}":
                    return KSERVE_V1, kind
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
            transport, kind = route
            replies = backend.serve(transport, Call(body, media_type(self.headers.get("content-type")), kind))
            first = next(replies)
            if first.final:
                status = first.failure.status if first.failure is not None and first.as_status else 200
                return self._send(status, first.body, first.content_type)
            # a stream: the status goes out with the first line; HTTP/1.0 without content-length: the
            # body ends when the connection closes
            self.send_response(200)
            self.send_header("content-type", first.content_type)
            self.end_headers()
            self.wfile.write(first.body)
            for reply in replies:
                self.wfile.write(reply.body)
                self.wfile.flush()

    return Handler
