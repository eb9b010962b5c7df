"""gRPC: TorchServe's ``InferenceAPIsService`` (``Predictions``, ``StreamPredictions``).

``input["body"]`` carries a serialized ``ecco.v1.ExplainRequest`` (or its proto3 JSON as bytes);
``kind`` says generate or explain. The reply comes in the request's wire; a request with ``stream``
gets each ``StreamEvent`` as its own message (StreamPredictions), the summary last.

A failure travels in the final reply's ``error`` field (``ecco_codec.encode_error``: a
``google.rpc.Status`` that parses as the reply or as a StreamEvent), in the request's wire ("proto"
when that is unknown). A carrier that can give the call a status (TorchServe: a gRPC call alone in
its batch) uses ``Reply.failure`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from ecco_codec import Failure, Wire, encode_error, wire_of
from ecco_engine import InvalidRequest
from ecco_serving.metrics import ObservedRequest

from .calls import Call, Reply, to_reply
from .transport import Transport

if TYPE_CHECKING:
    from .plane import DataPlane


class Grpc(Transport):
    name = "grpc"
    body_name = 'input["body"]'

    def claims(self, headers: Mapping[str, str]) -> bool:
        return "explain" not in headers  # TorchServe passes gRPC rows without HTTP headers

    def replies(self, plane: DataPlane, call: Call, observed: ObservedRequest) -> Iterator[Reply]:
        self.require_body(call)
        return plane.run(plane.decode(call, observed), observed)

    def failed(self, failure: Failure, call: Call, *, streamed: bool) -> Reply:
        return to_reply(encode_error(failure.code, failure.message, _error_wire(call)), failure=failure)


def _error_wire(call: Call) -> Wire:
    """The wire of an error reply: the request's, "proto" when that is unknown."""
    if call.body is None:
        return "proto"
    try:
        return wire_of(call.body, call.content_type)
    except InvalidRequest:  # an unsupported content type
        return "proto"


GRPC = Grpc()
