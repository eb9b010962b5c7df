"""``Transport``: what one transport adapter (REST, KServe v1, gRPC ...) tells the data plane.

An adapter says how a call of its transport becomes replies (``replies``: decode with the data plane,
refuse what the transport cannot carry, run) and how a failure reaches the client (``failed``).
Counting, timing, mapping errors to a ``Failure`` and logging are the data plane's, the same for all
(``DataPlane.serve``). Which TorchServe rows are its own, the adapter tells from their headers
(``claims``); ``torchserve_rows.TRANSPORTS`` lists the adapters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, ClassVar

from ecco_codec import Failure
from ecco_engine import InvalidRequest
from ecco_serving.metrics import ObservedRequest

from .calls import Call, Reply

if TYPE_CHECKING:
    from .plane import DataPlane


class Transport(ABC):
    """One transport's adapter: stateless, one instance per transport."""

    #: the ``transport`` label of the metrics
    name: ClassVar[str]
    #: where a client puts the request, for the error of a call without one
    body_name: ClassVar[str] = "the request body"

    @abstractmethod
    def claims(self, headers: Mapping[str, str]) -> bool:
        """Whether a TorchServe row with these headers (names in lower case) came over this transport."""

    @abstractmethod
    def replies(self, plane: DataPlane, call: Call, observed: ObservedRequest) -> Iterator[Reply]:
        """The call's replies: stream events, then the final reply; raises on any failure."""

    @abstractmethod
    def failed(self, failure: Failure, call: Call, *, streamed: bool) -> Reply:
        """The final reply of a call that failed, after stream events if ``streamed``."""

    def require_body(self, call: Call) -> bytes | bytearray:
        """The call's body; raises ``InvalidRequest`` ("body") if it has none."""
        if call.body is None:
            raise InvalidRequest("body", f"missing: send the ecco.v1.ExplainRequest as {self.body_name}")
        return call.body
