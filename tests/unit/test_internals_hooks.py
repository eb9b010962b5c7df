"""Hook hygiene: whatever fails inside a request, the model carries the same hooks afterwards."""

from __future__ import annotations

import pytest
import torch

from ecco_engine import GenerationParams, LimitExceeded
from ecco_engine.generation import iter_generate
from ecco_engine.internals import (
    InternalsLimits,
    InternalsParams,
    Intervention,
    captured_mlp_activations,
    captured_residual_stream,
    count_hooks,
    gathered_unembedding,
    inspect_sequence,
    neuron_interventions,
)
from ecco_engine.layout import discover_layout
from tiny_models import tiny_model, tiny_tokenizer

EVERYTHING = InternalsParams(
    layer_predictions=True,
    token_rankings=True,
    watch=(" capital",),
    activations=True,
    activation_top_k=3,
    nmf_components=2,
)


class Boom(RuntimeError):
    pass


@pytest.fixture
def llama():
    model = tiny_model("llama")
    layout = discover_layout(model)
    with torch.no_grad():  # transformers installs its own output-recording hooks on first use: warm up
        model(torch.tensor([[1, 2]]), output_hidden_states=True)
    return model, layout


def test_hooks_are_removed_when_the_block_raises(llama):
    model, layout = llama
    before = count_hooks(model)
    ids = torch.tensor([tiny_tokenizer().encode("The capital of France is")])
    interventions = (Intervention(layer=1, neuron=2, value=1.0),)
    with (
        pytest.raises(Boom),
        neuron_interventions(layout, interventions),
        captured_mlp_activations(layout),
        captured_residual_stream(layout, (0, 3)),
        gathered_unembedding(layout, (2,)),
    ):
        assert count_hooks(model) == before + 1 + 2 + (layout.n_layers + 1) + 1
        with torch.inference_mode():
            model(ids, use_cache=False)
        raise Boom
    assert count_hooks(model) == before


def test_limit_exceeded_mid_generation_leaves_no_hook(llama):
    """The capture's memory bound trips inside a KV-cached forward, after several steps succeeded."""
    model, layout = llama
    tok = tiny_tokenizer()
    prompt = tok.encode("The capital of France is")
    before = count_hooks(model)
    budget = layout.n_layers * 64 * (len(prompt) + 2)  # the prompt and two generated steps fit
    steps = 0
    with (
        pytest.raises(LimitExceeded) as error,
        neuron_interventions(layout, (Intervention(layer=0, neuron=0, value=0.5),)),
        captured_mlp_activations(layout, max_elements=budget),
    ):
        for _ in iter_generate(model, prompt, GenerationParams(max_new_tokens=8), set(), tok.decode):
            steps += 1
    assert steps == 3  # the fourth forward (third generated token fed back) exceeded the budget
    assert error.value.field == "activations" and "max_captured_elements" in str(error.value)
    assert count_hooks(model) == before


def test_failure_inside_the_inspection_forward_leaves_no_hook(llama, monkeypatch):
    model, layout = llama
    tok = tiny_tokenizer()
    ids = tok.encode("The capital of France is Paris")
    before = count_hooks(model)

    def broken(*args, **kwargs):
        raise Boom("block 1 failed")

    monkeypatch.setattr(layout.blocks[1], "forward", broken)
    with pytest.raises(Boom):
        inspect_sequence(model, layout, tok, ids, 4, EVERYTHING)
    assert count_hooks(model) == before
    monkeypatch.undo()
    result = inspect_sequence(model, layout, tok, ids, 4, EVERYTHING)  # and the model still works
    assert result.layer_predictions is not None and result.nmf is not None
    assert count_hooks(model) == before


def test_limit_exceeded_in_inspection_leaves_no_hook(llama):
    model, layout = llama
    tok = tiny_tokenizer()
    ids = tok.encode("The capital of France is Paris")
    before = count_hooks(model)
    with pytest.raises(LimitExceeded):
        inspect_sequence(model, layout, tok, ids, 4, EVERYTHING, InternalsLimits(max_nmf_components=1))
    assert count_hooks(model) == before
