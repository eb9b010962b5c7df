"""TorchServe handler for ecco-serve: thin glue between TorchServe, the codec and the engine.

Per request row: find the transport and the kind the URL asks for, ``ecco_codec.decode_request``,
run ``Explainer.generate`` / ``explain`` / ``stream``, encode with the wire the request came in.

How TorchServe 0.12 hands requests over (``decode_input_request=false`` in config.properties):

- every row is ``{"body": bytes}``: REST bodies and gRPC ``PredictionsRequest.input["body"]`` alike;
- REST rows carry the HTTP headers plus ``explain: "True"|"False"`` (``/explanations`` vs
  ``/predictions``); ``/predictions`` and ``/explanations`` rows also carry ``url_path``, the KServe v1
  paths (``/v1/models/{m}:predict|:explain``) do not, and their body is ``{"instances": [request, ...]}``;
- gRPC rows carry no header. Predictions and StreamPredictions look the same to the worker, so only a
  request that asks for a stream (``ExplainRequest.stream``) is streamed: with the engine's
  ``Explainer.stream``, one ``StreamEvent`` per intermediate reply (gRPC: a message; REST: a JSON line of
  a chunked reply), the tokens as generated, then (explain) the attribution rows as computed, then the
  summary as the row's final reply.

Errors: one row's failure never fails the other rows of a batch. REST rows get their own HTTP status
(``context.set_response_status``) and a ``{"code", "type", "message"}`` body; a REST stream that fails
after its first event (the status is already sent) ends with an ``error`` StreamEvent line instead. The
TorchServe frontend ignores per-row status on gRPC, so a gRPC row that fails alone in its batch raises
``PredictionException`` (400 -> INVALID_ARGUMENT, 413 -> RESOURCE_EXHAUSTED, 422 -> FAILED_PRECONDITION,
500 -> INTERNAL; also after streamed events: the call then ends with that status); inside a larger batch
its reply carries the ``error`` field (``ecco_codec.encode_error``: a ``google.rpc.Status`` that parses
as the reply or as a StreamEvent). Internal errors are logged with their traceback here and reach the
client only as a generic message.

Metrics: every row is counted and timed with ``ecco_serving.metrics.observe_request`` (kind, methods,
transport, outcome, the engine's stage timings plus encoding, token counts); with
``PROMETHEUS_MULTIPROC_DIR`` set, the metrics exporter serves the sum over all workers.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.utils.util import PredictionException

import ecco_engine
from ecco_codec import (
    Wire,
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
from ecco_engine import EngineLimits, Explainer, InvalidRequest, Timing
from ecco_engine.attribution import AttributionRow
from ecco_engine.explainer import GeneratedToken
from ecco_engine.loading import load_model
from ecco_serving.metrics import ObservedRequest, initialize_model, observe_request

logger = logging.getLogger(__name__)

Transport = Literal["rest", "kserve", "grpc"]
UrlKind = Literal["generate", "explain"]
INPUT_KEYS = ("body", "data")  # gRPC input key (ecco_proto.INPUT_KEY) / TorchServe's REST body name
JSON_TYPE = "application/json"
PROTO_TYPE = "application/x-protobuf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Row:
    """One request of a TorchServe batch."""

    index: int
    transport: Transport
    body: Any  # None: the row has no "body" (gRPC: another input key)
    url_kind: UrlKind | None  # REST: what the URL asks for; gRPC: None
    content_type: str | None


@dataclass(frozen=True)
class Failure:
    status: int  # HTTP status
    code: str  # gRPC status code name
    message: str

    def body(self) -> bytes:
        return json.dumps({"code": self.status, "type": self.code, "message": self.message}).encode() + b"\n"


def _header(headers: dict[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name and isinstance(value, str):
            return value
    return None


def read_row(index: int, row: dict[str, Any], headers: dict[str, Any]) -> Row:
    """The transport, kind and body of one row, from what TorchServe 0.12 passes (see module doc)."""
    body = next((row[key] for key in INPUT_KEYS if key in row), None)
    explain = _header(headers, "explain")
    if explain is None:
        transport: Transport = "grpc"
    else:
        transport = "rest" if _header(headers, "url_path") is not None else "kserve"
    url_kind: UrlKind | None = None
    if transport != "grpc":
        url_kind = "explain" if explain == "True" else "generate"
    content_type = _header(headers, "content-type")
    return Row(index, transport, body, url_kind, content_type.split(";")[0].strip() if content_type else None)


def failure_of(error: BaseException) -> Failure:
    status, code, message = status_for(error)
    if status >= 500:
        logger.exception("request failed", exc_info=error)
    return Failure(status, code, message)


def error_wire(row: Row) -> Wire:
    """The wire of an error reply for ``row``: its request's wire, "proto" when that is unknown."""
    if row.body is None:
        return "proto"
    try:
        return wire_of(row.body, row.content_type)
    except InvalidRequest:  # an unsupported content type
        return "proto"


class EccoHandler:
    """TorchServe entry point (``initialize`` once per worker, ``handle`` per batch)."""

    def __init__(self) -> None:
        self.explainer: Explainer | None = None
        self.model_name = ""
        self.initialized = False

    # ---- start-up -----------------------------------------------------------------------------
    def initialize(self, context) -> None:
        settings = (context.model_yaml_config or {}).get("handler", {})
        threads = int(settings.get("torch_threads", 0))
        if threads > 0:
            torch.set_num_threads(threads)
        folder = Path(context.system_properties["model_dir"]) / settings.get("model_subdir", "model")
        dtype = DTYPES[settings.get("dtype", "float32")]
        # nested `internals:` limits; an unknown name fails here, at start-up, before the model loads
        limits = EngineLimits.from_mapping(settings.get("limits") or {})
        start = time.perf_counter()
        model, tokenizer = load_model(folder, dtype=dtype)
        self.explainer = Explainer(model, tokenizer, limits=limits)
        self.model_name = context.model_name
        initialize_model(self.model_name)  # the usual metric series at zero (ecco_serving.metrics)
        self.initialized = True
        logger.info(
            "loaded %s from %s in %.1f s (ecco_engine from %s)",
            self.model_name, folder, time.perf_counter() - start, Path(ecco_engine.__file__).parent,
        )  # fmt: skip

    # ---- one batch ----------------------------------------------------------------------------
    def handle(self, data: list[dict[str, Any]], context) -> list[bytes]:
        if len(data) > 1:
            logger.info("handling a batch of %d requests", len(data))
        rows = [read_row(index, raw, context.get_all_request_header(index)) for index, raw in enumerate(data)]
        replies: list[bytes] = []
        failures: dict[int, Failure] = {}
        streamed: set[int] = set()  # rows that already sent a streamed event (their status is gone)
        for row in rows:
            try:  # metrics: ecco_serving.metrics (count, latency, outcome of every row)
                with observe_request(self.model_name, row.url_kind, transport=row.transport) as observed:
                    replies.append(self.serve(row, context, observed, streamed=streamed))
            except Exception as error:  # every failure becomes this row's status
                failures[row.index] = failure_of(error)
                replies.append(b"")
        if len(rows) == 1 and rows[0].transport == "grpc" and failures:
            # alone in its batch: the only way to give a gRPC call a status (see the module doc);
            # after streamed messages too: the frontend ends the stream with this status
            raise PredictionException(failures[0].message, failures[0].status)
        for index, failure in failures.items():
            row = rows[index]
            if row.transport == "grpc":  # the frontend ignores a gRPC row's status: the reply carries it
                error = encode_error(failure.code, failure.message, error_wire(row))
                replies[index] = self._wire(row, error, context)
            elif index in streamed:  # a REST stream sent 200 with its first event: the last line says it
                error = encode_error(failure.code, failure.message, "json")
                replies[index] = self._wire(row, error, context, line=True)
            else:
                context.set_response_status(failure.status, failure.code, index)
                context.set_response_content_type(index, JSON_TYPE)
                replies[index] = failure.body()
        for row in rows:
            if row.transport == "grpc":
                # the frontend completes a StreamPredictions call only on this header (and needs it)
                context.set_response_header(row.index, "ts_stream_next", "false")
        return replies

    def serve(
        self,
        row: Row,
        context,
        observed: ObservedRequest | None = None,
        *,
        allow_stream: bool = True,
        streamed: set[int] | None = None,
    ) -> bytes:
        """The reply bytes for one row; raises on any failure. ``observed`` collects its metrics;
        a row that sends a streamed event is added to ``streamed``."""
        observed = observed or ObservedRequest.detached()
        if row.body is None:
            expected = 'input["body"]' if row.transport == "grpc" else "the request body"
            raise InvalidRequest("body", f"missing: send the ecco.v1.ExplainRequest as {expected}")
        if row.transport == "kserve":
            return self._kserve(row, context, observed)
        start = time.perf_counter()
        decoded = decode_request(row.body, content_type=row.content_type, url_kind=row.url_kind)
        timings = (Timing("decode", time.perf_counter() - start),)
        observed.describe(decoded.kind, decoded.request.attribution.methods)
        if decoded.stream:
            if not allow_stream:
                raise InvalidRequest("stream", "the KServe v1 paths do not stream; use /predictions or /explanations")
            return self._stream(row, decoded, context, timings, observed, streamed if streamed is not None else set())
        assert self.explainer is not None
        if decoded.kind == "explain":
            explanation = self.explainer.explain(decoded.request)
            observed.observe_result(explanation, timings)
            with observed.stage("encoding"):
                reply = encode_explanation(
                    explanation, decoded, model_name=self.model_name, extra_timings=timings,
                    tokenizer=self.explainer.tokenizer,
                )  # fmt: skip
                return self._wire(row, reply, context)
        result = self.explainer.generate(decoded.request)
        observed.observe_result(result, timings)
        with observed.stage("encoding"):
            reply = encode_generation(result, decoded, model_name=self.model_name, extra_timings=timings)
            return self._wire(row, reply, context)

    def _wire(self, row: Row, reply: bytes | dict[str, Any], context, *, line: bool = False) -> bytes:
        if isinstance(reply, dict):
            context.set_response_content_type(row.index, JSON_TYPE)
            return json.dumps(reply).encode() + (b"\n" if line else b"")
        context.set_response_content_type(row.index, PROTO_TYPE)
        return reply

    # ---- KServe v1: {"instances": [request, ...]} -> {"predictions"|"explanations": [reply, ...]}
    def _kserve(self, row: Row, context, observed: ObservedRequest) -> bytes:
        try:
            envelope = json.loads(row.body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("body", 'not valid JSON; KServe v1 expects {"instances": [request, ...]}') from None
        instances = envelope.get("instances") if isinstance(envelope, dict) else None
        if not isinstance(instances, list) or not instances:
            raise InvalidRequest("instances", "KServe v1 expects a non-empty list of requests under 'instances'")
        replies = []
        for i, instance in enumerate(instances):
            try:
                single = Row(row.index, "rest", json.dumps(instance).encode(), row.url_kind, JSON_TYPE)
                replies.append(json.loads(self.serve(single, context, observed, allow_stream=False)))
            except InvalidRequest as error:
                raise error.within(f"instances[{i}]") from None
        key = "explanations" if row.url_kind == "explain" else "predictions"
        context.set_response_content_type(row.index, JSON_TYPE)
        return json.dumps({key: replies}).encode()

    # ---- streaming: tokens as generated, attribution rows as computed, then the summary -------
    def _stream(
        self,
        row: Row,
        decoded,
        context,
        timings: tuple[Timing, ...],
        observed: ObservedRequest,
        streamed: set[int],
    ) -> bytes:
        """Send each engine event as it comes (adding the row to ``streamed``); return the summary."""
        assert self.explainer is not None
        if row.transport == "rest" and decoded.wire != "json":
            raise InvalidRequest("stream", "streaming over REST sends JSON lines; send the request as JSON")
        request_ids = {row.index: context.request_ids[row.index]}
        line = row.transport == "rest"

        def send(event: bytes | dict[str, Any]) -> None:
            payload = {row.index: self._wire(row, event, context, line=line)}
            send_intermediate_predict_response(payload, request_ids, "Intermediate Prediction success", 200, context)
            streamed.add(row.index)

        # generate: tokens, then the GenerationResult; explain: tokens, rows, then the Explanation
        for event in self.explainer.stream(decoded.request, attribute=decoded.kind == "explain"):
            if isinstance(event, GeneratedToken):
                send(encode_stream_token(event, decoded))
            elif isinstance(event, AttributionRow):
                send(encode_stream_row(event, decoded))
            else:  # the result, always last
                observed.observe_result(event, timings)
                with observed.stage("encoding"):
                    summary = encode_stream_summary(
                        event, decoded, model_name=self.model_name, extra_timings=timings,
                        tokenizer=self.explainer.tokenizer,
                    )  # fmt: skip
                    return self._wire(row, summary, context, line=line)
        raise RuntimeError("the engine's stream ended without its result")


_service = EccoHandler()


def handle(data: list[dict[str, Any]] | None, context) -> list[bytes] | None:
    """TorchServe's module-level entry point: ``handle(None, ctx)`` initializes."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
