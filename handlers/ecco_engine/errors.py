"""The engine's exceptions: one root, mapped to status codes once, at the edge (the handler).

Every message names the offending field and, where there is one, the allowed range.
"""

from __future__ import annotations


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""

    #: machine-readable kind, stable across versions (the handler maps it to HTTP / gRPC codes)
    kind = "engine_error"


class InvalidRequest(EngineError, ValueError):
    """The request is malformed or asks for something impossible (client error)."""

    kind = "invalid_request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownMethod(InvalidRequest):
    """An attribution method name that is not in the registry."""

    kind = "unknown_method"


class LimitExceeded(InvalidRequest):
    """The request is valid but larger than the server's configured limits."""

    kind = "limit_exceeded"


class UnsupportedModel(EngineError):
    """The model's structure could not be mapped onto the parts the engine needs."""

    kind = "unsupported_model"


class NonFiniteResult(EngineError):
    """A computation produced NaN or infinity; never returned silently."""

    kind = "non_finite_result"
