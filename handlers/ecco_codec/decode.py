"""Wire request (proto3 JSON or serialized ``ecco.v1.ExplainRequest``) -> ``ecco_engine.ExplainRequest``.

Every problem is an ``InvalidRequest`` whose field is the dotted wire path, e.g.
``generation.max_new_tokens`` or ``messages[0].role`` ("body" for the body as a whole).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from ecco_engine import (
    Aggregation,
    AttributionParams,
    ChatMessage,
    ExplainRequest,
    GenerationParams,
    Integration,
    InvalidRequest,
    TargetKind,
)
from ecco_proto import PROTOBUF_CONTENT_TYPES
from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .fields import present, reraise_at
from .internals_request import decode_internals, to_proto_internals
from .json_check import check_json

Kind = Literal["generate", "explain"]
Wire = Literal["json", "proto"]
JSON_CONTENT_TYPES = ("application/json", "text/json", "text/plain")

_KIND_TO_PROTO = {"generate": pb.GENERATE, "explain": pb.EXPLAIN}
_PROTO_TO_KIND: dict[int, Kind] = {pb.GENERATE: "generate", pb.EXPLAIN: "explain"}

#: proto enum value -> engine enum member, matched by name (a test checks both sides are complete)
TARGETS = {pb.TargetKind.Value(m.name): m for m in TargetKind}
AGGREGATIONS = {pb.Aggregation.Value(m.name): m for m in Aggregation}
INTEGRATIONS = {pb.Integration.Value(m.name): m for m in Integration}


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
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidRequest("body", f"not valid UTF-8 JSON (byte {error.start})") from None
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as error:
            raise InvalidRequest(
                "body", f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
            ) from None
    checked = check_json(body, pb.ExplainRequest.DESCRIPTOR)
    message = pb.ExplainRequest()
    try:
        json_format.ParseDict(checked, message, ignore_unknown_fields=False)
    except json_format.ParseError as error:  # check_json should have caught it; keep the message
        raise InvalidRequest("body", str(error).split("\n")[0]) from None
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
        raise InvalidRequest("body", "not a valid serialized ecco.v1.ExplainRequest") from None
    found = _unknown_field_path(message)
    if found:
        where, number = found.split(": ")
        raise InvalidRequest(where, f"unknown {number} (is the client's schema newer than the server's?)")
    return message


def _enum(message: Message, name: str, table: Mapping[int, Any], path: str) -> dict[str, Any]:
    value = getattr(message, name)
    if value == 0:  # *_UNSPECIFIED: engine default
        return {}
    if value not in table:
        raise InvalidRequest(path, f"unknown enum value {value}")
    return {name: table[value]}


def _generation(g: pb.GenerationParams) -> GenerationParams:
    kwargs = present(g, ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "seed"))
    if g.stop:
        kwargs["stop"] = tuple(g.stop)
    try:
        return GenerationParams(**kwargs)
    except InvalidRequest as error:
        raise reraise_at(error, f"generation.{error.field}") from None


def _attribution(a: pb.AttributionParams) -> AttributionParams:
    kwargs: dict[str, Any] = present(a, ("n_steps", "baseline", "completeness_tolerance", "max_n_steps"))
    if a.skip and a.methods:
        raise InvalidRequest("attribution.skip", f"skips attribution, so give no methods (got {list(a.methods)})")
    if a.methods or a.skip:
        kwargs["methods"] = tuple(a.methods)  # skip: () computes no attribution
    kwargs |= _enum(a, "target", TARGETS, "attribution.target")
    kwargs |= _enum(a, "aggregation", AGGREGATIONS, "attribution.aggregation")
    kwargs |= _enum(a, "integration", INTEGRATIONS, "attribution.integration")
    contrast = a.WhichOneof("contrast")
    if contrast is not None:
        kwargs["contrast_token"] = getattr(a, contrast)
    if a.positions:
        kwargs["positions"] = tuple(a.positions)
    try:
        return AttributionParams(**kwargs)
    except InvalidRequest as error:
        raise reraise_at(error, f"attribution.{error.field}") from None


def _messages(items: Any) -> tuple[ChatMessage, ...]:
    out = []
    for i, m in enumerate(items):
        try:
            out.append(ChatMessage(role=m.role, content=m.content))
        except InvalidRequest as error:
            raise reraise_at(error, f"messages[{i}].{error.field.rsplit('.', 1)[-1]}") from None
    return tuple(out)


def to_engine_request(message: pb.ExplainRequest) -> ExplainRequest:
    """The engine request for a parsed ``ecco.v1.ExplainRequest`` (omitted fields: engine defaults)."""
    generation = _generation(message.generation)
    attribution = _attribution(message.attribution)
    return ExplainRequest(
        prompt=message.prompt if message.HasField("prompt") else None,
        messages=_messages(message.messages),
        continuation=message.continuation if message.HasField("continuation") else None,
        generation=generation,
        attribution=attribution,
        internals=decode_internals(message.internals),
    )


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


def to_proto_request(
    request: ExplainRequest, kind: Kind = "explain", *, float16: bool = False, stream: bool = False
) -> pb.ExplainRequest:
    """The wire message for an engine request, every field set explicitly: the inverse of decoding
    (``stream`` is set only when true)."""
    g, a = request.generation, request.attribution
    generation = pb.GenerationParams(
        max_new_tokens=g.max_new_tokens,
        do_sample=g.do_sample,
        temperature=g.temperature,
        top_k=g.top_k,
        top_p=g.top_p,
        stop=list(g.stop),
    )
    if g.seed is not None:
        generation.seed = g.seed
    attribution = pb.AttributionParams(
        methods=list(a.methods),
        target=pb.TargetKind.Value(a.target.name),
        n_steps=a.n_steps,
        integration=pb.Integration.Value(a.integration.name),
        baseline=a.baseline,
        aggregation=pb.Aggregation.Value(a.aggregation.name),
        positions=list(a.positions or ()),
        max_n_steps=a.max_n_steps,
        skip=not a.methods,
    )
    if isinstance(a.contrast_token, str):
        attribution.contrast_token = a.contrast_token
    elif a.contrast_token is not None:
        attribution.contrast_token_id = a.contrast_token
    if a.completeness_tolerance is not None:
        attribution.completeness_tolerance = a.completeness_tolerance
    message = pb.ExplainRequest(
        kind=_KIND_TO_PROTO[kind],
        messages=[pb.ChatMessage(role=m.role, content=m.content) for m in request.messages],
        generation=generation,
        attribution=attribution,
        float16=float16,
        internals=to_proto_internals(request.internals),
    )
    if request.prompt is not None:
        message.prompt = request.prompt
    if request.continuation is not None:
        message.continuation = request.continuation
    if stream:
        message.stream = True
    return message
