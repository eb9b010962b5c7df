"""ecco_codec: the only place that maps the wire (``ecco.v1`` protos, proto3 JSON) to engine types and back.

Imports ``ecco_engine`` and the generated ``ecco_proto`` modules; nothing of TorchServe or gRPC::

    decoded = decode_request(body, content_type="application/json", url_kind="explain")
    explanation = explainer.explain(decoded.request)
    reply = encode_explanation(explanation, decoded, model_name="smollm2",    # dict (JSON) or bytes (proto)
                               tokenizer=explainer.tokenizer)             # names internals' token ids
    http_status, grpc_code, message = status_for(error)   # a Failure, on any exception
    reply = encode_error(grpc_code, message, decoded.wire)   # where no status can travel (gRPC batch row)

``load_json(body)``: JSON text with nesting depth and number sizes bounded (KServe v1 envelopes).

Streams (``decoded.stream``): ``encode_stream_token`` / ``encode_stream_row`` per engine event, then
``encode_stream_summary``.
"""

from __future__ import annotations

from .arrays import from_int_matrix, from_matrix, to_int_matrix, to_matrix
from .decode import (
    JSON_CONTENT_TYPES,
    Decoded,
    Kind,
    Wire,
    decode_internals,
    decode_request,
    to_engine_request,
    wire_of,
)
from .encode import (
    ENGINE_VERSION,
    encode_error,
    encode_explanation,
    encode_generation,
    encode_stream_row,
    encode_stream_summary,
    encode_stream_token,
    to_attribution,
    to_explain_response,
    to_generate_response,
    to_internals_result,
    to_status,
    to_wire,
)
from .json_load import load_json
from .status import INTERNAL_MESSAGE, Failure, status_for

__all__ = [
    "ENGINE_VERSION",
    "INTERNAL_MESSAGE",
    "JSON_CONTENT_TYPES",
    "Decoded",
    "Failure",
    "Kind",
    "Wire",
    "decode_internals",
    "decode_request",
    "encode_error",
    "encode_explanation",
    "encode_generation",
    "encode_stream_row",
    "encode_stream_summary",
    "encode_stream_token",
    "from_int_matrix",
    "from_matrix",
    "load_json",
    "status_for",
    "to_attribution",
    "to_engine_request",
    "to_explain_response",
    "to_generate_response",
    "to_int_matrix",
    "to_internals_result",
    "to_matrix",
    "to_status",
    "to_wire",
    "wire_of",
]
