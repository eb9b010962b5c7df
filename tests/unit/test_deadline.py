"""Deadlines: a request's work stops between steps (generation, attribution, internals) with
``DeadlineExceeded``, the explainer keeps serving, and the server's limit caps the request's deadline.

The clock is a fake that advances one second per reading, so "how far the work got" is exact.
"""

from __future__ import annotations

import math

import pytest
import torch

import ecco_engine.deadline
from ecco_codec import status_for
from ecco_engine import (
    AttributionParams,
    Deadline,
    DeadlineExceeded,
    EngineLimits,
    Explainer,
    ExplainRequest,
    GenerationParams,
    InvalidRequest,
)
from ecco_engine.internals import InternalsParams
from tiny_models import tiny_model, tiny_tokenizer


class Clock:
    """``time.monotonic`` that advances one second each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(ecco_engine.deadline.time, "monotonic", fake)
    return fake


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    return Explainer(tiny_model("llama"), tiny_tokenizer())


def _forwards(explainer: Explainer) -> list[int]:
    calls: list[int] = []
    explainer.model.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_capped_takes_the_smaller_of_the_request_and_the_server() -> None:
    assert Deadline.capped(None, None).seconds == math.inf
    assert Deadline.capped(5.0, 240.0).seconds == 5.0
    assert Deadline.capped(500.0, 240.0).seconds == 240.0
    assert Deadline.capped(3.0, None).seconds == 3.0


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_deadline_must_be_a_positive_finite_number(bad) -> None:
    with pytest.raises(InvalidRequest) as raised:
        ExplainRequest(prompt="x", deadline_seconds=bad)
    assert raised.value.field == "deadline_seconds"


def test_generation_stops_within_one_step(clock, explainer) -> None:
    request = ExplainRequest(prompt="The capital", generation=GenerationParams(max_new_tokens=8), deadline_seconds=3)
    calls = _forwards(explainer)
    try:
        with pytest.raises(DeadlineExceeded) as raised:
            explainer.generate(request)
    finally:
        explainer.model._forward_hooks.clear()
    # readings: start at 1, expiry 1 + 3 = 4; checks read 2, 3, 4 (a forward each), 5 stops the 4th
    assert len(calls) == 3
    assert str(raised.value).startswith("deadline_seconds: the request ran past its deadline of 3 s")
    assert "during generation" in str(raised.value)
    assert status_for(raised.value)[:2] == (504, "DEADLINE_EXCEEDED")


def test_attribution_stops_between_chunks_and_the_explainer_serves_on(clock, explainer) -> None:
    request = ExplainRequest(
        prompt="The capital of France",
        continuation=" is Paris and",
        attribution=AttributionParams(methods=("integrated_gradients",), n_steps=8),
        deadline_seconds=2,
    )
    with pytest.raises(DeadlineExceeded, match="during attribution:integrated_gradients"):
        explainer.explain(request)
    events = explainer.stream(request)
    with pytest.raises(DeadlineExceeded, match="during attribution:integrated_gradients"):
        list(events)
    # the next request is served, equal to a fresh explainer's answer (no hook, no state left behind)
    unhurried = ExplainRequest(
        prompt=request.prompt, continuation=request.continuation, attribution=request.attribution
    )
    again = explainer.explain(unhurried)
    fresh = Explainer(tiny_model("llama"), tiny_tokenizer()).explain(unhurried)
    torch.testing.assert_close(
        torch.from_numpy(again.attributions[0].scores), torch.from_numpy(fresh.attributions[0].scores), rtol=0, atol=0
    )
    assert not explainer.model._forward_hooks and not explainer.model._forward_pre_hooks


def test_internals_are_not_started_past_the_deadline(clock, explainer) -> None:
    request = ExplainRequest(
        prompt="The capital",
        continuation=" is",
        attribution=AttributionParams(methods=()),
        internals=InternalsParams(layer_predictions=True),
        deadline_seconds=0.5,  # expires at 1.5: the first check (reading 2) is past it
    )
    with pytest.raises(DeadlineExceeded, match="during internals"):
        explainer.explain(request)


def test_the_server_limit_caps_a_longer_request_deadline(clock) -> None:
    capped = Explainer(tiny_model("llama"), tiny_tokenizer(), limits=EngineLimits(deadline_seconds=2))
    request = ExplainRequest(prompt="x", generation=GenerationParams(max_new_tokens=8), deadline_seconds=1000)
    with pytest.raises(DeadlineExceeded, match="deadline of 2 s"):
        capped.generate(request)
