"""The sampled, perturbation and attention methods beyond their per-token Captum references
(``test_attribution.py``): seeding, batching, cost accounting and the eager-attention switch.

Tolerance: 1e-5 of each row's largest magnitude where only the batching differs (fp32 round-off).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from captum.attr import GradientShap

from ecco_engine import (
    REGISTRY,
    AttributionParams,
    EngineLimits,
    Explainer,
    ExplainRequest,
    GenerationParams,
    InvalidRequest,
    LimitExceeded,
)
from ecco_engine.methods import get_method
from ecco_engine.methods.attention import eager_attention
from ecco_engine.targets import target_function
from tiny_models import ARCHITECTURES, tiny_model, tiny_tokenizer

PROMPT = "The capital of France is"
SAMPLED = sorted(name for name, cls in REGISTRY.items() if cls.sampled)


def explain(model, params, *, max_new_tokens=4, limits=None):
    request = ExplainRequest(
        prompt=PROMPT, generation=GenerationParams(max_new_tokens=max_new_tokens), attribution=params
    )
    return Explainer(model, tiny_tokenizer(), limits=limits).explain(request)


def assert_rows_close(ours: np.ndarray, ref: np.ndarray, rel: float) -> None:
    assert ours.shape == ref.shape
    for i in range(ref.shape[0]):
        np.testing.assert_allclose(ours[i], ref[i], rtol=0, atol=rel * max(np.abs(ref[i]).max(), 1e-12))


def test_there_are_at_least_eight_methods_and_three_are_sampled():
    assert len(REGISTRY) >= 8
    assert SAMPLED == ["gradient_shap", "kernel_shap", "shapley_value_sampling"]


def test_gradient_shap_with_noise_equals_captum_on_the_longest_prefix():
    """Every target shares one noise draw over the longest prefix: the last target's is exactly Captum's."""
    model, tokenizer = tiny_model("llama", seed=1), tiny_tokenizer()
    params = AttributionParams(
        methods=("gradient_shap",),
        n_samples=6,
        stdevs=0.05,
        sampling_seed=11,
        aggregation="sum",
        target="log_probability",
    )
    explanation = explain(model, params)
    ours = explanation.attributions[0]
    assert (ours.n_samples, ours.sampling_seed) == (6, 11)
    ids = [t.id for t in explanation.generation.tokens]
    last = ours.target_positions[-1]
    embedding = model.get_input_embeddings()
    prefix = embedding(torch.tensor([ids[:last]])).detach()
    base = embedding.weight[tokenizer.eos_token_id].detach().expand_as(prefix).clone()
    token = torch.tensor([ids[last]])

    def forward(x):
        logits = model(inputs_embeds=x).logits[:, -1, :]
        return target_function(params.target, logits, token.expand(x.shape[0]), token.expand(x.shape[0]))

    torch.manual_seed(params.sampling_seed)
    np.random.seed(params.sampling_seed)
    captum = GradientShap(forward).attribute(prefix, baselines=base, n_samples=6, stdevs=0.05)
    assert_rows_close(ours.scores[-1:], captum.sum(dim=-1).detach().double().numpy(), rel=1e-4)
    quiet = explain(model, replace(params, stdevs=0.0)).attributions[0]
    assert not np.allclose(quiet.scores, ours.scores)  # the noise is there


@pytest.mark.parametrize("method", SAMPLED)
def test_sampled_methods_are_seeded_and_leave_the_global_generators_alone(method):
    model = tiny_model("gpt2", seed=2)
    params = AttributionParams(methods=(method,), n_samples=4, sampling_seed=5, stdevs=0.02, aggregation="sum")
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    first = explain(model, params).attributions[0]
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    again = explain(model, params).attributions[0]
    np.testing.assert_array_equal(first.scores, again.scores)
    other = explain(model, replace(params, sampling_seed=6)).attributions[0]
    assert not np.allclose(first.scores, other.scores)


@pytest.mark.parametrize("method", ["shapley_value_sampling", "kernel_shap"])
def test_a_sampled_rows_scores_do_not_depend_on_the_other_tokens_explained(method):
    model = tiny_model("llama", seed=3)
    params = AttributionParams(methods=(method,), n_samples=4, aggregation="sum")
    full = explain(model, params, max_new_tokens=5).attributions[0]
    part = explain(model, replace(params, positions=(3, 1)), max_new_tokens=5)
    scores = part.attributions[0].scores
    assert_rows_close(scores, full.scores[[1, 3], : scores.shape[1]], rel=1e-5)


@pytest.mark.parametrize("method", ["occlusion", "shapley_value_sampling", "kernel_shap", "gradient_shap"])
def test_batched_equals_single(method):
    """One row per forward (a token budget of 1) gives the numbers of one big batch."""
    model = tiny_model("llama", seed=2)
    params = AttributionParams(methods=(method,), n_samples=4, stdevs=0.02, aggregation="sum")
    big = explain(model, params, limits=EngineLimits(token_budget=100_000)).attributions[0]
    small = explain(model, params, limits=EngineLimits(token_budget=1)).attributions[0]
    assert_rows_close(small.scores, big.scores, rel=1e-5)


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_the_reported_forward_cost_is_every_forward_the_method_ran(method):
    """``Attribution.cost.forward_token_rows`` counts the rows x tokens every decoder forward saw."""
    model = tiny_model("gpt2", seed=4)
    explainer = Explainer(model, tiny_tokenizer(), limits=EngineLimits(token_budget=40))
    seen = []

    def count(_module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        seen.append(hidden.shape[0] * hidden.shape[1])

    params = AttributionParams(methods=(method,), n_steps=5, n_samples=3, aggregation="sum")
    request = ExplainRequest(prompt=PROMPT, continuation=" Paris is nice", attribution=params)
    handle = explainer.layout.blocks[0].register_forward_pre_hook(count, with_kwargs=True)
    try:
        # the forwards that are not the method's: the replayed tokens' log-probabilities
        explainer.explain(replace(request, attribution=AttributionParams(methods=())))
        not_attribution, seen[:] = sum(seen), []
        attribution = explainer.explain(request).attributions[0]
    finally:
        handle.remove()
    assert attribution.cost.forward_token_rows == sum(seen) - not_attribution
    assert (attribution.cost.backward_token_rows > 0) == get_method(method).needs_gradients
    estimate = explainer.cost_estimate(request, len(tiny_tokenizer().encode(PROMPT)), len(attribution.target_positions))
    assert estimate == attribution.cost  # a given continuation: the estimate is exact


def test_eager_attention_is_restored_after_the_block_and_after_an_error():
    model = tiny_model("llama")
    assert model.config._attn_implementation == "sdpa"
    with eager_attention(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError, match="boom"), eager_attention(model):
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"
    explain(model, AttributionParams(methods=("attention_rollout",)))
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_last_layer_attention_is_the_models_own_on_every_architecture(arch):
    model = tiny_model(arch)
    result = explain(model, AttributionParams(methods=("attention_last_layer",), aggregation="sum"), max_new_tokens=3)
    ours = result.attributions[0]
    ids = torch.tensor([[t.id for t in result.generation.tokens]])
    model.set_attn_implementation("eager")
    with torch.no_grad():
        last = model(ids, output_attentions=True).attentions[-1][0].mean(dim=0)  # (n, n)
    for row, position in enumerate(ours.target_positions):
        np.testing.assert_allclose(ours.scores[row, :position], last[position - 1, :position], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.scores.sum(axis=1), 1.0, rtol=1e-5)  # causal rows are distributions


def test_attention_weights_beyond_the_memory_budget_are_refused():
    model = tiny_model("gpt2")
    with pytest.raises(LimitExceeded, match="memory_budget_bytes"):
        explain(model, AttributionParams(methods=("attention_last_layer",)), limits=EngineLimits(memory_budget_bytes=1))


@pytest.mark.parametrize(
    "field,value",
    [
        ("n_samples", 0),
        ("n_samples", 2.5),
        ("sampling_seed", -1),
        ("sampling_seed", 2**32),
        ("stdevs", -0.1),
        ("stdevs", float("nan")),
    ],
)
def test_sampling_knobs_are_checked(field, value):
    with pytest.raises(InvalidRequest, match=field):
        AttributionParams(**{field: value})


def test_methods_that_draw_nothing_report_no_samples_or_seed():
    model = tiny_model("gpt2")
    explanation = explain(model, AttributionParams(methods=("occlusion", "kernel_shap"), n_samples=3, sampling_seed=9))
    occlusion, kernel_shap = explanation.attributions
    assert (occlusion.n_samples, occlusion.sampling_seed) == (None, None)
    assert (kernel_shap.n_samples, kernel_shap.sampling_seed) == (3, 9)
    default = explain(model, AttributionParams(methods=("kernel_shap",))).attributions[0]
    assert default.n_samples == REGISTRY["kernel_shap"].default_n_samples
