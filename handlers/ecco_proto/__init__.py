"""ecco_proto: Python modules generated from ``protos/`` (``make protos``), plus the wire constants.

Needs only protobuf (and grpcio for the ``*_pb2_grpc`` stubs): imported by the TorchServe handler's
codec and by the torch-free client alike.

- ``ecco_proto.ecco.v1.ecco_pb2``: the ecco.v1 messages (``ExplainRequest``, ``ExplainResponse`` ...)
- ``ecco_proto.torchserve.inference_pb2`` / ``inference_pb2_grpc``: TorchServe's gRPC inference API
- ``ecco_proto.torchserve.management_pb2`` / ``management_pb2_grpc``: TorchServe's gRPC management API
"""

from __future__ import annotations

#: the key of TorchServe's ``PredictionsRequest.input`` map that carries the serialized ExplainRequest
#: (also the name TorchServe gives a REST request's body)
INPUT_KEY = "body"
#: content types of a binary (serialized protobuf) body; JSON bodies are ``application/json``
PROTOBUF_CONTENT_TYPES = ("application/x-protobuf", "application/protobuf", "application/octet-stream")

try:
    from .ecco.v1 import ecco_pb2  # noqa: F401  (fails early, with a hint, when code was not generated)
except ModuleNotFoundError as error:  # pragma: no cover - only on a tree where `make protos` never ran
    if error.name and error.name.startswith(__name__):
        raise ModuleNotFoundError(
            f"{error}: the ecco_proto modules are generated; run `make protos` (python protos/generate.py)",
            name=error.name,
        ) from error
    raise
