"""What ``ecco ui`` says to its page: the page's request in, one JSON line per stream item out.

The page posts the proto3 JSON of an ``ecco.v1.ExplainRequest`` (any field; ``kind`` and ``stream`` are
set here). The reply relays the TorchServe stream as JSON lines the page draws without decoding anything:

- ``{"token": {"index", "position", "id", "text"}}`` per generated token (``position`` is absolute);
- ``{"row": {"method", "target_position", "scores", "target_score", "baseline_score",
  "convergence_delta", "n_steps"}}`` per explained token and method; ``scores`` has length
  ``target_position`` (one per earlier token), floats as lists, a non-finite number as null;
- ``{"views": view_data(reply)}`` once, at the end: everything the views draw (``views.view_data``);
- ``{"error": {"status", "code", "message"}}``: the stream failed after it started (before, the reply
  is that HTTP status with the same object as its body).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .errors import EccoError
from .results import to_json
from .views import view_data
from .views.wire import field, matrix, number


def page_request(body: Any) -> pb.ExplainRequest:
    """The page's request body (a proto3 JSON ``ExplainRequest``) as a message; an unknown field or a
    wrong type is a 400 naming it (the server validates values)."""
    if not isinstance(body, dict):
        raise EccoError.from_http(400, "the request body is not a JSON object (an ecco.v1.ExplainRequest)")
    message = pb.ExplainRequest()
    try:
        json_format.ParseDict(body, message)
    except json_format.ParseError as error:
        raise EccoError.from_http(400, str(error)) from None
    return message


def page_event(event: pb.StreamEvent) -> dict[str, Any]:
    """One ``StreamEvent`` as the page's JSON line (see the module doc), read from its proto3 JSON as the
    views read a reply (so a row's numbers are written exactly as the summary's)."""
    message = to_json(event)
    token = field(message, "token")
    if token is not None:
        piece = field(token, "token", {})
        return {
            "token": {
                "index": int(field(token, "index", 0)),
                "position": int(field(token, "position", 0)),
                "id": int(field(piece, "id", 0)),
                "text": str(field(piece, "text", "")),
            }
        }
    row = field(message, "attribution_row")
    if row is not None:
        scores = matrix(field(row, "scores"))
        steps = field(row, "n_steps")
        return {
            "row": {
                "method": str(field(row, "method", "")),
                "target_position": int(field(row, "target_position", 0)),
                "scores": scores[0] if scores else [],
                "target_score": number(field(row, "target_score", 0.0)),
                "baseline_score": number(field(row, "baseline_score")),
                "convergence_delta": number(field(row, "convergence_delta")),
                "n_steps": None if steps is None else int(steps),
            }
        }
    summary = field(message, "explain_summary") or field(message, "generate_summary")
    if summary is not None:
        return {"views": view_data(summary)}
    raise ValueError("the server sent an empty StreamEvent")


def page_error(error: EccoError) -> dict[str, Any]:
    """An ``EccoError`` as the page reads it."""
    return {"status": error.status, "code": error.code, "message": error.message}
