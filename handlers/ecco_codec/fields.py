"""Small helpers shared by the decoders: errors renamed to wire paths, present optional fields."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from ecco_engine import InvalidRequest


def reraise_at(error: InvalidRequest, path: str) -> InvalidRequest:
    """The same error (same class) with its field replaced by the wire path ``path``."""
    return type(error)(path, error.reason)


def present(message: Message, names: tuple[str, ...]) -> dict[str, Any]:
    """The proto3 ``optional`` fields among ``names`` that the sender set."""
    return {n: getattr(message, n) for n in names if message.HasField(n)}
