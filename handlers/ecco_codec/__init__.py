"""ecco_codec: the only place that maps the wire (``ecco.v1`` protos, proto3 JSON) to engine types and back.

Imports ``ecco_engine`` and the generated ``ecco_proto`` modules; nothing of TorchServe or gRPC::

    decoded = decode_request(body, content_type="application/json", url_kind="explain")
    explanation = explainer.explain(decoded.request)
    reply = encode_explanation(explanation, decoded, model_name="smollm2")   # dict (JSON) or bytes (proto)
    http_status, grpc_code, message = status_for(error)                       # on any exception
"""

from __future__ import annotations

from .decode import (
    JSON_CONTENT_TYPES,
    WIRE_PATHS,
    Decoded,
    Kind,
    Wire,
    decode_request,
    to_engine_request,
    to_proto_request,
)
from .encode import (
    ENGINE_VERSION,
    encode_explanation,
    encode_generation,
    encode_stream_attribution_row,
    encode_stream_summary,
    encode_stream_token,
    from_matrix,
    to_attribution,
    to_explain_response,
    to_generate_response,
    to_matrix,
    to_wire,
)
from .status import INTERNAL_MESSAGE, client_message, status_for

__all__ = [
    "ENGINE_VERSION",
    "INTERNAL_MESSAGE",
    "JSON_CONTENT_TYPES",
    "WIRE_PATHS",
    "Decoded",
    "Kind",
    "Wire",
    "client_message",
    "decode_request",
    "encode_explanation",
    "encode_generation",
    "encode_stream_attribution_row",
    "encode_stream_summary",
    "encode_stream_token",
    "from_matrix",
    "status_for",
    "to_attribution",
    "to_engine_request",
    "to_explain_response",
    "to_generate_response",
    "to_matrix",
    "to_proto_request",
    "to_wire",
]
