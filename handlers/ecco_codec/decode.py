"""Wire request (proto3 JSON or serialized ``ecco.v1.ExplainRequest``) -> ``ecco_engine.ExplainRequest``.

Every problem is an ``InvalidRequest`` whose field is the dotted wire path, e.g.
``generation.max_new_tokens`` or ``messages[0].role`` ("body" for the body as a whole).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from ecco_engine import ExplainRequest, InvalidRequest
from ecco_engine.internals import InternalsParams
from ecco_proto import PROTOBUF_CONTENT_TYPES
from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .fields import to_engine
from .json_check import check_json, fill_message
from .json_load import load_json

Kind = Literal["generate", "explain"]
Wire = Literal["json", "proto"]
JSON_CONTENT_TYPES = ("application/json", "text/json", "text/plain")

_PROTO_TO_KIND: dict[int, Kind] = {pb.GENERATE: "generate", pb.EXPLAIN: "explain"}


@dataclass(frozen=True)
class Decoded:
    """A decoded request: what to do, the engine request, and how to encode the reply."""

    kind: Kind
    request: ExplainRequest
    #: the body's encoding; the reply uses the same ("json": a dict, "proto": serialized bytes)
    wire: Wire
    #: the client asked for float16 attribution matrices
    float16: bool
    #: the client asked for a stream of ``StreamEvent`` (``ExplainRequest.stream``): gRPC
    #: StreamPredictions, or REST with one JSON event per line
    stream: bool = False


def _parse_json(body: Any) -> pb.ExplainRequest:
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        body = load_json(body)
    message = pb.ExplainRequest()
    fill_message(check_json(body, pb.ExplainRequest.DESCRIPTOR), message)
    return message


def _unknown_field_path(message: Message, path: str = "") -> str | None:
    """The wire path of the first field number the schema does not know, if any (binary bodies)."""
    unknown = UnknownFieldSet(message)
    if len(unknown):
        return f"{path or 'body'}: field number {unknown[0].field_number}"
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        for i, item in enumerate(value if field.is_repeated else [value]):
            here = f"{path}.{field.name}" if path else field.name
            found = _unknown_field_path(item, f"{here}[{i}]" if field.is_repeated else here)
            if found:
                return found
    return None


def _parse_proto(body: bytes) -> pb.ExplainRequest:
    message = pb.ExplainRequest()
    try:
        message.ParseFromString(body)
    except DecodeError:
        raise InvalidRequest(
            "body", "not a valid serialized ecco.v1.ExplainRequest (malformed, truncated or nested too deeply)"
        ) from None
    found = _unknown_field_path(message)
    if found:
        where, number = found.split(": ")
        raise InvalidRequest(where, f"unknown {number} (is the client's schema newer than the server's?)")
    return message


def to_engine_request(message: pb.ExplainRequest) -> ExplainRequest:
    """The engine request for a parsed ``ecco.v1.ExplainRequest`` (omitted fields: engine defaults)."""
    request: ExplainRequest = to_engine(message, ExplainRequest)
    return request


def decode_internals(message: pb.InternalsParams) -> InternalsParams:
    """The engine's ``InternalsParams`` for the wire message; errors name ``internals.<field>``."""
    params: InternalsParams = to_engine(message, InternalsParams, "internals")
    return params


def wire_of(body: Any, content_type: str | None = None) -> Wire:
    """The wire of a request body: by ``content_type`` if given (an unsupported one raises
    ``InvalidRequest`` on "content-type"), else a dict / str is JSON and bytes are JSON when they
    start with ``{``, else protobuf. Also the wire of an error reply to a body that failed to decode."""
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        if media in PROTOBUF_CONTENT_TYPES or media.startswith("application/grpc"):
            return "proto"
        if media in JSON_CONTENT_TYPES or media.endswith("+json"):
            return "json"
        raise InvalidRequest("content-type", f"unsupported {media!r}; send application/json or application/x-protobuf")
    if isinstance(body, (dict, str)):
        return "json"
    if not isinstance(body, (bytes, bytearray, memoryview)):
        return "proto"
    head = bytes(body[:64]).lstrip()
    return "json" if head[:1] == b"{" else "proto"


def _kind(message: pb.ExplainRequest, url_kind: str | None) -> Kind:
    if message.kind not in (0, *_PROTO_TO_KIND):
        raise InvalidRequest("kind", f"unknown enum value {message.kind}")
    body_kind = _PROTO_TO_KIND.get(message.kind)
    if url_kind is None:
        return body_kind or "generate"
    if body_kind is not None and body_kind != url_kind:
        raise InvalidRequest(
            "kind",
            f"{pb.RequestKind.Name(message.kind)} in the body disagrees with the URL, which asks to {url_kind}",
        )
    return url_kind  # type: ignore[return-value]


def decode_request(body: Any, *, content_type: str | None = None, url_kind: str | None = None) -> Decoded:
    """Decode one request body.

    ``body``: bytes / bytearray / str (JSON text or serialized proto) or an already-parsed JSON dict
    (TorchServe hands ``application/json`` bodies over parsed). ``content_type`` picks the wire format
    (JSON or protobuf); without it a dict or str is JSON and bytes are JSON when they start with ``{``,
    else protobuf. ``url_kind``: "generate" (/predictions) or "explain" (/explanations) on REST, None on
    gRPC (then the body's ``kind`` decides, defaulting to generate).
    """
    if url_kind not in (None, "generate", "explain"):
        raise ValueError(f"url_kind must be None, 'generate' or 'explain', got {url_kind!r}")
    if body is None or (isinstance(body, (bytes, bytearray, str)) and not body):
        raise InvalidRequest("body", "is empty; send an ecco.v1.ExplainRequest as JSON or protobuf")
    if not isinstance(body, (dict, str, bytes, bytearray, memoryview)):
        raise InvalidRequest("body", f"unsupported body of type {type(body).__name__}")
    wire = wire_of(body, content_type)
    if wire == "json":
        message = _parse_json(body)
    else:
        if isinstance(body, dict):
            raise InvalidRequest("content-type", "a protobuf content type with a JSON body")
        message = _parse_proto(body.encode("utf-8") if isinstance(body, str) else bytes(body))
    kind = _kind(message, url_kind)
    return Decoded(
        kind=kind, request=to_engine_request(message), wire=wire, float16=message.float16, stream=message.stream
    )
