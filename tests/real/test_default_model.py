"""A few checks on the real default model: coherent English, finite attributions, a sane IG delta."""

from __future__ import annotations

import numpy as np
import pytest

from ecco_engine import AttributionParams, ChatMessage, ExplainRequest, GenerationParams

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


def test_greedy_generation_is_coherent_english(default_explainer):
    result = default_explainer.generate(
        ExplainRequest(prompt="The capital of France is", generation=GenerationParams(max_new_tokens=6))
    )
    assert result.generated_text.startswith(" Paris")


def test_chat_answer_mentions_paris(default_explainer):
    result = default_explainer.generate(
        ExplainRequest(
            messages=(ChatMessage("user", "What is the capital of France? Answer in one word."),),
            generation=GenerationParams(max_new_tokens=8),
        )
    )
    assert "Paris" in result.generated_text
    assert result.tokens[result.prompt_length - 1].text.endswith("\n")  # the template's assistant header


def test_attributions_are_finite_and_ig_is_complete_enough(default_explainer):
    request = ExplainRequest(
        prompt="The capital of France is",
        generation=GenerationParams(max_new_tokens=3),
        attribution=AttributionParams(methods=("integrated_gradients", "grad_x_input"), n_steps=16),
    )
    explanation = default_explainer.explain(request)
    assert explanation.generation.generated_text.startswith(" Paris")
    for attribution in explanation.attributions:
        assert np.isfinite(attribution.scores).all()
        np.testing.assert_allclose(attribution.scores.sum(axis=1), 1.0, rtol=1e-5)  # l2_normalized rows
    ig = explanation.attribution("integrated_gradients")
    gap = np.abs(ig.target_scores - ig.baseline_scores)
    # the probability target converges quickly: the completeness error is a small share of the gap
    assert np.abs(ig.convergence_deltas[0]) < 0.1 * gap[0]
    # " capital" or "France" drive " Paris" more than the filler word " is"
    paris = ig.scores[0]
    tokens = [t.text for t in explanation.generation.tokens]
    assert max(paris[tokens.index(" capital")], paris[tokens.index(" France")]) > paris[tokens.index(" is")]
