"""``Deadline``: when a request's work must stop, checked between steps (never inside one).

The ``Explainer`` starts one per request from ``ExplainRequest.deadline_seconds``, capped by the
server's ``EngineLimits.deadline_seconds``, and checks it between generation steps, attribution
chunks / row groups and internals stages: a request past it raises ``DeadlineExceeded`` within one
step, and the worker is free for the next request.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .errors import DeadlineExceeded


@dataclass(frozen=True)
class Deadline:
    """A request's time budget on the ``time.monotonic`` clock."""

    #: the budget it was started with, in seconds (``math.inf``: none)
    seconds: float
    #: ``time.monotonic()`` value after which ``check`` raises
    expires_at: float

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """A deadline ``seconds`` from now (None: never)."""
        budget = math.inf if seconds is None else float(seconds)
        return cls(budget, time.monotonic() + budget)

    @classmethod
    def capped(cls, requested: float | None, server_seconds: float | None) -> Deadline:
        """From now: the request's seconds capped by the server's (either None: the other; both: never)."""
        given = [s for s in (requested, server_seconds) if s is not None]
        return cls.after(min(given) if given else None)

    def check(self, stage: str) -> None:
        """Raise ``DeadlineExceeded`` (naming ``deadline_seconds`` and ``stage``) if the deadline has passed."""
        if time.monotonic() > self.expires_at:
            raise DeadlineExceeded(
                f"deadline_seconds: the request ran past its deadline of {self.seconds:g} s "
                f"(stopped during {stage}); ask for less work or a longer deadline"
            )


#: no deadline (library use without a server)
NEVER = Deadline(math.inf, math.inf)
