"""REST: TorchServe's ``POST /predictions/{model}`` (generate) and ``POST /explanations/{model}`` (explain).

The body is the proto3 JSON of ``ecco.v1.ExplainRequest`` (or its serialized bytes with
``content-type: application/x-protobuf``); the reply comes in the same wire. A request with
``stream`` gets a chunked reply, one JSON ``StreamEvent`` per line (so it must be sent as JSON).

A failure is the response's status with TorchServe's error body ``{"code", "type", "message"}``
(``type``: the gRPC code name); a stream that fails after its first line (its 200 is gone) ends with
an ``error`` StreamEvent line instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from ecco_codec import Failure, encode_error
from ecco_engine import InvalidRequest
from ecco_serving.metrics import ObservedRequest

from .calls import JSON_TYPE, Call, Reply, to_reply
from .transport import Transport

if TYPE_CHECKING:
    from .plane import DataPlane


class Rest(Transport):
    name = "rest"

    def claims(self, headers: Mapping[str, str]) -> bool:
        return "explain" in headers and "url_path" in headers

    def replies(self, plane: DataPlane, call: Call, observed: ObservedRequest) -> Iterator[Reply]:
        self.require_body(call)
        job = plane.decode(call, observed)
        if job.decoded.stream and job.decoded.wire != "json":
            raise InvalidRequest("stream", "streaming over REST sends JSON lines; send the request as JSON")
        return plane.run(job, observed, json_lines=True)

    def failed(self, failure: Failure, call: Call, *, streamed: bool) -> Reply:
        if streamed:
            return to_reply(encode_error(failure.code, failure.message, "json"), line=True, failure=failure)
        return error_status_reply(failure)


def error_status_reply(failure: Failure) -> Reply:
    """TorchServe's REST error body for ``failure``, to be sent with the failure's status."""
    body = {"code": failure.status, "type": failure.code, "message": failure.message}
    return Reply(json.dumps(body).encode() + b"\n", JSON_TYPE, failure=failure, as_status=True)


REST = Rest()
