"""The two transports to TorchServe's inference API: REST (stdlib urllib) and gRPC (grpcio).

Both send an ``ecco.v1.ExplainRequest`` and return the reply message (``GenerateResponse`` or
``ExplainResponse``), or with ``stream`` the ``StreamEvent`` messages (gRPC StreamPredictions; REST:
one proto3 JSON event per line of a chunked reply). Failures are ``EccoError`` with the same
``(status, code)`` on both, whether they come as a status or as a reply's ``error`` field (a gRPC
request that shared a TorchServe batch, or a REST stream that failed after it started).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Generator
from typing import Any, Literal, TypeAlias

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from ecco_proto import INPUT_KEY
from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .auth import bearer
from .build import Kind
from .errors import EccoError

Reply: TypeAlias = "pb.GenerateResponse | pb.ExplainResponse"
#: 256 MiB: explanations of long sequences are large (TorchServe's own limit is max_response_size)
MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def reply_type(kind: Kind) -> type[Reply]:
    return pb.ExplainResponse if kind == "explain" else pb.GenerateResponse


def _parse_reply(kind: Kind, data: bytes, json_body: bool) -> Reply:
    message = reply_type(kind)()
    try:
        if json_body:
            json_format.Parse(data.decode("utf-8"), message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(data)
    except (json_format.ParseError, DecodeError, UnicodeDecodeError) as error:
        name = message.DESCRIPTOR.full_name
        raise EccoError(502, "INTERNAL", f"the server's reply is not a valid {name}: {error}") from None
    if message.HasField("error"):
        raise EccoError.from_status(message.error)
    return message


def _parse_event(data: bytes) -> pb.StreamEvent:
    """One streamed ``StreamEvent`` (serialized, or proto3 JSON text); an ``error`` event raises."""
    event = pb.StreamEvent()
    try:
        if data.lstrip()[:1] == b"{":
            json_format.Parse(data.decode("utf-8"), event, ignore_unknown_fields=True)
        else:
            event.ParseFromString(data)
    except (json_format.ParseError, DecodeError, UnicodeDecodeError) as error:
        raise EccoError(502, "INTERNAL", f"a streamed reply is not an ecco.v1.StreamEvent: {error}") from None
    if event.WhichOneof("event") == "error":
        raise EccoError.from_status(event.error)
    return event


class RestTransport:
    """POST /predictions/{model} (generate) and /explanations/{model} (explain) on TorchServe's
    inference port; with ``kserve=True`` the KServe v1 paths ``/v1/models/{model}:predict|:explain``
    (body ``{"instances": [request]}``). ``wire``: "json" (proto3 JSON) or "proto" (serialized)."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        token: str | None = None,
        timeout: float = 600.0,
        wire: Literal["json", "proto"] = "json",
        kserve: bool = False,
        model_version: str | None = None,
    ) -> None:
        if wire not in ("json", "proto"):
            raise ValueError(f"wire must be 'json' or 'proto', got {wire!r}")
        if kserve and wire != "json":
            raise ValueError("the KServe v1 paths carry JSON only")
        self.url = url.rstrip("/")
        self.model, self.model_version = model, model_version
        self.token, self.timeout, self.wire, self.kserve = token, timeout, wire, kserve

    def path(self, kind: Kind) -> str:
        model = urllib.parse.quote(self.model, safe="")
        if self.kserve:
            return f"/v1/models/{model}:{'explain' if kind == 'explain' else 'predict'}"
        version = f"/{urllib.parse.quote(self.model_version, safe='')}" if self.model_version else ""
        return f"/{'explanations' if kind == 'explain' else 'predictions'}/{model}{version}"

    def _open(self, method: str, path: str, body: bytes | None, content_type: str | None) -> Any:
        """The open HTTP response (a context manager); an HTTP error status raises ``EccoError``."""
        headers = bearer(self.token)
        if content_type:
            headers["content-type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            raise EccoError.from_http(error.code, _error_message(error.read(), error.reason)) from None
        except (urllib.error.URLError, OSError) as error:
            raise self._unreachable(error) from None

    def _unreachable(self, error: BaseException) -> EccoError:
        reason = getattr(error, "reason", error)
        return EccoError(503, "UNAVAILABLE", f"cannot reach {self.url}: {reason}")

    def _send(self, method: str, path: str, body: bytes | None, content_type: str | None) -> tuple[bytes, str]:
        with self._open(method, path, body, content_type) as response:
            try:
                return response.read(), response.headers.get("content-type", "")
            except OSError as error:
                raise self._unreachable(error) from None

    def call(self, kind: Kind, request: pb.ExplainRequest) -> Reply:
        if self.wire == "proto":
            data, _ = self._send("POST", self.path(kind), request.SerializeToString(), "application/x-protobuf")
            return _parse_reply(kind, data, json_body=data.lstrip()[:1] == b"{")
        payload: Any = json_format.MessageToDict(request, preserving_proto_field_name=True)
        if self.kserve:
            payload = {"instances": [payload]}
        try:
            data, _ = self._send("POST", self.path(kind), json.dumps(payload).encode(), "application/json")
        except EccoError as error:
            if not self.kserve:
                raise
            # the server names the field inside the envelope this client added: name it as on the other paths
            raise EccoError(error.status, error.code, error.message.removeprefix("instances[0].")) from None
        if self.kserve:
            outer = json.loads(data)
            key = "explanations" if kind == "explain" else "predictions"
            if not isinstance(outer, dict) or not outer.get(key):
                raise EccoError(502, "INTERNAL", f"KServe reply without {key!r}: {str(outer)[:200]}")
            data = json.dumps(outer[key][0]).encode()
        return _parse_reply(kind, data, json_body=True)

    def stream(self, kind: Kind, request: pb.ExplainRequest) -> Generator[pb.StreamEvent, None, None]:
        """The ``StreamEvent`` lines of one streamed reply (``request.stream`` set), in order, as they
        arrive. JSON wire only; the KServe v1 paths do not stream."""
        if self.wire != "json" or self.kserve:
            raise ValueError(
                "REST streams are JSON lines on /predictions and /explanations: use wire='json', no kserve"
            )
        payload = json.dumps(json_format.MessageToDict(request, preserving_proto_field_name=True)).encode()
        with self._open("POST", self.path(kind), payload, "application/json") as response:
            while True:
                try:
                    line = response.readline()
                except OSError as error:
                    raise self._unreachable(error) from None
                if not line:
                    return
                if line.strip():
                    yield _parse_event(line)

    def ping(self) -> str:
        data, _ = self._send("GET", "/ping", None, None)
        return str(json.loads(data).get("status", ""))

    def close(self) -> None:
        pass


def _error_message(body: bytes, reason: Any) -> str:
    """TorchServe's error body is ``{"code": ..., "type": ..., "message": ...}``; fall back to the text."""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
    except (ValueError, UnicodeDecodeError):
        pass
    text = body.decode("utf-8", "replace").strip()
    return text or str(reason)


def _health_status(health: str) -> str:
    """TorchServe 0.12's gRPC Ping answers the REST body as text (``{"status": "Healthy"}``): its status."""
    try:
        data = json.loads(health)
    except ValueError:
        return health
    return str(data.get("status", health)) if isinstance(data, dict) else health


class GrpcTransport:
    """TorchServe's ``InferenceAPIsService``: ``Predictions`` and ``StreamPredictions`` with the
    serialized request under ``input["body"]``; the token as metadata ``authorization: Bearer <key>``."""

    def __init__(
        self,
        target: str,
        model: str,
        *,
        token: str | None = None,
        timeout: float = 600.0,
        model_version: str | None = None,
    ) -> None:
        import grpc

        from ecco_proto.torchserve import inference_pb2_grpc

        self._grpc = grpc
        self.target, self.model, self.model_version = target, model, model_version
        self.token, self.timeout = token, timeout
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        options.append(("grpc.max_send_message_length", MAX_MESSAGE_BYTES))
        self._channel = grpc.insecure_channel(target, options=options)
        self._stub = inference_pb2_grpc.InferenceAPIsServiceStub(self._channel)

    def _metadata(self) -> list[tuple[str, str]]:
        return list(bearer(self.token).items())

    def _request(self, request: pb.ExplainRequest) -> Message:
        from ecco_proto.torchserve import inference_pb2

        return inference_pb2.PredictionsRequest(
            model_name=self.model,
            model_version=self.model_version or "",
            input={INPUT_KEY: request.SerializeToString()},
        )

    def _error(self, error: Any) -> EccoError:
        code = error.code().name if error.code() is not None else "UNKNOWN"
        details = error.details() or code
        if code == "UNAVAILABLE":
            details = f"cannot reach {self.target}: {details}"
        return EccoError.from_grpc(code, details)

    def call(self, kind: Kind, request: pb.ExplainRequest) -> Reply:
        try:
            response = self._stub.Predictions(self._request(request), timeout=self.timeout, metadata=self._metadata())
        except self._grpc.RpcError as error:
            raise self._error(error) from None
        return _parse_reply(kind, response.prediction, json_body=response.prediction.lstrip()[:1] == b"{")

    def stream(self, kind: Kind, request: pb.ExplainRequest) -> Generator[pb.StreamEvent, None, None]:
        """The ``StreamEvent`` messages of one StreamPredictions call (``request.stream`` set), in order."""
        del kind  # the request's own kind decides on gRPC
        try:
            for response in self._stub.StreamPredictions(
                self._request(request), timeout=self.timeout, metadata=self._metadata()
            ):
                yield _parse_event(response.prediction)
        except self._grpc.RpcError as error:
            raise self._error(error) from None

    def ping(self) -> str:
        from google.protobuf import empty_pb2

        try:
            health = self._stub.Ping(empty_pb2.Empty(), timeout=self.timeout, metadata=self._metadata()).health
        except self._grpc.RpcError as error:
            raise self._error(error) from None
        return _health_status(health)

    def close(self) -> None:
        self._channel.close()
