"""The fast paths of issue 10 give the per-target numbers: shared forwards, chunking by the memory
budget, precision, the cost estimate, device placement and device memory errors.

Tolerances: fp32 paths 1e-5 of each row's largest magnitude (batching round-off); the float64 check
compares accuracy against a float64 computation rather than a fixed tolerance.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from scipy.stats import spearmanr

from ecco_engine import AttributionParams, EngineLimits, Explainer, ExplainRequest, GenerationParams, LimitExceeded
from ecco_engine.budget import HEADROOM, MemoryModel, inference_rows, plan
from ecco_engine.loading import resolve_device
from ecco_engine.targets import TargetForward, target_function
from tiny_models import ARCHITECTURES, tiny_model, tiny_tokenizer

PROMPT = "The capital of France is"


def _request(params: AttributionParams, max_new_tokens: int = 6) -> ExplainRequest:
    return ExplainRequest(prompt=PROMPT, generation=GenerationParams(max_new_tokens=max_new_tokens), attribution=params)


def _rows_close(a: np.ndarray, b: np.ndarray, rel: float) -> None:
    assert a.shape == b.shape
    for i in range(a.shape[0]):
        scale = max(float(np.abs(b[i]).max()), 1e-12)
        np.testing.assert_allclose(a[i], b[i], rtol=0, atol=rel * scale, err_msg=f"row {i}")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_chunked_by_a_small_memory_budget_equals_one_big_pass(arch):
    """One point per forward and one target per backward give the numbers of one shared pass."""
    model = tiny_model(arch, seed=11)
    params = AttributionParams(methods=("integrated_gradients", "grad_x_input"), n_steps=12, aggregation="sum")
    big = Explainer(model, tiny_tokenizer(), limits=EngineLimits(memory_budget_bytes=2**34))
    whole = big.explain(_request(params))
    length, n_targets = max(whole.attributions[0].target_positions), len(whole.attributions[0].target_positions)
    one_row = big.memory.forward_bytes(1, length, n_targets) + big.memory.backward_bytes(1, 1, length, n_targets)
    small = Explainer(model, tiny_tokenizer(), limits=EngineLimits(memory_budget_bytes=int(one_row / HEADROOM) + 1))
    ends = sorted(whole.attributions[0].target_positions)
    cut = plan(small.memory, 12, ends, budget_bytes=small.budget.memory_bytes, token_budget=1024)
    assert (cut.points_per_forward, cut.targets_per_backward) == (1, 1)  # the small budget really chunks
    wide = plan(big.memory, 12, ends, budget_bytes=big.budget.memory_bytes, token_budget=1024)
    assert wide.points_per_forward == 12 and wide.targets_per_backward > 1
    chunked = small.explain(_request(params))
    for a, b in zip(chunked.attributions, whole.attributions, strict=True):
        _rows_close(a.scores, b.scores, 1e-5)
    np.testing.assert_allclose(
        chunked.attributions[0].convergence_deltas, whole.attributions[0].convergence_deltas, atol=1e-5
    )


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_segmented_forward_equals_captum_on_every_architecture(arch):
    """Ten targets: the plan cuts the shared forward into segments (each attending to the earlier ones through
    the model's KV cache), and every row still equals one Captum call per token, on every family."""
    model = tiny_model(arch, seed=19)
    explainer = Explainer(model, tiny_tokenizer())
    params = AttributionParams(methods=("integrated_gradients",), n_steps=8, aggregation="sum")
    result = explainer.explain(_request(params, max_new_tokens=10))
    ours = result.attributions[0]
    cut = plan(explainer.memory, 8, list(ours.target_positions), budget_bytes=2**34, token_budget=1024)
    assert len(ours.target_positions) == 10 and len(cut.segments) == 3, cut  # 3 segments of 4, 4 and 2 targets
    ids = [t.id for t in result.generation.tokens]
    ref = _per_token_ig(model, ids, 8, tiny_tokenizer().eos_token_id, last=10)
    _rows_close(ours.scores.astype(np.float64), ref, 1e-4)
    # the cost says what the backward took: each target's 8 points over its segment, below the estimate
    ends = list(ours.target_positions)
    taken = sum(8 * ends[last] * (last - first + 1) for first, last in cut.segments)
    assert ours.cost.backward_token_rows == taken < 8 * max(ends) * len(ends)
    assert result.cost_estimate.backward_token_rows == 8 * max(ends) * len(ends)


def test_the_plan_segments_only_where_it_pays_and_fits():
    """Segments for many points over targets spread along the sequence; one segment for a single point
    (overhead-bound), for targets bunched at the end of a long prompt, and under a budget that only fits
    the unsegmented forward (a segment keeps the earlier tokens' keys and values again)."""
    memory = MemoryModel(
        per_token=1000.0, per_token_pair=0.0, heads=1, n_blocks=2, hidden=8, vocab=16, itemsize=4,
        per_cached_token=500.0,
    )  # fmt: skip
    spread = list(range(10, 26))  # 16 targets after a 10-token prompt
    assert len(plan(memory, 32, spread, budget_bytes=2**30, token_budget=10**6).segments) == 4
    assert plan(memory, 1, spread, budget_bytes=2**30, token_budget=10**6).segments == ((0, 15),)
    bunched = list(range(2000, 2016))
    assert plan(memory, 32, bunched, budget_bytes=2**34, token_budget=10**6).segments == ((0, 15),)
    # a budget that holds 8 unsegmented rows but not 8 segmented ones: fewer rows, unsegmented, no refusal
    unsegmented = memory.forward_bytes(8, 25, 16) + memory.backward_bytes(4, 8, 25, 16)
    budget = int(unsegmented / HEADROOM) + 1
    tight = plan(memory, 8, spread, budget_bytes=budget, token_budget=10**6)
    assert tight.points_per_forward < 8 and tight.segments == ((0, 15),)
    need = memory.forward_bytes(tight.points_per_forward, 25, 16) + memory.backward_bytes(
        tight.targets_per_backward, tight.points_per_forward, 25, 16
    )
    assert need <= HEADROOM * budget


def test_a_segment_backward_runs_through_its_own_prefix_only():
    """The backward of a target in the first segment runs through the first segment's tokens only; a
    target in the second runs through both (it attends to the first), and the scores equal one forward."""
    model = tiny_model("llama", seed=20)
    explainer = Explainer(model, tiny_tokenizer())
    forward = TargetForward(model, explainer.layout.unembedding, AttributionParams().target)
    embeddings = explainer.layout.embedding(torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])).detach().requires_grad_()
    lengths: list[int] = []  # the sequence length of every gradient that flows through the first block

    def watch(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden.register_hook(lambda grad: lengths.append(grad.shape[1]))

    handle = explainer.layout.blocks[0].register_forward_hook(watch)
    positions, ids = torch.tensor([2, 3, 6, 7]), torch.tensor([1, 2, 3, 4])
    try:
        with forward.attach(), torch.enable_grad():
            first, second = forward.segments(embeddings, positions, ids, ids, ((0, 1), (2, 3)))
            torch.autograd.grad(first.hidden.sum(), embeddings, retain_graph=True)
            early, lengths[:] = list(lengths), []
            torch.autograd.grad(second.hidden.sum(), embeddings)
            late = list(lengths)
            whole = forward.shared(embeddings, positions, ids, ids)
    finally:
        handle.remove()
    assert early == [4]  # the first segment: tokens 0..3
    assert sorted(late) == [4, 4]  # the second segment's own 4 tokens, then the first's through the cache
    torch.testing.assert_close(torch.cat([first.scores, second.scores], dim=1), whole, rtol=0, atol=1e-5)


def test_a_budget_below_one_row_is_refused_naming_the_limit():
    model = tiny_model("llama", seed=12)
    explainer = Explainer(model, tiny_tokenizer(), limits=EngineLimits(memory_budget_bytes=1000))
    with pytest.raises(LimitExceeded, match="memory_budget_bytes") as caught:
        explainer.explain(_request(AttributionParams(methods=("integrated_gradients",), n_steps=4)))
    assert caught.value.field == "prompt"


def _per_token_ig(model, ids, n_steps: int, baseline_id: int, last: int = 3) -> np.ndarray:
    """Captum, one call per generated token, in the model's own dtype (signed sum per source)."""
    embedding = model.get_input_embeddings()
    emb = embedding(torch.tensor([ids])).detach()
    rows = []
    for pos in range(len(ids) - last, len(ids)):
        token = torch.tensor([ids[pos]])

        def forward(x, token=token):
            logits = model(inputs_embeds=x).logits[:, -1, :]
            return target_function(
                AttributionParams().target, logits, token.expand(x.shape[0]), token.expand(x.shape[0])
            )

        prefix = emb[:, :pos].clone()
        base = embedding.weight[baseline_id].detach().expand_as(prefix).clone()
        attr = IntegratedGradients(forward).attribute(prefix, baselines=base, n_steps=n_steps, method="gausslegendre")
        rows.append(np.pad(attr[0].sum(-1).double().numpy(), (0, len(ids) - 1 - pos)))
    return np.stack(rows)


def test_float32_engine_is_as_accurate_as_captum_against_float64():
    """Against a float64 computation, the engine's float32 IG is no less accurate than Captum's float32;
    a float64 model stays float64 end to end (it equals the float64 reference to round-off)."""
    model32 = tiny_model("llama", seed=13)
    model64 = copy.deepcopy(model32).double()
    tok = tiny_tokenizer()
    params = AttributionParams(methods=("integrated_gradients",), n_steps=16, aggregation="sum", positions=(3, 4, 5))
    ours32 = Explainer(model32, tok).explain(_request(params)).attributions[0].scores.astype(np.float64)
    ours64 = Explainer(model64, tok).explain(_request(params))
    ids = [t.id for t in ours64.generation.tokens]
    truth = _per_token_ig(model64, ids, 16, tok.eos_token_id)
    captum32 = _per_token_ig(model32, ids, 16, tok.eos_token_id)
    scale = np.abs(truth).max()
    engine_error = np.abs(ours32 - truth).max() / scale
    captum_error = np.abs(captum32 - truth).max() / scale
    assert engine_error <= max(2 * captum_error, 1e-6), (engine_error, captum_error)
    # float64 end to end: the only float32 step left is the reply's float32 scores (rounding, 6e-8 relative)
    np.testing.assert_allclose(ours64.attributions[0].scores.astype(np.float64), truth, rtol=0, atol=1e-7 * scale)
    with torch.no_grad():
        logits = model64(torch.tensor([ids])).logits[0]
    direct = [float(torch.softmax(logits[p - 1], -1)[ids[p]]) for p in ours64.attributions[0].target_positions]
    np.testing.assert_allclose(ours64.attributions[0].target_scores, direct, rtol=1e-12)


def test_bfloat16_precision_is_reported_and_ranks_like_float32():
    model = tiny_model("llama", seed=14)
    explainer = Explainer(model, tiny_tokenizer())
    fp32 = explainer.explain(
        _request(AttributionParams(methods=("integrated_gradients",), n_steps=16, aggregation="l2"))
    ).attributions[0]
    bf16 = explainer.explain(
        _request(
            AttributionParams(methods=("integrated_gradients",), n_steps=16, aggregation="l2", precision="bfloat16")
        )
    )
    low = bf16.attributions[0]
    assert low.precision == "bfloat16" and fp32.precision == "float32"
    assert low.scores.dtype == np.float32 and np.isfinite(low.scores).all()
    correlations = [
        spearmanr(low.scores[i, :p], fp32.scores[i, :p]).statistic for i, p in enumerate(fp32.target_positions)
    ]
    assert np.median(correlations) > 0.9, correlations


def test_cost_is_reported_and_the_estimate_bounds_it():
    model = tiny_model("gpt2", seed=15)
    explainer = Explainer(model, tiny_tokenizer())
    params = AttributionParams(methods=("integrated_gradients", "grad_x_input", "occlusion"), n_steps=8)
    result = explainer.explain(_request(params, max_new_tokens=4))
    ig, gxi, occlusion = result.attributions
    n_targets, length = len(ig.target_positions), max(ig.target_positions)
    # IG: (steps + 2 scoring forwards) x length forward rows; every target backpropagates every step
    assert (ig.cost.forward_token_rows, ig.cost.backward_token_rows) == (10 * length, 8 * length * n_targets)
    assert gxi.cost.backward_token_rows == length * n_targets
    assert occlusion.cost.backward_token_rows == 0 and occlusion.cost.forward_token_rows > 0
    total = sum(a.cost.token_rows for a in result.attributions)
    assert total <= result.cost_estimate.token_rows


def test_a_request_beyond_the_cost_limit_is_refused_before_generation(monkeypatch):
    model = tiny_model("gpt2", seed=16)
    explainer = Explainer(model, tiny_tokenizer(), limits=EngineLimits(max_cost_token_rows=1000))

    def no_generation(*args, **kwargs):
        raise AssertionError("generation ran before the cost check")

    monkeypatch.setattr("ecco_engine.explainer.generate_ids", no_generation)
    with pytest.raises(LimitExceeded, match="max_cost_token_rows"):
        explainer.explain(_request(AttributionParams(methods=("integrated_gradients",), n_steps=64), max_new_tokens=16))
    monkeypatch.undo()
    small = explainer.explain(
        _request(AttributionParams(methods=("integrated_gradients",), n_steps=2), max_new_tokens=2)
    )  # within the limit
    assert small.cost_estimate.token_rows <= 1000


def test_device_out_of_memory_is_a_limit_error_and_the_next_request_runs(monkeypatch):
    model = tiny_model("llama", seed=17)
    explainer = Explainer(model, tiny_tokenizer())
    request = _request(AttributionParams(methods=("integrated_gradients",), n_steps=4), max_new_tokens=2)
    expected = explainer.explain(request)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr("ecco_engine.explainer.iter_attribute_tokens", out_of_memory)
    with pytest.raises(LimitExceeded, match=r"ran out of memory.*memory_budget_bytes"):
        explainer.explain(request)
    with pytest.raises(LimitExceeded, match="ran out of memory"):
        list(explainer.stream(request))
    monkeypatch.undo()
    again = explainer.explain(request)
    np.testing.assert_array_equal(again.attributions[0].scores, expected.attributions[0].scores)


def test_device_settings_resolve_or_fail_at_start_up():
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("auto", gpu_id=0) == torch.device("cuda", 0)
    else:
        assert resolve_device("auto", gpu_id=3) == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh runs it)")
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_the_engine_on_a_gpu_equals_the_cpu(precision):
    model = tiny_model("llama", seed=18)
    params = AttributionParams(methods=("integrated_gradients", "grad_x_input"), n_steps=8, precision=precision)
    cpu = Explainer(model, tiny_tokenizer()).explain(_request(params))
    gpu_model = copy.deepcopy(model).to("cuda")
    from ecco_engine.internals import InternalsParams

    request = ExplainRequest(
        prompt=PROMPT,
        generation=GenerationParams(max_new_tokens=6),
        attribution=params,
        internals=InternalsParams(layer_predictions=True, top_k=3, activations=True, activation_top_k=2),
    )
    gpu = Explainer(gpu_model, tiny_tokenizer()).explain(request)
    assert gpu.generation.generated_ids == cpu.generation.generated_ids
    assert gpu.internals is not None and gpu.internals.layer_predictions is not None
    rel = 1e-4 if precision == "float32" else 5e-2
    for a, b in zip(gpu.attributions, cpu.attributions, strict=True):
        _rows_close(a.scores, b.scores, rel)


def test_forward_only_methods_are_bounded_by_the_memory_budget_too():
    """With the token budget lifted, a small memory budget still cuts occlusion's batches, with the same
    numbers as one big batch."""
    model = tiny_model("llama", seed=19)
    params = AttributionParams(methods=("occlusion",), aggregation="sum")
    wide = Explainer(model, tiny_tokenizer(), limits=EngineLimits(token_budget=10**6, memory_budget_bytes=2**34))
    narrow = Explainer(model, tiny_tokenizer(), limits=EngineLimits(token_budget=10**6, memory_budget_bytes=1))
    assert inference_rows(narrow.memory, 16, budget_bytes=1) == 1
    assert inference_rows(wide.memory, 16, budget_bytes=2**34) > 1000
    _rows_close(
        narrow.explain(_request(params)).attributions[0].scores,
        wide.explain(_request(params)).attributions[0].scores,
        1e-5,
    )
