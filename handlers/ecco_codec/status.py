"""Engine errors -> (HTTP status, gRPC status code name, client message), once, at the edge.

| error                               | HTTP | gRPC                | why                                        |
| ----------------------------------- | ---- | ------------------- | ------------------------------------------ |
| InvalidRequest, UnknownMethod       | 400  | INVALID_ARGUMENT    | the client sent something malformed        |
| LimitExceeded                       | 413  | RESOURCE_EXHAUSTED  | valid, but beyond the server's limits      |
| NonFiniteResult                     | 422  | FAILED_PRECONDITION | valid, but this model/input gives NaN/inf: |
|                                     |      |                     | retrying the same request will not help,   |
|                                     |      |                     | another target/baseline/precision may      |
| UnsupportedModel, anything else     | 500  | INTERNAL            | a server problem; generic message only     |

These are exactly the codes TorchServe 0.12's frontend derives from the HTTP status a handler raises
(``PredictionException(message, status)``): 400 -> INVALID_ARGUMENT, 413 -> RESOURCE_EXHAUSTED, other
4xx -> FAILED_PRECONDITION, 5xx -> INTERNAL. So the handler raises the HTTP status and both transports
agree.
"""

from __future__ import annotations

from ecco_engine import InvalidRequest, LimitExceeded, NonFiniteResult, UnsupportedModel

from .decode import WIRE_PATHS

INTERNAL_MESSAGE = "internal error while serving the request; see the server log"


def client_message(error: InvalidRequest) -> str:
    """``error``'s message with the engine's field name replaced by its wire path (``n_steps`` ->
    ``attribution.n_steps``), so REST and gRPC clients see the names they sent."""
    text = str(error)
    path = WIRE_PATHS.get(error.field)
    prefix = f"{error.field}: "
    if path and text.startswith(prefix):
        return f"{path}: {text[len(prefix) :]}"
    return text


def status_for(error: BaseException) -> tuple[int, str, str]:
    """``(http_status, grpc_code_name, message)`` for an exception raised while serving a request.

    Only engine errors expose their message; any other exception gives a generic message (no
    exception text, no stack trace), to be logged by the caller.
    """
    if isinstance(error, LimitExceeded):
        return 413, "RESOURCE_EXHAUSTED", client_message(error)
    if isinstance(error, InvalidRequest):  # includes UnknownMethod
        return 400, "INVALID_ARGUMENT", client_message(error)
    if isinstance(error, NonFiniteResult):
        return 422, "FAILED_PRECONDITION", f"non-finite result: {error}"
    if isinstance(error, UnsupportedModel):
        return 500, "INTERNAL", f"unsupported model: {error}"
    return 500, "INTERNAL", INTERNAL_MESSAGE
