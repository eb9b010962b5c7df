"""Neuron interventions: they change the output, apply at every KV-cached step, and never leak."""

from __future__ import annotations

import pytest
import torch

from ecco_engine import Explainer, ExplainRequest, GenerationParams, InvalidRequest, LimitExceeded
from ecco_engine.internals import (
    InternalsLimits,
    InternalsParams,
    Intervention,
    captured_mlp_activations,
    count_hooks,
    neuron_interventions,
)
from tiny_models import ARCHITECTURES, tiny_model, tiny_tokenizer

REQUEST = ExplainRequest(prompt="The capital of France is", generation=GenerationParams(max_new_tokens=6))


def last_block_push(explainer: Explainer, value: float = 30.0) -> tuple[Intervention, ...]:
    last = explainer.layout.n_layers - 1
    return tuple(Intervention(layer=last, neuron=n, mode="set", value=value) for n in range(4))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_intervention_changes_the_text_and_the_next_request_is_unaffected(arch):
    explainer = Explainer(tiny_model(arch), tiny_tokenizer())
    before = explainer.generate(REQUEST).generated_ids
    hooks = count_hooks(explainer.model)
    with neuron_interventions(explainer.layout, last_block_push(explainer)):
        changed = explainer.generate(REQUEST).generated_ids
    after = explainer.generate(REQUEST).generated_ids
    assert changed != before
    assert after == before
    assert count_hooks(explainer.model) == hooks


def test_interventions_apply_at_every_kv_cached_step():
    """Greedy text under an intervention == argmax of one intervened teacher-forced forward at every step."""
    explainer = Explainer(tiny_model("llama"), tiny_tokenizer())
    interventions = (*last_block_push(explainer, 8.0), Intervention(layer=0, neuron=5, mode="scale", value=-3.0))
    with neuron_interventions(explainer.layout, interventions):
        generation = explainer.generate(REQUEST)
        ids = [t.id for t in generation.tokens]
        with torch.inference_mode():
            logits = explainer.model(torch.tensor([ids]), use_cache=False).logits[0]
    predicted = logits[generation.prompt_length - 1 : -1].argmax(-1).tolist()
    assert predicted == generation.generated_ids


def test_set_and_scale_are_what_the_down_projection_receives():
    model = tiny_model("gpt2")
    explainer = Explainer(model, tiny_tokenizer())
    layout = explainer.layout
    ids = torch.tensor([tiny_tokenizer().encode("The capital of France is")])
    with torch.inference_mode(), captured_mlp_activations(layout) as plain:
        model(ids, use_cache=False)
    changes = (
        Intervention(layer=1, neuron=7, mode="set", value=2.5),
        Intervention(layer=0, neuron=3, mode="scale", value=-2.0),
        Intervention(layer=0, neuron=3, mode="scale", value=0.5),  # applied in order: x * -2 * 0.5
    )
    # capture registered *before* the interventions still sees the intervened values (prepend)
    with torch.inference_mode(), captured_mlp_activations(layout) as changed, neuron_interventions(layout, changes):
        model(ids, use_cache=False)
    assert torch.all(changed.tensor(1)[..., 7] == 2.5)
    torch.testing.assert_close(changed.tensor(0)[..., 3], -plain.tensor(0)[..., 3], rtol=0, atol=1e-6)
    untouched = [n for n in range(128) if n != 3]
    torch.testing.assert_close(changed.tensor(0)[..., untouched], plain.tensor(0)[..., untouched], rtol=0, atol=0)


def test_interventions_work_with_autograd():
    """The hook changes a copy, never its input in place, so attribution under an intervention works."""
    model = tiny_model("llama")
    explainer = Explainer(model, tiny_tokenizer())
    embeddings = explainer.layout.embedding(torch.tensor([[5, 6, 7]])).detach().requires_grad_(True)
    with neuron_interventions(explainer.layout, (Intervention(layer=0, neuron=1, mode="scale", value=3.0),)):
        model(inputs_embeds=embeddings, use_cache=False).logits[0, -1, 0].backward()
    assert embeddings.grad is not None and torch.isfinite(embeddings.grad).all()


@pytest.mark.parametrize(
    ("interventions", "field"),
    [
        ((Intervention(layer=0, neuron=0), Intervention(layer=2, neuron=0)), "interventions[1].layer"),
        ((Intervention(layer=1, neuron=64),), "interventions[0].neuron"),
        ((Intervention(layer=0, neuron=-1),), "interventions[0].neuron"),
        ((Intervention(layer=0, neuron=0, mode="add"),), "interventions[0].mode"),
        ((Intervention(layer=0, neuron=0, value=float("nan")),), "interventions[0].value"),
        ((Intervention(layer=True, neuron=0),), "interventions[0].layer"),
    ],
)
def test_invalid_interventions_name_the_field_and_register_nothing(interventions, field):
    explainer = Explainer(tiny_model("llama"), tiny_tokenizer())
    with pytest.raises(InvalidRequest) as error, neuron_interventions(explainer.layout, interventions):
        pass
    assert error.value.field == field
    assert count_hooks(explainer.model) == 0


@pytest.mark.parametrize(
    ("intervention", "field"),
    [
        (Intervention(layer=0, neuron=-1), "interventions[1].neuron"),
        (Intervention(layer=0, neuron=0, mode="add"), "interventions[1].mode"),
        (Intervention(layer=0, neuron=0, value=float("inf")), "interventions[1].value"),
        (Intervention(layer=True, neuron=0), "interventions[1].layer"),
    ],
)
def test_request_params_check_interventions_without_the_model(intervention, field):
    with pytest.raises(InvalidRequest) as error:
        InternalsParams(interventions=(Intervention(layer=0, neuron=0), intervention))
    assert error.value.field == field


def test_too_many_interventions_exceed_the_limit():
    explainer = Explainer(tiny_model("llama"), tiny_tokenizer())
    many = tuple(Intervention(layer=0, neuron=n) for n in range(5))
    with (
        pytest.raises(LimitExceeded) as error,
        neuron_interventions(explainer.layout, many, InternalsLimits(max_interventions=4)),
    ):
        pass
    assert error.value.field == "interventions" and "max_interventions" in str(error.value)
