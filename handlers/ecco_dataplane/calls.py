"""What passes between a carrier (TorchServe, a test server), a transport adapter and the data plane.

A ``Call`` is one request as it arrived; a ``Reply`` is one message to send back: zero or more
stream events (``final=False``), then exactly one final reply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ecco_codec import Failure, Kind

JSON_TYPE = "application/json"
PROTO_TYPE = "application/x-protobuf"


@dataclass(frozen=True)
class Call:
    """One request as its carrier hands it over."""

    #: the request's bytes; None: the request has none (gRPC: another ``input`` key)
    body: bytes | bytearray | None
    #: the media type without parameters (``media_type``); None: the body tells (JSON or protobuf)
    content_type: str | None = None
    #: what the URL asks for (REST ``/predictions`` generate, ``/explanations`` explain); None: the
    #: request's ``kind`` field (gRPC)
    url_kind: Kind | None = None


@dataclass(frozen=True)
class Reply:
    """One message of a call's answer, as bytes to send."""

    body: bytes
    content_type: str
    #: False: a stream event, to send now; True: the call's last reply
    final: bool = True
    #: the call failed: what its client is told (None on success)
    failure: Failure | None = None
    #: the carrier sends ``failure`` as the response's status (REST before any stream event);
    #: otherwise the body carries it (gRPC, or a REST stream that already sent its 200)
    as_status: bool = False


def to_reply(
    payload: bytes | dict[str, Any], *, line: bool = False, final: bool = True, failure: Failure | None = None
) -> Reply:
    """A codec reply (a dict on the JSON wire, bytes on the protobuf wire) as a ``Reply``;
    ``line``: JSON ends with a newline (one line of a JSON-lines stream)."""
    if isinstance(payload, dict):
        return Reply(json.dumps(payload).encode() + (b"\n" if line else b""), JSON_TYPE, final, failure)
    return Reply(payload, PROTO_TYPE, final, failure)


def media_type(content_type: str | None) -> str | None:
    """``"application/json; charset=utf-8"`` -> ``"application/json"`` (None stays None)."""
    return content_type.split(";")[0].strip() if content_type else None
