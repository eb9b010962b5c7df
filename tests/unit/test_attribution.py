"""Engine attributions against a direct, straightforward Captum computation, one call per token.

Tolerance: 1e-4 of each row's largest magnitude (fp32), as the issue states; with the same
Captum quadrature on the same inputs the remaining difference is batching round-off.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import (
    FeatureAblation,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Saliency,
    ShapleyValueSampling,
)

from ecco_engine import (
    REGISTRY,
    AttributionParams,
    EngineLimits,
    Explainer,
    ExplainRequest,
    GenerationParams,
    NonFiniteResult,
    TargetKind,
)
from ecco_engine.attribution import aggregate
from ecco_engine.targets import target_function
from ecco_engine.types import Aggregation
from tiny_models import ARCHITECTURES, tiny_model, tiny_tokenizer

PROMPT = "The capital of France is"


def _baseline_embeddings(embedding, tokenizer, params: AttributionParams, prefix: torch.Tensor) -> torch.Tensor:
    base_id = getattr(tokenizer, f"{params.baseline}_token_id") if params.baseline != "zero" else None
    if base_id is None:
        return torch.zeros_like(prefix)
    return embedding.weight[base_id].detach().expand_as(prefix).clone()


def _integrated_gradients(model, forward, prefix, base, params):
    return IntegratedGradients(forward).attribute(
        prefix, baselines=base, n_steps=params.n_steps, method=params.integration.value, return_convergence_delta=True
    )


def _occlusion(model, forward, prefix, base, params):
    mask = torch.arange(prefix.shape[1]).view(1, -1, 1).expand_as(prefix)
    # one score per source token (every hidden unit of an ablated token carries the same value)
    return FeatureAblation(forward).attribute(prefix, baselines=base, feature_mask=mask)[..., :1], None


def _shapley_value_sampling(model, forward, prefix, base, params):
    torch.manual_seed(params.sampling_seed)
    mask = torch.arange(prefix.shape[1]).view(1, -1, 1)  # one feature per token
    attributions = ShapleyValueSampling(forward).attribute(
        prefix, baselines=base, feature_mask=mask, n_samples=params.n_samples
    )
    return attributions[..., :1], None


def _kernel_shap(model, forward, prefix, base, params):
    if prefix.shape[1] == 1:  # Captum cannot sample one feature; its Shapley value is f(input) - f(baseline)
        return (forward(prefix) - forward(base)).view(1, 1, 1), None
    torch.manual_seed(params.sampling_seed)
    mask = torch.arange(prefix.shape[1]).view(1, -1, 1)
    return KernelShap(forward).attribute(prefix, baselines=base, feature_mask=mask, n_samples=params.n_samples)[
        ..., :1
    ], None


def _gradient_shap(model, forward, prefix, base, params):
    torch.manual_seed(params.sampling_seed)  # the noise
    np.random.seed(params.sampling_seed)  # the baseline draw and the interpolation coefficients
    shap = GradientShap(forward).attribute(prefix, baselines=base, n_samples=params.n_samples, stdevs=params.stdevs)
    return shap, None


def eager_attentions(model, prefix):
    """Every layer's attention weights ``(1, heads, t, t)`` from the model itself (eager attention)."""
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        return model(inputs_embeds=prefix, output_attentions=True).attentions
    finally:
        model.set_attn_implementation(previous)


def _attention_last_layer(model, forward, prefix, base, params):
    last = eager_attentions(model, prefix)[-1][0].mean(dim=0)  # (t, t), mean over heads
    return last[-1].view(1, -1, 1), None


def _attention_rollout(model, forward, prefix, base, params):
    n = prefix.shape[1]
    rollout = torch.eye(n, dtype=torch.float64)
    for layer in eager_attentions(model, prefix):  # Abnar & Zuidema: A~ = 0.5 A + 0.5 I, rows renormalized
        mixed = 0.5 * layer[0].mean(dim=0).double() + 0.5 * torch.eye(n, dtype=torch.float64)
        rollout = (mixed / mixed.sum(dim=-1, keepdim=True)) @ rollout
    return rollout[-1].view(1, -1, 1), None


#: every registered method's direct Captum computation, as a user would write it for one token:
#: ``(model, forward, prefix embeddings (1, t, hidden), baseline embeddings, params) -> (attributions, delta)``;
#: attention methods have no Captum counterpart: their reference is the model's own ``output_attentions``
REFERENCES = {
    "integrated_gradients": _integrated_gradients,
    "grad_x_input": lambda model, forward, prefix, base, params: (InputXGradient(forward).attribute(prefix), None),
    "saliency": lambda model, forward, prefix, base, params: (Saliency(forward).attribute(prefix, abs=False), None),
    "occlusion": _occlusion,
    "shapley_value_sampling": _shapley_value_sampling,
    "kernel_shap": _kernel_shap,
    "gradient_shap": _gradient_shap,
    "attention_last_layer": _attention_last_layer,
    "attention_rollout": _attention_rollout,
}


def test_every_registered_method_has_a_direct_captum_reference():
    assert set(REFERENCES) == set(REGISTRY), "add the new method's direct Captum computation to REFERENCES"


def reference(model, tokenizer, ids, params: AttributionParams, method: str, positions=None):
    """Per target: one Captum call on the prefix embeddings, as a user would write it; one row per position
    of ``positions`` (default: every position from 1 on)."""
    embedding = model.get_input_embeddings()
    emb = embedding(torch.tensor([ids])).detach()
    rows, deltas = [], []
    contrast = None
    if params.contrast_token is not None:
        contrast = torch.tensor([int(params.contrast_token)])
    for pos in positions if positions is not None else range(1, len(ids)):
        token = torch.tensor([ids[pos]])

        def forward(x, token=token):
            logits = model(inputs_embeds=x).logits[:, -1, :]
            return target_function(
                params.target,
                logits,
                token.expand(x.shape[0]),
                (contrast if contrast is not None else token).expand(x.shape[0]),
            )

        prefix = emb[:, :pos].clone()
        attr, delta = REFERENCES[method](
            model, forward, prefix, _baseline_embeddings(embedding, tokenizer, params, prefix), params
        )
        if delta is not None:
            deltas.append(float(delta))
        row = aggregate(attr.detach().double(), params.aggregation)[0]
        rows.append(torch.nn.functional.pad(row, (0, len(ids) - 1 - pos)))
    return torch.stack(rows).numpy(), np.array(deltas)


def explain(model, params, *, max_new_tokens=6, limits=None, continuation=None):
    explainer = Explainer(model, tiny_tokenizer(), limits=limits)
    request = ExplainRequest(
        prompt=PROMPT,
        continuation=continuation,
        generation=GenerationParams(max_new_tokens=max_new_tokens),
        attribution=params,
    )
    return explainer.explain(request)


def assert_rows_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    for i in range(ref.shape[0]):
        scale = max(np.abs(ref[i]).max(), 1e-12)
        np.testing.assert_allclose(ours[i], ref[i], rtol=0, atol=1e-4 * scale, err_msg=f"row {i}")


@pytest.mark.parametrize("method", sorted(REGISTRY))
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_every_method_equals_direct_captum(arch, method):
    model = tiny_model(arch)
    # a LayerNorm's input gradient sums to zero over the hidden dim, so a signed sum of a bare
    # gradient is round-off: compare gradients by their norm
    aggregation = "l2" if method == "saliency" else "sum"
    params = AttributionParams(
        methods=(method,), n_steps=16, n_samples=5, sampling_seed=3, aggregation=aggregation, target="log_probability"
    )
    result = explain(model, params)
    ids = [t.id for t in result.generation.tokens]
    ours = result.attributions[0]
    # every generated token is explained
    ref, ref_deltas = reference(model, tiny_tokenizer(), ids, params, method, ours.target_positions)
    assert_rows_close(ours.scores, ref[:, : ours.scores.shape[1]])
    if method == "integrated_gradients":
        np.testing.assert_allclose(ours.convergence_deltas, ref_deltas, rtol=0, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_explains_like_captum(arch):
    model = tiny_model(arch)
    params = AttributionParams(methods=("integrated_gradients",), n_steps=8, aggregation="l2")
    result = explain(model, params, max_new_tokens=3)
    ids = [t.id for t in result.generation.tokens]
    ours = result.attributions[0]
    ref, _ = reference(model, tiny_tokenizer(), ids, params, "integrated_gradients")
    rows = [p - 1 for p in ours.target_positions]
    assert_rows_close(ours.scores, ref[rows][:, : ours.scores.shape[1]])


@pytest.mark.parametrize(
    "target,aggregation,baseline,integration",
    [
        ("probability", "l2_normalized", "eos", "gausslegendre"),
        ("logit", "l2", "pad", "riemann_trapezoid"),
        ("log_probability", "sum", "unk", "riemann_middle"),
        ("probability", "sum", "zero", "gausslegendre"),
        ("log_probability", "l2", "mask", "riemann_right"),
    ],
)
def test_targets_baselines_and_rules_equal_captum(target, aggregation, baseline, integration):
    model = tiny_model("llama", seed=1)
    params = AttributionParams(
        methods=("integrated_gradients",),
        n_steps=12,
        target=target,
        aggregation=aggregation,
        baseline=baseline,
        integration=integration,
    )
    result = explain(model, params, max_new_tokens=4)
    ids = [t.id for t in result.generation.tokens]
    ours = result.attributions[0]
    ref, ref_deltas = reference(model, tiny_tokenizer(), ids, params, "integrated_gradients")
    rows = [p - 1 for p in ours.target_positions]
    assert_rows_close(ours.scores, ref[rows][:, : ours.scores.shape[1]])
    np.testing.assert_allclose(ours.convergence_deltas, ref_deltas[rows], rtol=0, atol=1e-4)


def test_contrastive_target_equals_captum():
    tok = tiny_tokenizer()
    contrast_id = tok.encode(" Paris")[0]
    model = tiny_model("gpt2")
    params = AttributionParams(
        methods=("grad_x_input",), target="contrastive", contrast_token=contrast_id, aggregation="sum"
    )
    result = explain(model, params, max_new_tokens=3)
    ours = result.attributions[0]
    assert ours.contrast_token_id == contrast_id
    ids = [t.id for t in result.generation.tokens]
    ref, _ = reference(model, tok, ids, params, "grad_x_input")
    rows = [p - 1 for p in ours.target_positions]
    assert_rows_close(ours.scores, ref[rows][:, : ours.scores.shape[1]])
    # the target score is log p(chosen) - log p(contrast) at the real input
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    expected = [float(logits[p - 1, ids[p]] - logits[p - 1, contrast_id]) for p in ours.target_positions]
    np.testing.assert_allclose(ours.target_scores, expected, rtol=1e-5, atol=1e-5)


def test_batched_equals_single():
    """A tiny memory budget (one row per forward) gives the same numbers as one big batch."""
    model = tiny_model("llama", seed=2)
    params = AttributionParams(methods=("integrated_gradients", "grad_x_input"), n_steps=10, aggregation="sum")
    big = explain(model, params, max_new_tokens=6, limits=EngineLimits(token_budget=100_000))
    small = explain(model, params, max_new_tokens=6, limits=EngineLimits(token_budget=1))
    for a, b in zip(big.attributions, small.attributions, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5 * np.abs(a.scores).max())
    np.testing.assert_allclose(
        big.attributions[0].convergence_deltas, small.attributions[0].convergence_deltas, atol=1e-5
    )


def test_positions_subset_equals_rows_of_full():
    model = tiny_model("gpt2", seed=3)
    full = explain(
        model, AttributionParams(methods=("integrated_gradients",), n_steps=8), max_new_tokens=6
    ).attributions[0]
    part = explain(
        model, AttributionParams(methods=("integrated_gradients",), n_steps=8, positions=(4, 1)), max_new_tokens=6
    ).attributions[0]
    assert part.target_positions == (full.target_positions[1], full.target_positions[4])
    np.testing.assert_allclose(part.scores, full.scores[[1, 4], : part.scores.shape[1]], atol=1e-6)


def test_teacher_forcing_equals_generation():
    """Explaining a given continuation equals explaining the same text when the model generated it."""
    model = tiny_model("gpt2", seed=0)  # generates " is is is ...", which re-tokenizes to the same ids
    generated = explain(model, AttributionParams(methods=("integrated_gradients",), n_steps=8), max_new_tokens=5)
    text = generated.generation.generated_text
    forced = explain(model, AttributionParams(methods=("integrated_gradients",), n_steps=8), continuation=text)
    assert forced.generation.finish_reason == "given"
    assert [t.id for t in forced.generation.tokens] == [t.id for t in generated.generation.tokens]
    np.testing.assert_allclose(forced.attributions[0].scores, generated.attributions[0].scores, atol=1e-6)


def test_completeness_holds_for_signed_sum():
    """IG: sum of signed attributions + delta == f(input) - f(baseline), per target."""
    model = tiny_model("gpt2", seed=5)
    a = explain(
        model,
        AttributionParams(methods=("integrated_gradients",), n_steps=32, aggregation="sum", target="log_probability"),
    ).attributions[0]
    gap = a.target_scores - a.baseline_scores
    np.testing.assert_allclose(a.scores.sum(axis=1) + a.convergence_deltas, gap, rtol=1e-4, atol=1e-4)


def test_completeness_tolerance_adds_steps_until_met():
    model = tiny_model("llama", seed=6)
    loose = explain(
        model, AttributionParams(methods=("integrated_gradients",), n_steps=2, integration="riemann_right")
    ).attributions[0]
    worst = float(np.abs(loose.convergence_deltas).max())
    assert worst > 0
    tol = worst / 8
    tight = explain(
        model,
        AttributionParams(
            methods=("integrated_gradients",),
            n_steps=2,
            integration="riemann_right",
            completeness_tolerance=tol,
            max_n_steps=512,
        ),
    ).attributions[0]
    assert max(tight.n_steps) > 2
    ok = np.abs(tight.convergence_deltas) <= tol
    # every target either met the tolerance or reached the step limit
    assert all(met or steps * 2 > 512 for met, steps in zip(ok, tight.n_steps, strict=True))


def test_l2_normalized_rows_sum_to_one():
    model = tiny_model("gpt2")
    a = explain(model, AttributionParams(methods=("grad_x_input",), aggregation="l2_normalized")).attributions[0]
    np.testing.assert_allclose(a.scores.sum(axis=1), 1.0, rtol=1e-6)
    for row, pos in enumerate(a.target_positions):
        assert (a.scores[row, pos:] == 0).all()


def test_non_finite_results_are_an_error_not_silent():
    model = tiny_model("llama", seed=7)
    with torch.no_grad():
        model.get_input_embeddings().weight[tiny_tokenizer().eos_token_id] = float("nan")
    with pytest.raises(NonFiniteResult, match="integrated_gradients"):
        explain(
            model, AttributionParams(methods=("integrated_gradients",), baseline="eos", n_steps=4), max_new_tokens=2
        )


def test_parameters_stay_frozen_and_get_no_gradients():
    model = tiny_model("gpt2")
    explain(model, AttributionParams(methods=("integrated_gradients",), n_steps=4), max_new_tokens=2)
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kind", list(TargetKind))
def test_every_target_kind_scores_the_chosen_token_as_defined(kind):
    """The reported target score is the kind's function of the logits that predicted the token."""
    model, tokenizer, contrast = tiny_model("gpt2", seed=3), tiny_tokenizer(), 5
    params = AttributionParams(
        methods=("grad_x_input",), target=kind, contrast_token=contrast if kind is TargetKind.CONTRASTIVE else None
    )
    request = ExplainRequest(prompt=PROMPT, generation=GenerationParams(max_new_tokens=3), attribution=params)
    explanation = Explainer(model, tokenizer).explain(request)
    attribution = explanation.attribution("grad_x_input")
    ids = [t.id for t in explanation.generation.tokens]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    log_probs = torch.log_softmax(logits, dim=-1)
    for row, position in enumerate(attribution.target_positions):
        chosen = log_probs[position - 1, ids[position]]
        expected = {
            TargetKind.PROBABILITY: chosen.exp(),
            TargetKind.LOG_PROBABILITY: chosen,
            TargetKind.LOGIT: logits[position - 1, ids[position]],
            TargetKind.CONTRASTIVE: chosen - log_probs[position - 1, contrast],
        }[kind]
        assert attribution.target_scores[row] == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
    assert len(attribution.target_positions) == 3 and np.isfinite(attribution.scores).all()


def test_every_aggregation_reduces_the_same_attribution_as_defined():
    """l2 >= 0; l2_normalized = l2 / row sum (rows sum to 1); |sum| <= sqrt(hidden) * l2 (Cauchy-Schwarz)."""
    model, tokenizer = tiny_model("llama", seed=4), tiny_tokenizer()
    scores = {}
    for aggregation in Aggregation:
        params = AttributionParams(methods=("grad_x_input",), aggregation=aggregation)
        request = ExplainRequest(prompt=PROMPT, generation=GenerationParams(max_new_tokens=2), attribution=params)
        scores[aggregation] = Explainer(model, tokenizer).explain(request).attribution("grad_x_input").scores
    l2, normalized, signed = scores[Aggregation.L2], scores[Aggregation.L2_NORMALIZED], scores[Aggregation.SUM]
    assert (l2 >= 0).all() and (signed < 0).any()
    np.testing.assert_allclose(normalized, l2 / l2.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(normalized.sum(axis=1), 1.0, rtol=1e-5)
    hidden = model.get_input_embeddings().weight.shape[1]
    assert (np.abs(signed) <= np.sqrt(hidden) * l2 + 1e-6).all()


def test_stream_yields_tokens_then_rows_then_the_same_explanation():
    from ecco_engine.attribution import AttributionRow
    from ecco_engine.explainer import GeneratedToken

    model = tiny_model("gpt2", seed=8)
    request = ExplainRequest(
        prompt=PROMPT,
        generation=GenerationParams(max_new_tokens=4),
        attribution=AttributionParams(methods=("integrated_gradients", "grad_x_input"), n_steps=8),
    )
    explainer = Explainer(model, tiny_tokenizer())
    events = list(explainer.stream(request))
    whole = explainer.explain(request)
    kinds = [type(e).__name__ for e in events]
    n = len(whole.generation.generated_ids)
    assert kinds == ["GeneratedToken"] * n + ["AttributionRow"] * (2 * n) + ["Explanation"]
    tokens = [e for e in events if isinstance(e, GeneratedToken)]
    assert [t.id for t in tokens] == whole.generation.generated_ids
    assert "".join(t.text for t in tokens) == whole.generation.generated_text
    for t in tokens:  # streamed positions and offsets are those of the final result
        final_token = whole.generation.tokens[t.position]
        assert (t.id, t.text, t.start, t.end) == (final_token.id, final_token.text, final_token.start, final_token.end)
    generate_only = list(explainer.stream(request, attribute=False))
    assert [type(e).__name__ for e in generate_only] == ["GeneratedToken"] * n + ["GenerationResult"]
    assert generate_only[-1].tokens == whole.generation.tokens
    rows = [e for e in events if isinstance(e, AttributionRow)]
    for row in rows:
        attribution = whole.attribution(row.method)
        i = attribution.target_positions.index(row.target_position)
        np.testing.assert_allclose(row.scores, attribution.scores[i, : row.target_position], atol=1e-6)
        if row.method == "integrated_gradients":
            assert row.n_steps == attribution.n_steps[i]
            assert row.baseline_score == pytest.approx(attribution.baseline_scores[i])
    final = events[-1]
    for a, b in zip(final.attributions, whole.attributions, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def test_explain_with_internals_and_interventions_in_one_request():
    from ecco_engine.internals import InternalsParams, Intervention, count_hooks

    model = tiny_model("llama", seed=9)
    explainer = Explainer(model, tiny_tokenizer())
    plain = ExplainRequest(prompt=PROMPT, generation=GenerationParams(max_new_tokens=4))
    base = explainer.explain(plain)
    hooks_before = count_hooks(model)
    internals = InternalsParams(layer_predictions=True, top_k=3, activations=True, activation_top_k=2)
    inspected = explainer.explain(
        ExplainRequest(prompt=PROMPT, generation=GenerationParams(max_new_tokens=4), internals=internals)
    )
    assert inspected.internals is not None and inspected.internals.layer_predictions is not None
    assert inspected.generation.generated_ids == base.generation.generated_ids
    # silencing every neuron of the last block's FFNN changes what the model generates ...
    width = explainer.layout.mlp_down[-1].weight.shape[1]
    silence = tuple(Intervention(layer=1, neuron=n, mode="set", value=5.0) for n in range(min(width, 64)))
    changed = explainer.explain(
        ExplainRequest(
            prompt=PROMPT,
            generation=GenerationParams(max_new_tokens=4),
            internals=InternalsParams(interventions=silence),
        )
    )
    assert changed.generation.generated_ids != base.generation.generated_ids
    # ... and nothing of it leaks into the next request
    again = explainer.explain(plain)
    assert again.generation.generated_ids == base.generation.generated_ids
    np.testing.assert_array_equal(again.attributions[0].scores, base.attributions[0].scores)
    assert count_hooks(model) == hooks_before
