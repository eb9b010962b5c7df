"""gRPC: TorchServe's ``InferenceAPIsService`` (``Predictions``, ``StreamPredictions``).

``input["body"]`` carries a serialized ``ecco.v1.ExplainRequest`` (or its proto3 JSON as bytes);
``kind`` says generate or explain. The reply comes in the request's wire, as one message.

``stream`` is refused (400 / INVALID_ARGUMENT naming ``stream``) unless the model opts in
(``Grpc(streams=True)``, ``handler.grpc_stream`` in model-config.yaml): TorchServe 0.12's worker cannot
tell ``StreamPredictions`` from ``Predictions`` (the frontend sends both as the same inference message,
with no header, under a random request id), and a second message for a ``Predictions`` call throws
``IllegalStateException: Stream is already completed`` in the frontend, which drops the worker for good.
Opted in (trusted clients only), a request with ``stream`` gets each ``StreamEvent`` as its own message
(StreamPredictions), the summary last.

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

STREAM_REFUSED = (
    "not served over gRPC by this model: TorchServe cannot tell StreamPredictions from Predictions, and "
    "a stream on Predictions would take the model down; stream over REST (JSON lines) or send no stream"
)


class Grpc(Transport):
    name = "grpc"
    body_name = 'input["body"]'

    def __init__(self, *, streams: bool = False) -> None:
        #: honour ``stream`` (one message per event): only where no client calls Predictions with it
        self.streams = streams

    def claims(self, headers: Mapping[str, str]) -> bool:
        return "explain" not in headers  # TorchServe passes gRPC rows without HTTP headers

    def replies(self, plane: DataPlane, call: Call, observed: ObservedRequest) -> Iterator[Reply]:
        self.require_body(call)
        job = plane.decode(call, observed)
        if job.decoded.stream and not self.streams:
            raise InvalidRequest("stream", STREAM_REFUSED)
        return plane.run(job, observed)

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


#: refuses ``stream``: the default, safe whatever a client sends on whichever RPC
GRPC = Grpc()
#: streams on ``stream``: a model whose clients never set it on a Predictions call (opt-in)
GRPC_STREAMING = Grpc(streams=True)
