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

import re
from dataclasses import fields
from types import FrameType

from ecco_engine import InvalidRequest, LimitExceeded, NonFiniteResult, UnsupportedModel
from ecco_engine.internals import InternalsParams

from .decode import WIRE_PATHS

INTERNAL_MESSAGE = "internal error while serving the request; see the server log"
#: the engine's internals field names (roots of ``watch[1]``, ``interventions[0].mode`` ...)
INTERNALS_FIELDS = frozenset(f.name for f in fields(InternalsParams))
INTERNALS_MODULE = "ecco_engine.internals"


def _raised_in_internals(error: BaseException) -> bool:
    """Whether the call stack at the raise site ran through ``ecco_engine.internals``.

    Tells the internals' ``top_k`` / ``positions`` from the generation's and the attribution's:
    the engine names fields without their section.
    """
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    frame: FrameType | None = tb.tb_frame
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(INTERNALS_MODULE):
            return True
        frame = frame.f_back
    return False


def wire_path(error: InvalidRequest) -> str:
    """The wire path of ``error.field``: ``n_steps`` -> ``attribution.n_steps``, ``watch[1]`` ->
    ``internals.watch[1]``; a field that already is a wire path is returned as it is."""
    field = error.field
    root = re.split(r"[.\[]", field, maxsplit=1)[0]
    if root in INTERNALS_FIELDS and (root not in WIRE_PATHS or _raised_in_internals(error)):
        return f"internals.{field}"
    return WIRE_PATHS.get(field, field)


def client_message(error: InvalidRequest) -> str:
    """``error``'s message with the engine's field name replaced by its wire path (``n_steps`` ->
    ``attribution.n_steps``, ``top_k`` raised by the internals -> ``internals.top_k``), so REST and
    gRPC clients see the names they sent."""
    text = str(error)
    prefix = f"{error.field}: "
    if text.startswith(prefix):
        return f"{wire_path(error)}: {text[len(prefix) :]}"
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
