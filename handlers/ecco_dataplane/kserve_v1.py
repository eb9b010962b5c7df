"""KServe v1 on TorchServe's REST API: ``POST /v1/models/{model}:predict`` (generate) and ``:explain``.

The body is ``{"instances": [request, ...]}`` (each request the proto3 JSON of an
``ecco.v1.ExplainRequest``), the reply ``{"predictions"|"explanations": [reply, ...]}`` in the same
order. No streams. A failure is the response's status with TorchServe's error body, naming the
instance: ``instances[1].generation.max_new_tokens: must be at least 1, got 0``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ecco_codec import Failure, load_json
from ecco_engine import InvalidRequest
from ecco_engine.errors import section
from ecco_serving.metrics import ObservedRequest

from .calls import JSON_TYPE, Call, Reply
from .rest import error_status_reply
from .transport import Transport

if TYPE_CHECKING:
    from .plane import DataPlane


class KServeV1(Transport):
    name = "kserve"

    def claims(self, headers: Mapping[str, str]) -> bool:
        return "explain" in headers and "url_path" not in headers

    def replies(self, plane: DataPlane, call: Call, observed: ObservedRequest) -> Iterator[Reply]:
        answers = []
        for i, instance in enumerate(_instances(self.require_body(call))):
            with section(f"instances[{i}]"):
                job = plane.decode(Call(json.dumps(instance).encode(), JSON_TYPE, call.url_kind), observed)
                if job.decoded.stream:
                    raise InvalidRequest(
                        "stream", "the KServe v1 paths do not stream; use /predictions or /explanations"
                    )
                (reply,) = plane.run(job, observed)
            answers.append(json.loads(reply.body))
        key = "explanations" if call.url_kind == "explain" else "predictions"
        yield Reply(json.dumps({key: answers}).encode(), JSON_TYPE)

    def failed(self, failure: Failure, call: Call, *, streamed: bool) -> Reply:
        return error_status_reply(failure)


def _instances(body: bytes | bytearray) -> list[Any]:
    envelope = load_json(body)  # bounded: depth and number sizes (ecco_codec.json_load)
    instances = envelope.get("instances") if isinstance(envelope, dict) else None
    if not isinstance(instances, list) or not instances:
        raise InvalidRequest("instances", "KServe v1 expects a non-empty list of requests under 'instances'")
    return instances


KSERVE_V1 = KServeV1()
