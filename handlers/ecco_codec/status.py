"""Errors -> ``Failure`` (HTTP status, gRPC status code name, client message), once, at the edge.

| error                               | HTTP | gRPC                | why                                        |
| ----------------------------------- | ---- | ------------------- | ------------------------------------------ |
| InvalidRequest, UnknownMethod       | 400  | INVALID_ARGUMENT    | the client sent something malformed        |
| LimitExceeded                       | 413  | RESOURCE_EXHAUSTED  | valid, but beyond the server's limits      |
| NonFiniteResult                     | 422  | FAILED_PRECONDITION | valid, but this model/input gives NaN/inf: |
|                                     |      |                     | retrying the same request will not help,   |
|                                     |      |                     | another target/baseline/precision may      |
| DeadlineExceeded                    | 504  | DEADLINE_EXCEEDED   | the work ran past the request's deadline   |
|                                     |      |                     | (``deadline_seconds`` or the server's);    |
|                                     |      |                     | the worker is free again at once           |
| UnsupportedModel, anything else     | 500  | INTERNAL            | a server problem; generic message only     |

These are exactly the codes TorchServe 0.12's frontend derives from the HTTP status a handler raises
(``PredictionException(message, status)``, ``GRPCUtils.getGRPCStatusCode``): 400 -> INVALID_ARGUMENT,
413 -> RESOURCE_EXHAUSTED, 504 -> DEADLINE_EXCEEDED, other 4xx -> FAILED_PRECONDITION, other 5xx ->
INTERNAL. So the handler raises the HTTP status and both transports agree.

A field error's message is ``str(error)``: the wire path its raiser named (the codec and the
``Explainer`` name full paths: ``internals.top_k``, ``generation.max_new_tokens``) and the reason.
"""

from __future__ import annotations

from typing import NamedTuple

from ecco_engine import DeadlineExceeded, InvalidRequest, LimitExceeded, NonFiniteResult, UnsupportedModel

INTERNAL_MESSAGE = "internal error while serving the request; see the server log"


class Failure(NamedTuple):
    """What a failed request tells its client, on every transport."""

    status: int  # HTTP status
    code: str  # gRPC status code name ("INVALID_ARGUMENT")
    message: str


def status_for(error: BaseException) -> Failure:
    """The ``Failure`` an exception raised while serving a request becomes.

    Only engine errors expose their message; any other exception gives a generic message (no
    exception text, no stack trace), to be logged by the caller.
    """
    if isinstance(error, LimitExceeded):
        return Failure(413, "RESOURCE_EXHAUSTED", str(error))
    if isinstance(error, InvalidRequest):  # includes UnknownMethod
        return Failure(400, "INVALID_ARGUMENT", str(error))
    if isinstance(error, NonFiniteResult):
        return Failure(422, "FAILED_PRECONDITION", f"non-finite result: {error}")
    if isinstance(error, DeadlineExceeded):
        return Failure(504, "DEADLINE_EXCEEDED", str(error))
    if isinstance(error, UnsupportedModel):
        return Failure(500, "INTERNAL", f"unsupported model: {error}")
    return Failure(500, "INTERNAL", INTERNAL_MESSAGE)
