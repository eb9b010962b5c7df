"""FFNN activations: the captured vector is the MLP's own intermediate, at every generation step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecco_engine import GenerationParams
from ecco_engine.generation import iter_generate
from ecco_engine.internals import InternalsParams, captured_mlp_activations, inspect_sequence
from ecco_engine.layout import discover_layout
from tiny_models import ARCHITECTURES, tiny_model, tiny_tokenizer

PROMPT = "The capital of France is"


def recorded(module: torch.nn.Module, sink: list[torch.Tensor]):
    """A forward hook appending the module's output (test-only; removed by the caller)."""
    return module.register_forward_hook(lambda _m, _a, out: sink.append(out.detach()))


def capture_with_mlp_inputs(model, layout, ids, mlp_input_of):
    """Captured activations of every block plus the MLP inputs recorded by hooks on ``mlp_input_of(block)``."""
    inputs: dict[int, list[torch.Tensor]] = {i: [] for i in range(layout.n_layers)}
    handles = [recorded(mlp_input_of(block), inputs[i]) for i, block in enumerate(layout.blocks)]
    try:
        with torch.inference_mode(), captured_mlp_activations(layout) as store:
            model(torch.tensor([ids]), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return store, {i: x[0] for i, x in inputs.items()}


def test_llama_activation_is_act_fn_of_gate_times_up_on_the_normed_residual():
    model = tiny_model("llama")
    layout = discover_layout(model)
    ids = tiny_tokenizer().encode(PROMPT)
    store, normed = capture_with_mlp_inputs(model, layout, ids, lambda block: block.post_attention_layernorm)
    with torch.inference_mode():
        for i, block in enumerate(layout.blocks):
            mlp = block.mlp
            manual = mlp.act_fn(mlp.gate_proj(normed[i])) * mlp.up_proj(normed[i])  # (1, n, 64)
            assert store.tensor(i).shape == (1, len(ids), 64)
            torch.testing.assert_close(store.tensor(i), manual, rtol=0, atol=1e-6)
            assert store.positions(i) == tuple(range(len(ids)))


def test_gpt2_activation_is_gelu_of_c_fc_on_ln_2():
    model = tiny_model("gpt2")
    layout = discover_layout(model)
    ids = tiny_tokenizer().encode(PROMPT)
    store, normed = capture_with_mlp_inputs(model, layout, ids, lambda block: block.ln_2)
    with torch.inference_mode():
        for i, block in enumerate(layout.blocks):
            manual = block.mlp.act(block.mlp.c_fc(normed[i]))  # (1, n, 128)
            assert store.tensor(i).shape == (1, len(ids), 4 * 32)
            torch.testing.assert_close(store.tensor(i), manual, rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_generation_time_activations_equal_the_teacher_forced_forward(arch):
    """Prompt forward + one KV-cached forward per token == one forward of the whole sequence (1e-5).

    The last generated token is never fed back during generation, so generation covers n - 1 positions.
    """
    model = tiny_model(arch)
    layout = discover_layout(model)
    tok = tiny_tokenizer()
    prompt = tok.encode(PROMPT)
    params = GenerationParams(max_new_tokens=6)
    with captured_mlp_activations(layout) as during:
        new = [s.token_id for s in iter_generate(model, prompt, params, set(), tok.decode)]
    ids = prompt + new
    full = inspect_sequence(
        model, layout, tok, ids, len(prompt), InternalsParams(activations=True)
    ).activations  # float16 (layers, n, neurons)
    with torch.inference_mode(), captured_mlp_activations(layout) as forced:
        model(torch.tensor([ids]), use_cache=False)
    for layer in range(layout.n_layers):
        assert during.positions(layer) == tuple(range(len(ids) - 1))
        generated = during.tensor(layer)[0]
        torch.testing.assert_close(generated, forced.tensor(layer)[0, :-1], rtol=0, atol=1e-5)
        # the float16 tensor inspect_sequence returns is the same forward, rounded to float16
        np.testing.assert_allclose(
            full.values[layer].astype(np.float32), forced.tensor(layer)[0].numpy(), rtol=1e-3, atol=1e-5
        )
    assert full.values.dtype == np.float16 and full.values.shape[:2] == (layout.n_layers, len(ids))


def test_top_k_neurons_by_value_and_by_magnitude():
    model = tiny_model("llama")
    layout = discover_layout(model)
    tok = tiny_tokenizer()
    ids = tok.encode(PROMPT)
    with torch.inference_mode(), captured_mlp_activations(layout) as store:
        model(torch.tensor([ids]), use_cache=False)
    positions = (0, 2, len(ids) - 1)
    for order in ("value", "magnitude"):
        params = InternalsParams(
            activations=True,
            activation_layers=(1,),
            activation_positions=positions,
            activation_top_k=4,
            activation_order=order,
        )
        result = inspect_sequence(model, layout, tok, ids, 2, params).activations
        assert result.layers == (1,) and result.positions == positions and result.n_neurons == 64
        assert result.values is None and result.top_indices.shape == result.top_values.shape == (1, 3, 4)
        full = store.tensor(1)[0, list(positions)]  # (3, 64)
        keys = full.abs() if order == "magnitude" else full
        expected = torch.topk(keys, 4, dim=-1).indices
        np.testing.assert_array_equal(result.top_indices[0], expected.numpy())
        np.testing.assert_allclose(result.top_values[0], full.gather(1, expected).numpy(), rtol=0, atol=1e-7)
    assert (full < 0).any(), "the gated MLP should have negative activations for 'magnitude' to differ"


def test_position_filter_keeps_only_the_chosen_positions_across_kv_steps():
    model = tiny_model("gpt2")
    layout = discover_layout(model)
    tok = tiny_tokenizer()
    prompt = tok.encode(PROMPT)
    wanted = (1, len(prompt) + 2)  # one prompt position, one generated step
    with captured_mlp_activations(layout, (0,), positions=wanted) as some:
        new = [s.token_id for s in iter_generate(model, prompt, GenerationParams(max_new_tokens=5), set(), tok.decode)]
    with torch.inference_mode(), captured_mlp_activations(layout, (0,)) as everything:
        model(torch.tensor([prompt + new]), use_cache=False)
    assert some.positions(0) == wanted
    torch.testing.assert_close(some.tensor(0)[0], everything.tensor(0)[0, list(wanted)], rtol=0, atol=1e-5)
