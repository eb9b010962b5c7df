"""Fixtures for the codec tests: one tiny model and one real explanation, shared by the module."""

from __future__ import annotations

import pytest

from ecco_engine import AttributionParams, Explainer, ExplainRequest, GenerationParams
from tiny_models import tiny_model, tiny_tokenizer


@pytest.fixture(scope="session")
def explainer() -> Explainer:
    return Explainer(tiny_model("gpt2"), tiny_tokenizer())


@pytest.fixture(scope="session")
def explain_request() -> ExplainRequest:
    """IG (with its metadata) and a gradient method, on three generated tokens."""
    return ExplainRequest(
        prompt="The capital of France is",
        generation=GenerationParams(max_new_tokens=3),
        attribution=AttributionParams(methods=("integrated_gradients", "grad_x_input"), n_steps=4, aggregation="sum"),
    )


@pytest.fixture(scope="session")
def explanation(explainer, explain_request):
    return explainer.explain(explain_request)
