"""Prometheus metrics of the ecco handler: what it records and the small API it records them with.

Every TorchServe worker is its own Python process. With ``PROMETHEUS_MULTIPROC_DIR`` set in the
environment TorchServe is started with (the Java frontend passes its environment on to every worker
it spawns), prometheus-client writes each worker's values to memory-mapped files in that directory,
and one exporter process (``python -m ecco_serving.metrics_exporter``) serves their sum: counters and
histograms add up over workers (dead ones included, so counters never go back), the in-flight gauge
sums over live workers only (``livesum``). Without the variable the metrics stay in the worker's
memory and nobody scrapes them (harmless, e.g. in unit tests).

Metric names and labels (all latencies in seconds, buckets ``BUCKETS_SECONDS`` from 10 ms to 10 min):

===========================================  ==========================================================
``ecco_request_duration_seconds`` histogram   model, kind, method, transport, outcome: whole request
``ecco_stage_duration_seconds`` histogram     model, kind, stage, method: one stage of a request
``ecco_requests_total`` counter               model, kind, method, transport, outcome
``ecco_errors_total`` counter                 model, kind, transport, error (exception class), status
``ecco_generated_tokens_total`` counter       model, kind: new tokens generated
``ecco_explained_tokens_total`` counter       model, method: generated tokens one method attributed
``ecco_requests_in_flight`` gauge             model, transport: requests being served right now
===========================================  ==========================================================

Label values are bounded, whatever a client sends:

- ``kind``: ``generate`` | ``explain`` | ``unknown`` (the request failed before its kind was known);
- ``method``: the request's attribution methods, sorted and joined with ``+``
  (``grad_x_input+integrated_gradients``); ``none`` for generation or an explanation without
  attribution; ``unknown`` before decoding; a name the engine does not register counts as ``other``;
- ``transport``: ``rest`` | ``kserve`` (REST, KServe v1 path) | ``grpc``;
- ``outcome``: ``ok`` (status < 400) | ``client_error`` (4xx) | ``server_error`` (5xx);
- ``stage``: the engine's stages (``tokenize``, ``generation``, ``detokenize``, ``attribution``
  with ``method`` set, ``internals``: layer predictions, rankings and activations) and the
  handler's (``decode``, ``encoding``).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: 10 ms .. 10 min: a generation takes tens of ms, integrated gradients on CPU tens of seconds
BUCKETS_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
REQUEST_LABELS = ("model", "kind", "method", "transport", "outcome")

Outcome = Literal["ok", "client_error", "server_error"]
UNKNOWN = "unknown"
NO_METHOD = "none"
OTHER_METHOD = "other"


class TimingLike(Protocol):
    """``ecco_engine.Timing``: the engine's per-stage wall-clock seconds (read-only)."""

    @property
    def stage(self) -> str: ...

    @property
    def seconds(self) -> float: ...


def outcome_of(status: int) -> Outcome:
    """``ok`` below 400, ``client_error`` for 4xx, ``server_error`` for 5xx (and anything else)."""
    if status < 400:
        return "ok"
    return "client_error" if status < 500 else "server_error"


def default_status_of(error: BaseException) -> int:
    """The HTTP status of an exception that leaves ``observe_request``'s block: its ``error_code``
    (TorchServe's ``PredictionException``), else 500.

    The data plane maps every failure once (``ecco_codec.status_for``) and hands the status to
    ``ObservedRequest.set_status``; only an exception nobody mapped gets here.
    """
    code = getattr(error, "error_code", None)
    return code if isinstance(code, int) else 500


@functools.cache
def _registered_methods() -> frozenset[str]:
    try:
        from ecco_engine.methods import REGISTRY as METHODS
    except ImportError:  # pragma: no cover
        return frozenset()
    return frozenset(METHODS)


def method_label(kind: str, methods: Iterable[str], known: Collection[str] | None = None) -> str:
    """The ``method`` label of a request: sorted method names joined by ``+``, ``none`` if none.

    Names not in ``known`` (default: the engine's registry) become ``other``, so a client cannot
    create label values.
    """
    if kind == "generate":
        return NO_METHOD
    known = _registered_methods() if known is None else known
    names = sorted({name if name in known else OTHER_METHOD for name in methods})
    return "+".join(names) if names else NO_METHOD


class EccoMetrics:
    """The metric objects, registered in ``registry`` (a fresh ``CollectorRegistry`` in tests)."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        buckets = BUCKETS_SECONDS
        self.request_seconds = Histogram(
            "ecco_request_duration_seconds",
            "Wall-clock seconds of one request in the handler: decode, engine, encode.",
            REQUEST_LABELS, buckets=buckets, registry=registry,
        )  # fmt: skip
        self.stage_seconds = Histogram(
            "ecco_stage_duration_seconds",
            "Wall-clock seconds of one stage of a request (engine stages plus decode and encoding).",
            ("model", "kind", "stage", "method"), buckets=buckets, registry=registry,
        )  # fmt: skip
        self.requests = Counter("ecco_requests", "Requests served by the handler.", REQUEST_LABELS, registry=registry)
        self.errors = Counter(
            "ecco_errors",
            "Failed requests by exception class and HTTP status.",
            ("model", "kind", "transport", "error", "status"), registry=registry,
        )  # fmt: skip
        self.generated_tokens = Counter(
            "ecco_generated_tokens", "New tokens generated (prompt not included).", ("model", "kind"), registry=registry
        )
        self.explained_tokens = Counter(
            "ecco_explained_tokens",
            "Generated tokens attributed, per attribution method.",
            ("model", "method"), registry=registry,
        )  # fmt: skip
        self.in_flight = Gauge(
            "ecco_requests_in_flight",
            "Requests the handler is serving now (sum over live workers).",
            ("model", "transport"), registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip

    def initialize_model(self, model: str, transports: Iterable[str] = ("rest", "grpc")) -> None:
        """Create the usual series of ``model`` at zero (a worker calls this at start-up).

        A series that first appears with a count of 1 loses that request in ``rate()``; created at
        zero, the first request of each usual kind, method and transport is seen, and "no traffic"
        is a zero rate, not a missing series.
        """
        explain = [("explain", method) for method in sorted(_registered_methods())]
        for transport in transports:
            self.in_flight.labels(model, transport)
            for kind, method in [("generate", NO_METHOD), *explain]:
                labels = (model, kind, method, transport, "ok")
                self.request_seconds.labels(*labels)
                self.requests.labels(*labels)
        common = ("decode", "tokenize", "generation", "detokenize", "encoding")
        for kind in ("generate", "explain"):
            self.generated_tokens.labels(model, kind)
            for stage in common:
                self.stage_seconds.labels(model, kind, stage, "")
        self.stage_seconds.labels(model, "explain", "internals", "")
        for _, method in explain:
            self.explained_tokens.labels(model, method)
            self.stage_seconds.labels(model, "explain", "attribution", method)


@functools.cache
def default_metrics() -> EccoMetrics:
    """The process-wide metrics in prometheus-client's default registry (created once)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        logger.info("Prometheus metrics: multiprocess mode, files in %s (pid %d)", directory, os.getpid())
    else:
        logger.info("Prometheus metrics: %s is not set, metrics stay in this process", MULTIPROC_ENV)
    return EccoMetrics()


class ObservedRequest:
    """What the handler learns about one request while serving it; recorded when the request ends.

    Not thread-safe: one request, one thread (as TorchServe runs a handler).
    """

    def __init__(
        self, metrics: EccoMetrics | None, model: str, kind: str | None, method: str | None, transport: str
    ) -> None:
        self.metrics = metrics  # None: recorded nowhere (``detached``)
        self.model = model
        self.kind = kind or UNKNOWN
        self.method = method or UNKNOWN
        self.transport = transport
        self.status: int | None = None
        self.error: BaseException | None = None
        self._stages: list[tuple[str, str, float]] = []  # (stage, method, seconds)
        self._generated = 0
        self._explained: dict[str, int] = {}

    @classmethod
    def detached(cls) -> ObservedRequest:
        """An observation that is never recorded (for code paths that serve without metrics)."""
        return cls(None, "", None, None, "")

    # ---- what the handler reports ---------------------------------------------------------------
    def describe(self, kind: str, methods: Iterable[str] = (), *, known: Collection[str] | None = None) -> None:
        """The request's kind and attribution methods, once decoded (the last call wins)."""
        self.kind = kind
        self.method = method_label(kind, methods, known)

    def observe_timings(self, timings: Iterable[TimingLike]) -> None:
        """The engine's ``Explanation.timings`` / ``GenerationResult.timings`` (and the handler's own).

        ``attribution:<method>`` becomes stage ``attribution`` with label ``method``.
        """
        for timing in timings:
            stage, _, method = timing.stage.partition(":")
            self.observe_stage(stage, timing.seconds, method=method)

    def observe_stage(self, stage: str, seconds: float, *, method: str = "") -> None:
        if method and method not in _registered_methods():
            method = OTHER_METHOD
        self._stages.append((stage, method, float(seconds)))

    @contextmanager
    def stage(self, stage: str, *, method: str = "") -> Iterator[None]:
        """Time a block as one stage (e.g. ``encoding``), also when it raises."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe_stage(stage, time.perf_counter() - start, method=method)

    def count_generated(self, tokens: int) -> None:
        self._generated += int(tokens)

    def count_explained(self, method: str, tokens: int) -> None:
        if method not in _registered_methods():
            method = OTHER_METHOD
        self._explained[method] = self._explained.get(method, 0) + int(tokens)

    def count_result(self, result: object) -> None:
        """Token counters from an engine result (``GenerationResult`` or ``Explanation``)."""
        generation = getattr(result, "generation", result)
        tokens = getattr(generation, "tokens", ())
        self.count_generated(max(len(tokens) - int(getattr(generation, "prompt_length", 0)), 0))
        for attribution in getattr(result, "attributions", ()):
            self.count_explained(attribution.method, len(attribution.target_positions))

    def observe_result(self, result: object, extra_timings: Iterable[TimingLike] = ()) -> None:
        """An engine result's stage timings and token counts, plus the handler's ``extra_timings``."""
        self.observe_timings((*getattr(result, "timings", ()), *extra_timings))
        self.count_result(result)

    def set_status(self, status: int, error: BaseException | None = None) -> None:
        """The status the request ends with when it ends without raising (e.g. a per-row failure)."""
        self.status = int(status)
        self.error = error

    # ---- recording ------------------------------------------------------------------------------
    def _record(self, seconds: float) -> None:
        m = self.metrics
        if m is None:
            return
        status = 200 if self.status is None else self.status
        outcome = outcome_of(status)
        labels = (self.model, self.kind, self.method, self.transport, outcome)
        m.request_seconds.labels(*labels).observe(seconds)
        m.requests.labels(*labels).inc()
        for stage, method, stage_seconds in self._stages:
            m.stage_seconds.labels(self.model, self.kind, stage, method).observe(stage_seconds)
        if outcome != "ok":
            error = type(self.error).__name__ if self.error is not None else "HTTPError"
            m.errors.labels(self.model, self.kind, self.transport, error, str(status)).inc()
            return
        if self._generated:
            m.generated_tokens.labels(self.model, self.kind).inc(self._generated)
        for method, tokens in self._explained.items():
            m.explained_tokens.labels(self.model, method).inc(tokens)


@contextmanager
def observe_request(
    model: str,
    kind: str | None = None,
    method: str | None = None,
    transport: str = "rest",
    *,
    metrics: EccoMetrics | None = None,
    status_of: Callable[[BaseException], int] = default_status_of,
) -> Iterator[ObservedRequest]:
    """Count, time and classify one request; the block serves it.

    An exception leaving the block sets the outcome from ``status_of(exception)`` (and is re-raised);
    otherwise the outcome comes from ``ObservedRequest.set_status`` (default 200). Stage timings are
    recorded for every outcome, token counters only for successful requests.
    """
    metrics = metrics or default_metrics()
    request = ObservedRequest(metrics, model, kind, method, transport)
    in_flight = metrics.in_flight.labels(model, transport)
    in_flight.inc()
    start = time.perf_counter()
    try:
        yield request
    except BaseException as error:
        request.set_status(status_of(error) if isinstance(error, Exception) else 500, error)
        raise
    finally:
        in_flight.dec()
        try:
            request._record(time.perf_counter() - start)
        except Exception:  # metrics must never fail a request
            logger.exception("recording metrics failed")


def initialize_model(model: str) -> None:
    """``EccoMetrics.initialize_model`` on the process-wide metrics (the handler's ``initialize``)."""
    default_metrics().initialize_model(model)


def prepare_dir(directory: Path) -> Path:
    """Create ``directory`` and delete the ``*.db`` files of earlier runs (call before the workers start)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    return directory
