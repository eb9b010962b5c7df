"""``EccoError``: one error type for both transports, with the HTTP status and the gRPC code name."""

from __future__ import annotations

from typing import Any

#: HTTP status -> gRPC code name, as TorchServe 0.12's frontend maps a handler's status for gRPC
#: (org.pytorch.serve.util.GRPCUtils.getGRPCStatusCode)
GRPC_CODE_FOR_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "RESOURCE_EXHAUSTED",
    416: "OUT_OF_RANGE",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
#: gRPC code name -> the HTTP status a REST client sees for the same error (ecco-serve's choices)
HTTP_FOR_GRPC_CODE = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 413,
    "OUT_OF_RANGE": 416,
    "CANCELLED": 499,
    "FAILED_PRECONDITION": 422,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "INTERNAL": 500,
    "UNKNOWN": 500,
}


def grpc_code_for_http(status: int) -> str:
    """The gRPC code name TorchServe gives a handler's HTTP ``status``."""
    if status in GRPC_CODE_FOR_HTTP:
        return GRPC_CODE_FOR_HTTP[status]
    if 200 <= status < 300:
        return "OK"
    if 400 <= status < 500:
        return "FAILED_PRECONDITION"
    return "INTERNAL"


class EccoError(Exception):
    """A request failed: ``status`` (HTTP), ``code`` (gRPC code name) and the server's ``message``.

    The same failure has the same ``(status, code)`` over REST and gRPC: 400/INVALID_ARGUMENT (the
    message names the field), 413/RESOURCE_EXHAUSTED (a server limit), 422/FAILED_PRECONDITION
    (non-finite result), 500/INTERNAL, 503/UNAVAILABLE (server not reachable).
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_http(cls, status: int, message: str) -> EccoError:
        return cls(status, grpc_code_for_http(status), message)

    @classmethod
    def from_grpc(cls, code: str, message: str) -> EccoError:
        return cls(HTTP_FOR_GRPC_CODE.get(code, 500), code, message)

    @classmethod
    def from_status(cls, status: Any) -> EccoError:
        """From the ``google.rpc.Status`` in a reply's ``error`` field (a row of a gRPC batch, or the
        last event of a REST stream that failed after it started)."""
        from google.rpc import code_pb2

        try:
            name = code_pb2.Code.Name(status.code)
        except ValueError:
            name = "UNKNOWN"
        return cls.from_grpc(name, status.message)
