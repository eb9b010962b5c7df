"""ecco_serving.metrics: what one request records, in a fresh registry (no TorchServe, no files)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from ecco_codec import status_for
from ecco_engine import InvalidRequest, LimitExceeded, NonFiniteResult, Timing
from ecco_serving.metrics import BUCKETS_SECONDS, EccoMetrics, method_label, observe_request, outcome_of


def codec_status(error: BaseException) -> int:
    """The HTTP status the data plane hands to the metrics for ``error``."""
    return status_for(error).status


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry) -> EccoMetrics:
    return EccoMetrics(registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    samples = [s for family in registry.collect() for s in family.samples if s.name == name]
    return sum(s.value for s in samples if wanted <= set(s.labels.items()))


REQUEST = {"model": "tiny", "kind": "explain", "method": "integrated_gradients", "transport": "grpc", "outcome": "ok"}


@pytest.mark.parametrize(("seconds", "first_bucket"), [(0.005, "0.01"), (0.01, "0.01"), (20 * 60.0, "+Inf")])
def test_a_stage_lands_in_the_first_bucket_that_holds_it(registry, metrics, seconds, first_bucket):
    """5 ms is in the lowest bucket (10 ms); 20 min is beyond the highest (10 min): only +Inf holds it."""
    with observe_request("tiny", "generate", "none", "rest", metrics=metrics) as request:
        request.observe_stage("generation", seconds)
    labels = {"model": "tiny", "kind": "generate", "stage": "generation", "method": ""}
    bounds = [*(str(float(b)) for b in BUCKETS_SECONDS), "+Inf"]
    counts = [value(registry, "ecco_stage_duration_seconds_bucket", **labels, le=le) for le in bounds]
    first = bounds.index(first_bucket)
    assert counts == [0] * first + [1] * (len(bounds) - first)
    assert value(registry, "ecco_stage_duration_seconds_bucket", **labels, le="600.0") == (seconds <= 600)


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "ok"), (400, "client_error"), (413, "client_error"), (422, "client_error"), (500, "server_error"),
    (503, "server_error"),
])  # fmt: skip
def test_outcome_of_status(status, outcome):
    assert outcome_of(status) == outcome


def test_method_label_is_bounded_and_order_free():
    assert method_label("generate", ["integrated_gradients"]) == "none"
    assert method_label("explain", []) == "none"
    assert method_label("explain", ["integrated_gradients", "grad_x_input"]) == "grad_x_input+integrated_gradients"
    assert method_label("explain", ["grad_x_input", "integrated_gradients"]) == "grad_x_input+integrated_gradients"
    assert method_label("explain", ["x" * 50, "y"]) == "other"  # client-chosen names never become labels


def test_successful_explanation_records_latency_stages_and_tokens(registry, metrics):
    with observe_request("tiny", transport="grpc", metrics=metrics) as request:
        assert value(registry, "ecco_requests_in_flight", model="tiny", transport="grpc") == 1
        request.describe("explain", ["integrated_gradients"])
        request.observe_timings([
            Timing("decode", 0.002), Timing("generation", 0.5), Timing("attribution:integrated_gradients", 30.0),
            Timing("internals", 2.0),
        ])  # fmt: skip
        with request.stage("encoding"):
            pass
        request.count_generated(4)
        request.count_explained("integrated_gradients", 4)
    assert value(registry, "ecco_requests_in_flight", model="tiny", transport="grpc") == 0
    assert value(registry, "ecco_requests_total", **REQUEST) == 1
    assert value(registry, "ecco_request_duration_seconds_count", **REQUEST) == 1
    assert value(registry, "ecco_request_duration_seconds_bucket", **REQUEST, le="0.01") == 1  # it took no time
    stage = {"model": "tiny", "kind": "explain"}
    assert (
        value(registry, "ecco_stage_duration_seconds_sum", **stage, stage="attribution", method="integrated_gradients")
        == 30.0
    )
    assert (
        value(
            registry,
            "ecco_stage_duration_seconds_bucket",
            **stage,
            stage="attribution",
            method="integrated_gradients",
            le="20.0",
        )
        == 0
    )
    assert (
        value(
            registry,
            "ecco_stage_duration_seconds_bucket",
            **stage,
            stage="attribution",
            method="integrated_gradients",
            le="30.0",
        )
        == 1
    )
    for name in ("decode", "generation", "internals", "encoding"):
        assert value(registry, "ecco_stage_duration_seconds_count", **stage, stage=name, method="") == 1, name
    assert value(registry, "ecco_generated_tokens_total", model="tiny", kind="explain") == 4
    assert value(registry, "ecco_explained_tokens_total", model="tiny", method="integrated_gradients") == 4
    assert value(registry, "ecco_errors_total", model="tiny", kind="explain", transport="grpc") == 0


@pytest.mark.parametrize(("error", "status", "outcome"), [
    (InvalidRequest("prompt", "must be a non-empty string"), "400", "client_error"),
    (LimitExceeded("max_new_tokens", "at most 32"), "413", "client_error"),
    (NonFiniteResult("attribution", "NaN"), "422", "client_error"),
    (RuntimeError("boom"), "500", "server_error"),
])  # fmt: skip
def test_an_exception_sets_the_outcome_and_is_reraised(registry, metrics, error, status, outcome):
    with (
        pytest.raises(type(error)),
        observe_request("tiny", "generate", "none", "rest", metrics=metrics, status_of=codec_status) as request,
    ):
        request.count_generated(3)
        raise error
    labels = {"model": "tiny", "kind": "generate", "method": "none", "transport": "rest"}
    assert value(registry, "ecco_requests_total", **labels, outcome=outcome) == 1
    assert value(registry, "ecco_requests_total", **labels, outcome="ok") == 0
    assert value(registry, "ecco_request_duration_seconds_count", **labels, outcome=outcome) == 1
    error_labels = {"model": "tiny", "kind": "generate", "transport": "rest", "error": type(error).__name__}
    assert value(registry, "ecco_errors_total", **error_labels, status=status) == 1
    assert value(registry, "ecco_generated_tokens_total", model="tiny", kind="generate") == 0  # failed: no tokens
    assert value(registry, "ecco_requests_in_flight", model="tiny", transport="rest") == 0


def test_set_status_classifies_a_request_that_did_not_raise(registry, metrics):
    with observe_request("tiny", "explain", None, "rest", metrics=metrics) as request:
        request.set_status(413, LimitExceeded("max_new_tokens", "at most 32"))
    labels = {"model": "tiny", "kind": "explain", "method": "unknown", "transport": "rest", "outcome": "client_error"}
    assert value(registry, "ecco_requests_total", **labels) == 1
    errors = {"model": "tiny", "kind": "explain", "transport": "rest", "error": "LimitExceeded", "status": "413"}
    assert value(registry, "ecco_errors_total", **errors) == 1


def test_count_result_reads_engine_results(registry, metrics):
    class Generation:
        tokens = tuple(range(9))
        prompt_length = 5

    class Attribution:
        method = "grad_x_input"
        target_positions = (5, 6, 7)

    class Explanation:
        generation = Generation()
        attributions = (Attribution(),)

    with observe_request("tiny", "explain", "grad_x_input", "rest", metrics=metrics) as request:
        request.count_result(Explanation())
    with observe_request("tiny", "generate", "none", "rest", metrics=metrics) as request:
        request.count_result(Generation())
    assert value(registry, "ecco_generated_tokens_total", model="tiny", kind="explain") == 4
    assert value(registry, "ecco_generated_tokens_total", model="tiny", kind="generate") == 4
    assert value(registry, "ecco_explained_tokens_total", model="tiny", method="grad_x_input") == 3


def test_unknown_stage_methods_are_bounded(registry, metrics):
    with observe_request("tiny", "explain", "other", "rest", metrics=metrics) as request:
        request.observe_timings([Timing("attribution:made_up", 1.0)])
    labels = {"model": "tiny", "kind": "explain", "stage": "attribution", "method": "other"}
    assert value(registry, "ecco_stage_duration_seconds_count", **labels) == 1


def test_initialize_model_creates_the_usual_series_at_zero(registry, metrics):
    metrics.initialize_model("tiny")
    names = {(s.name, tuple(sorted(s.labels.items())), s.value) for f in registry.collect() for s in f.samples}
    for transport in ("rest", "grpc"):
        for kind, method in [("generate", "none"), ("explain", "integrated_gradients"), ("explain", "grad_x_input")]:
            labels = {"model": "tiny", "kind": kind, "method": method, "transport": transport, "outcome": "ok"}
            assert ("ecco_requests_total", tuple(sorted(labels.items())), 0.0) in names
            bucket = tuple(sorted({**labels, "le": "600.0"}.items()))
            assert ("ecco_request_duration_seconds_bucket", bucket, 0.0) in names
    in_flight = ("ecco_requests_in_flight", (("model", "tiny"), ("transport", "grpc")), 0.0)
    assert in_flight in names
    stage = (
        ("kind", "explain"),
        ("le", "600.0"),
        ("method", "grad_x_input"),
        ("model", "tiny"),
        ("stage", "attribution"),
    )
    assert ("ecco_stage_duration_seconds_bucket", stage, 0.0) in names
    assert value(registry, "ecco_requests_total") == 0
