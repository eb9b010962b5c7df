"""The two transports to TorchServe's inference API: REST (stdlib urllib) and gRPC (grpcio).

Both send an ``ecco.v1.ExplainRequest`` and return the reply message (``GenerateResponse`` or
``ExplainResponse``); failures are ``EccoError`` with the same ``(status, code)`` on both.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
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
    return message


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

    def _send(self, method: str, path: str, body: bytes | None, content_type: str | None) -> tuple[bytes, str]:
        headers = bearer(self.token)
        if content_type:
            headers["content-type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read(), response.headers.get("content-type", "")
        except urllib.error.HTTPError as error:
            raise EccoError.from_http(error.code, _error_message(error.read(), error.reason)) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise EccoError(503, "UNAVAILABLE", f"cannot reach {self.url}: {reason}") from None

    def call(self, kind: Kind, request: pb.ExplainRequest) -> Reply:
        if self.wire == "proto":
            data, _ = self._send("POST", self.path(kind), request.SerializeToString(), "application/x-protobuf")
            return _parse_reply(kind, data, json_body=data.lstrip()[:1] == b"{")
        payload: Any = json_format.MessageToDict(request, preserving_proto_field_name=True)
        if self.kserve:
            payload = {"instances": [payload]}
        data, _ = self._send("POST", self.path(kind), json.dumps(payload).encode(), "application/json")
        if self.kserve:
            outer = json.loads(data)
            key = "explanations" if kind == "explain" else "predictions"
            if not isinstance(outer, dict) or not outer.get(key):
                raise EccoError(502, "INTERNAL", f"KServe reply without {key!r}: {str(outer)[:200]}")
            data = json.dumps(outer[key][0]).encode()
        return _parse_reply(kind, data, json_body=True)

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

    def stream(self, request: pb.ExplainRequest) -> Iterator[pb.StreamEvent]:
        """The ``StreamEvent`` messages of one StreamPredictions call, in order."""
        try:
            for response in self._stub.StreamPredictions(
                self._request(request), timeout=self.timeout, metadata=self._metadata()
            ):
                try:
                    yield pb.StreamEvent.FromString(response.prediction)
                except DecodeError as error:
                    message = f"a streamed reply is not an ecco.v1.StreamEvent: {error}"
                    raise EccoError(502, "INTERNAL", message) from None
        except self._grpc.RpcError as error:
            raise self._error(error) from None

    def ping(self) -> str:
        from google.protobuf import empty_pb2

        try:
            return self._stub.Ping(empty_pb2.Empty(), timeout=self.timeout, metadata=self._metadata()).health
        except self._grpc.RpcError as error:
            raise self._error(error) from None

    def close(self) -> None:
        self._channel.close()
