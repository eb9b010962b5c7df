"""The engine's exceptions: one root, mapped to status codes once, at the edge (the data plane).

A field error names the offending field by its wire path and, apart from it, the reason (with the
allowed range where there is one): ``InvalidRequest("generation.max_new_tokens", "must be at least 1,
got 0")``. A part of the engine that validates one section of the request names fields within that
section (``top_k``); where the ``Explainer`` enters the section it prefixes them once (``section``),
so every error leaving the ``Explainer`` carries the full path (``internals.top_k``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""


class InvalidRequest(EngineError, ValueError):
    """The request is malformed or asks for something impossible (client error).

    ``str(error)`` is ``"<field>: <reason>"``.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        #: the wire path of the offending field (``attribution.n_steps``, ``internals.watch[1]``)
        self.field = field
        #: what is wrong with it, without the field
        self.reason = reason

    def within(self, path: str) -> Self:
        """The same error (same class, same reason) with its field inside ``path``:
        ``top_k`` within ``internals`` is ``internals.top_k``."""
        return type(self)(f"{path}.{self.field}", self.reason)


class UnknownMethod(InvalidRequest):
    """An attribution method name that is not in the registry."""


class LimitExceeded(InvalidRequest):
    """The request is valid but larger than the server's configured limits."""


class UnsupportedModel(EngineError):
    """The model's structure could not be mapped onto the parts the engine needs."""


class NonFiniteResult(EngineError):
    """A computation produced NaN or infinity; never returned silently."""


class DeadlineExceeded(EngineError):
    """The request's work ran past its deadline (``ExplainRequest.deadline_seconds`` or the server's);
    it stopped between steps, so the worker is free for the next request."""


@contextmanager
def section(path: str) -> Iterator[None]:
    """Field errors raised in the block name their field within ``path`` (see ``InvalidRequest.within``)."""
    try:
        yield
    except InvalidRequest as error:
        raise error.within(path) from None
