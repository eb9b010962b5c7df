"""Faithfulness metrics: hand-checkable cases, and equality with a slow direct re-computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ecco_engine import AttributionParams, Explainer, ExplainRequest, GenerationParams, InvalidRequest
from ecco_engine.faithfulness import faithfulness_cost, faithfulness_of_scores
from ecco_engine.faithfulness_types import FaithfulnessParams, Perturbation
from tiny_models import tiny_model, tiny_tokenizer

HIGH, LOW = 0.9, 0.1
KEY = 2  # the source that decides the output in the hand-checkable forward


def decided_by_key(embeddings, positions, token_ids, contrast_ids):
    """A forward where the explained token's probability is HIGH iff the key embedding (value 1 in a
    1-d hidden space) is among the row's tokens up to its read position, else LOW."""
    n = embeddings.shape[1]
    visible = torch.arange(n).view(1, -1) <= positions.view(-1, 1)
    present = ((embeddings[..., 0] == 1) & visible).any(dim=1)
    return torch.where(present, torch.tensor(HIGH), torch.tensor(LOW)).double()


def sequence(n: int = 5) -> torch.Tensor:
    embeddings = torch.zeros(n, 1)
    embeddings[KEY] = 1
    return embeddings


def measure(scores, params, **kwargs):
    return faithfulness_of_scores(
        decided_by_key, sequence(), [5], [7], np.array([scores], dtype=float), params, **kwargs
    )


def test_key_ranked_first_is_comprehensive_and_sufficient():
    f = measure([0.1, 0.2, 0.9, 0.0, 0.3], FaithfulnessParams(fractions=(0.1, 0.2, 0.5)))
    # every fraction removes at least the key: p drops from HIGH to LOW; keeping the key keeps HIGH
    np.testing.assert_allclose(f.comprehensiveness, [[0.8, 0.8, 0.8]], atol=1e-12)
    np.testing.assert_allclose(f.sufficiency, [[0.0, 0.0, 0.0]], atol=1e-12)
    # deletion keeps one token: the curve removes 1..4 tokens, all of which take the key out
    assert f.aopc[0] == pytest.approx((0 + 4 * 0.8) / 5, abs=1e-7)
    assert f.mean_comprehensiveness == pytest.approx(0.8)
    assert f.mean_sufficiency == pytest.approx(0.0)
    assert f.perturbation is Perturbation.DELETION and f.replacement_token is None


def test_key_ranked_last_is_neither():
    f = measure([0.5, 0.4, -1.0, 0.3, 0.2], FaithfulnessParams(fractions=(0.2, 0.6)))
    # k = 1 and 3 most-attributed: never the key
    np.testing.assert_allclose(f.comprehensiveness, [[0.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(f.sufficiency, [[0.8, 0.8]], atol=1e-12)
    assert f.aopc[0] == pytest.approx(0.0, abs=1e-12)  # the key would go at k = 5 > n - 1


def test_ties_break_by_position_and_curve_follows_the_rank():
    # all equal: order 0, 1, 2, ...; the key (position 2) goes at k = 3
    f = measure([0.0] * 5, FaithfulnessParams(fractions=(0.4, 0.6), aopc_steps=3))
    np.testing.assert_allclose(f.comprehensiveness, [[0.0, 0.8]], atol=1e-12)
    np.testing.assert_allclose(f.sufficiency, [[0.8, 0.0]], atol=1e-12)
    assert f.aopc[0] == pytest.approx((0 + 0 + 0 + 0.8) / 4)


def test_replacement_may_take_every_source_out():
    params = FaithfulnessParams(fractions=(1.0,), perturbation="replacement", replacement_token="bos", aopc_steps=64)
    f = measure([0.0, 0.0, 1.0, 0.0, 0.0], params, replacement=torch.zeros(1), replacement_token_id=3)
    np.testing.assert_allclose(f.comprehensiveness, [[0.8]])
    np.testing.assert_allclose(f.sufficiency, [[0.0]])
    assert f.aopc[0] == pytest.approx(5 * 0.8 / 6)  # replacement: the curve runs to all 5 sources
    assert (f.replacement_token, f.replacement_token_id) == ("bos", 3)


def test_rows_are_batched_within_the_token_budget_and_cost_counted():
    calls = []

    def spy(embeddings, *args):
        calls.append(embeddings.shape[:2])
        return decided_by_key(embeddings, *args)

    params = FaithfulnessParams(fractions=(0.2, 0.6))
    many = faithfulness_of_scores(spy, sequence(), [5], [7], np.array([[0.1, 0.2, 0.9, 0.0, 0.3]]), params)
    assert len(calls) == 1 and many.forward_token_rows == calls[0][0] * calls[0][1]
    calls.clear()
    small = faithfulness_of_scores(
        spy, sequence(), [5], [7], np.array([[0.1, 0.2, 0.9, 0.0, 0.3]]), params, token_budget=10
    )
    assert len(calls) > 1 and all(rows * n <= 10 for rows, n in calls)
    assert small.forward_token_rows == sum(rows * n for rows, n in calls)
    np.testing.assert_array_equal(small.comprehensiveness, many.comprehensiveness)
    assert small.forward_token_rows <= faithfulness_cost(params, 5, 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fractions": ()}, "fractions"),
        ({"fractions": (0.0,)}, "fractions"),
        ({"fractions": (1.5,)}, "fractions"),
        ({"fractions": (0.5, 0.5)}, "fractions"),
        ({"perturbation": "blur"}, "perturbation"),
        ({"replacement_token": "eos"}, "replacement_token"),
        ({"perturbation": "replacement", "replacement_token": "cls"}, "replacement_token"),
        ({"aopc_steps": 0}, "aopc_steps"),
    ],
)
def test_invalid_params_name_their_field(kwargs, field):
    with pytest.raises(InvalidRequest) as error:
        FaithfulnessParams(**kwargs)
    assert error.value.field == field


# ---- on real (tiny) models ---------------------------------------------------------------------
def one_token_decides():
    """A tiny Llama whose blocks write nothing to the residual stream (attention output and MLP
    down-projections zero): the logits at position t - 1 depend on the token at t - 1 alone."""
    model = tiny_model("llama", seed=1)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return model


def probability_after(model, token: int, explained: int) -> float:
    """p(explained | the last token is ``token``) on ``one_token_decides``'s model, from its weights."""
    with torch.no_grad():
        hidden = model.model.norm(model.model.embed_tokens.weight[token])
        return float(torch.softmax(model.lm_head(hidden).double(), dim=-1)[explained])


@pytest.mark.parametrize("perturbation", ["deletion", "replacement"])
def test_one_token_decides_gives_the_known_values(perturbation):
    model, tokenizer = one_token_decides(), tiny_tokenizer()
    params = FaithfulnessParams(
        fractions=(0.25, 0.5, 1.0),
        perturbation=perturbation,
        replacement_token="eos" if perturbation != "deletion" else None,
    )
    explanation = Explainer(model, tokenizer).explain(
        ExplainRequest(
            prompt="The capital of France is",
            generation=GenerationParams(max_new_tokens=2),
            attribution=AttributionParams(methods=("occlusion",), aggregation="l2", faithfulness=params),
        )
    )
    a = explanation.attributions[0]
    ids = [t.id for t in explanation.generation.tokens]
    f = a.faithfulness
    assert f is not None
    for i, t in enumerate(a.target_positions):
        # occlusion finds the one deciding source: the last; every other score is exactly zero
        assert a.scores[i, t - 1] > 0 and not a.scores[i, : t - 1].any()
        p = probability_after(model, ids[t - 1], ids[t])
        # taking the last token out leaves the one before it (deletion) or eos (replacement) last
        taken_out = ids[t - 2] if perturbation == "deletion" else tokenizer.eos_token_id
        drop = p - probability_after(model, taken_out, ids[t])
        np.testing.assert_allclose(f.comprehensiveness[i], [drop] * 3, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(f.sufficiency[i], [0.0] * 3, atol=1e-6)
        steps = min(params.aopc_steps, t - 1 if perturbation == "deletion" else t)
        assert f.aopc[i] == pytest.approx(steps * drop / (steps + 1), rel=1e-4, abs=1e-6)


def direct_probability(model, ids: list[int], explained: int) -> float:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    return float(torch.softmax(logits, dim=-1)[explained])


def direct_metrics(model, ids, position, scores, params, replacement_id):
    """The metrics of one explained token, one unbatched forward per perturbed input (token ids)."""
    n = position
    order = sorted(range(n), key=lambda j: (-scores[j], j))
    most = n - 1 if replacement_id is None else n

    def p_without(out: set[int]) -> float:
        if replacement_id is None:
            kept = [ids[j] for j in range(n) if j not in out]
        else:
            kept = [replacement_id if j in out else ids[j] for j in range(n)]
        return direct_probability(model, kept, ids[position])

    p = p_without(set())
    ks = [math.ceil(f * n - 1e-9) for f in params.fractions]
    comp = [p - p_without(set(order[: min(k, most)])) for k in ks]
    suff = [p - p_without(set(order[k:])) for k in ks]
    curve = [p - p_without(set(order[:k])) for k in range(1, min(params.aopc_steps, most) + 1)]
    return comp, suff, sum(curve) / (len(curve) + 1)


@pytest.mark.parametrize(("arch", "perturbation"), [("llama", "deletion"), ("gpt2", "replacement")])
def test_metrics_equal_a_direct_slow_recomputation(arch, perturbation):
    model, tokenizer = tiny_model(arch), tiny_tokenizer()
    params = FaithfulnessParams(fractions=(0.1, 0.3, 0.7), perturbation=perturbation, aopc_steps=4)
    explainer = Explainer(model, tokenizer)
    request = ExplainRequest(
        prompt="A quick brown fox jumps over",
        generation=GenerationParams(max_new_tokens=3),
        attribution=AttributionParams(methods=("grad_x_input",), aggregation="sum", faithfulness=params),
    )
    explanation = explainer.explain(request)
    a = explanation.attributions[0]
    f = a.faithfulness
    ids = [t.id for t in explanation.generation.tokens]
    replacement = tokenizer.eos_token_id if perturbation == "replacement" else None
    assert f is not None and f.replacement_token_id == replacement
    for i, t in enumerate(a.target_positions):
        comp, suff, aopc = direct_metrics(model, ids, t, a.scores[i, :t], params, replacement)
        np.testing.assert_allclose(f.comprehensiveness[i], comp, rtol=0, atol=1e-6)
        np.testing.assert_allclose(f.sufficiency[i], suff, rtol=0, atol=1e-6)
        assert f.aopc[i] == pytest.approx(aopc, abs=1e-6)
    assert f.mean_comprehensiveness == pytest.approx(float(f.comprehensiveness.mean()), abs=1e-7)
    assert 0 < f.forward_token_rows <= faithfulness_cost(params, max(a.target_positions), len(a.target_positions))
    estimate_without = explainer.cost_estimate(
        ExplainRequest(prompt="x", attribution=AttributionParams(methods=("grad_x_input",))), 7, 3
    )
    estimate_with = explainer.cost_estimate(
        ExplainRequest(prompt="x", attribution=AttributionParams(methods=("grad_x_input",), faithfulness=params)), 7, 3
    )
    assert estimate_with.forward_token_rows - estimate_without.forward_token_rows == faithfulness_cost(params, 9, 3)
    assert any(t.stage == "faithfulness:grad_x_input" for t in explanation.timings)


def test_without_the_option_nothing_is_measured():
    explanation = Explainer(tiny_model("llama"), tiny_tokenizer()).explain(
        ExplainRequest(
            prompt="Hello",
            generation=GenerationParams(max_new_tokens=1),
            attribution=AttributionParams(methods=("saliency",)),
        )
    )
    assert explanation.attributions[0].faithfulness is None
