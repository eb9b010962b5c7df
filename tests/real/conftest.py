"""The default real model (SmolLM2-135M-Instruct), built by `make model`; loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "model_store" / "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def default_model():
    if not (DEFAULT_MODEL / "ecco_build.json").exists():
        pytest.fail(f"the default model is not built: run `make model` (expected {DEFAULT_MODEL})")
    from ecco_engine.loading import load_model

    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def default_explainer(default_model):
    from ecco_engine import Explainer

    model, tokenizer = default_model
    return Explainer(model, tokenizer)
