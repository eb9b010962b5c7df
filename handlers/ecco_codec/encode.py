"""Engine results -> wire replies (``ecco.v1`` messages): a JSON-able dict or serialized bytes.

The reply uses the request's wire (``Decoded.wire``): "json" gives the proto3 JSON mapping with the
proto field names (snake_case) and every field without presence printed (empty lists, zeros), so a
client sees the same keys every time; "proto" gives the serialized message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

import ecco_engine
from ecco_engine import Attribution, Explanation, GenerationResult, Timing
from ecco_engine.attribution import AttributionRow
from ecco_engine.explainer import GeneratedToken
from ecco_engine.internals import InternalsResult
from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .decode import Decoded, Wire
from .result_fields import Chain, Encoding, to_message

ENGINE_VERSION: str = ecco_engine.__version__


@dataclass(frozen=True)
class Served:
    """What a reply says besides the engine's result: the served model, the engine's version, and every
    stage's time (the engine's, then the server's)."""

    model: str
    timings: tuple[Timing, ...]
    engine_version: str = ENGINE_VERSION


def to_attribution(a: Attribution, *, float16: bool = False) -> pb.Attribution:
    """The wire form of one engine ``Attribution``."""
    return to_message(pb.Attribution, a, Encoding(float16=float16))


def to_internals_result(result: InternalsResult, *, float16: bool = False, tokenizer=None) -> pb.InternalsResult:
    """The wire form of an engine ``InternalsResult``; with ``tokenizer``, ``token_texts`` is filled."""
    return to_message(pb.InternalsResult, result, Encoding(float16=float16, tokenizer=tokenizer))


def to_generate_response(
    result: GenerationResult, *, model_name: str, extra_timings: Sequence[Timing] = ()
) -> pb.GenerateResponse:
    """The ``GenerateResponse`` for a generation; ``extra_timings`` (e.g. the handler's) follow the engine's."""
    served = Served(model_name, (*result.timings, *extra_timings))
    return to_message(pb.GenerateResponse, Chain(served, result), Encoding())


def to_explain_response(
    explanation: Explanation,
    *,
    model_name: str,
    float16: bool = False,
    extra_timings: Sequence[Timing] = (),
    tokenizer=None,
) -> pb.ExplainResponse:
    """The ``ExplainResponse`` for an explanation; ``extra_timings`` follow the engine's.

    ``tokenizer`` (optional, anything with ``decode(ids, skip_special_tokens=...)``): fills
    ``internals.token_texts`` with the text of every token id the internals mention.
    """
    served = Served(model_name, (*explanation.timings, *extra_timings))
    source = Chain(served, explanation, explanation.generation)
    return to_message(pb.ExplainResponse, source, Encoding(float16=float16, tokenizer=tokenizer))


def to_wire(message: Message, wire: str) -> bytes | dict[str, Any]:
    """``message`` as the JSON-able dict (wire "json") or serialized bytes (wire "proto")."""
    if wire == "proto":
        return message.SerializeToString()
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def encode_generation(
    result: GenerationResult, decoded: Decoded, *, model_name: str, extra_timings: Sequence[Timing] = ()
) -> bytes | dict[str, Any]:
    """The reply to a generate request, in the request's wire format."""
    return to_wire(to_generate_response(result, model_name=model_name, extra_timings=extra_timings), decoded.wire)


def encode_explanation(
    explanation: Explanation,
    decoded: Decoded,
    *,
    model_name: str,
    extra_timings: Sequence[Timing] = (),
    tokenizer=None,
) -> bytes | dict[str, Any]:
    """The reply to an explain request, in the request's wire format (float16 matrices if asked).

    Pass the model's ``tokenizer`` so the reply names the tokens of its internals (``token_texts``)."""
    message = to_explain_response(
        explanation, model_name=model_name, float16=decoded.float16, extra_timings=extra_timings, tokenizer=tokenizer
    )
    return to_wire(message, decoded.wire)


# ---- streaming (ExplainRequest.stream): one StreamEvent per message ------------------------------
def encode_stream_token(token: GeneratedToken, decoded: Decoded) -> bytes | dict[str, Any]:
    """A generated token as soon as it is produced, with the engine's index, position and offsets."""
    event = pb.StreamEvent(token=to_message(pb.GeneratedToken, token, Encoding()))
    return to_wire(event, decoded.wire)


def encode_stream_row(row: AttributionRow, decoded: Decoded) -> bytes | dict[str, Any]:
    """One explained token's attribution row for one method, as soon as the engine computed it.

    ``scores`` travel as a ``(1, target_position)`` matrix (float16 if the request asked for it);
    integrated gradients' baseline score, convergence delta and steps are set when the row has them."""
    message = to_message(pb.AttributionRow, row, Encoding(float16=decoded.float16))
    return to_wire(pb.StreamEvent(attribution_row=message), decoded.wire)


def to_status(code: str, message: str) -> status_pb2.Status:
    """A ``google.rpc.Status`` from a gRPC code name (``status_for``'s second item) and a message."""
    try:
        number = code_pb2.Code.Value(code)
    except ValueError:
        raise ValueError(f"not a google.rpc.Code name: {code!r}") from None
    return status_pb2.Status(code=number, message=message)


def encode_error(code: str, message: str, wire: Wire) -> bytes | dict[str, Any]:
    """The reply of a request that failed but cannot carry its own status: only ``error`` set.

    ``code``: a gRPC code name ("INVALID_ARGUMENT", as ``status_for`` gives it). The field number of
    ``error`` is 15 in ``GenerateResponse``, ``ExplainResponse`` and ``StreamEvent``, so the same bytes
    (wire "proto") or the same ``{"error": {"code": 3, "message": ...}}`` (wire "json") parse as any
    of them: the caller need not know whether the request was a stream or what kind it was."""
    event = pb.StreamEvent(error=to_status(code, message))
    if wire == "proto":
        return event.SerializeToString()
    return json_format.MessageToDict(event, preserving_proto_field_name=True)


def encode_stream_summary(
    result: GenerationResult | Explanation,
    decoded: Decoded,
    *,
    model_name: str,
    extra_timings: Sequence[Timing] = (),
    tokenizer=None,
) -> bytes | dict[str, Any]:
    """The last StreamEvent: the full reply (``generate_summary`` or ``explain_summary`` by result type)."""
    if isinstance(result, Explanation):
        summary = to_explain_response(
            result, model_name=model_name, float16=decoded.float16, extra_timings=extra_timings, tokenizer=tokenizer
        )
        event = pb.StreamEvent(explain_summary=summary)
    else:
        event = pb.StreamEvent(
            generate_summary=to_generate_response(result, model_name=model_name, extra_timings=extra_timings)
        )
    return to_wire(event, decoded.wire)
