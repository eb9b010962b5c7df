"""Inside SmolLM2-135M-Instruct: the logit lens settles on the generated token; " Paris" overtakes " London"."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecco_engine import ExplainRequest, GenerationParams
from ecco_engine.generation import iter_generate
from ecco_engine.internals import InternalsParams, captured_mlp_activations, count_hooks, inspect_sequence

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

PROMPT = "The capital of France is"


def test_lens_final_layer_is_the_generated_token_and_paris_overtakes_london(default_explainer):
    explainer = default_explainer
    tok = explainer.tokenizer
    generation = explainer.generate(ExplainRequest(prompt=PROMPT, generation=GenerationParams(max_new_tokens=3)))
    ids = [t.id for t in generation.tokens]
    hooks = count_hooks(explainer.model)
    params = InternalsParams(layer_predictions=True, top_k=5, token_rankings=True, watch=(" Paris", " London"))
    result = inspect_sequence(explainer.model, explainer.layout, tok, ids, generation.prompt_length, params)
    assert count_hooks(explainer.model) == hooks

    lens = result.layer_predictions
    n_depths = explainer.layout.n_layers + 1
    assert lens.token_ids.shape == (len(generation.generated_ids), n_depths, 5)
    assert lens.output_deviation <= 1e-5  # the last depth is the model's own distribution
    np.testing.assert_array_equal(lens.token_ids[:, -1, 0], generation.generated_ids)
    assert (result.token_rankings.ranks[:, -1] == 0).all()
    assert generation.generated_text.startswith(" Paris")

    watch = result.watch
    paris, london = (tok.encode(w, add_special_tokens=False)[0] for w in (" Paris", " London"))
    assert watch.position == generation.prompt_length - 1 and watch.token_ids == (paris, london)
    layer = watch.overtake_layer(paris, london)
    assert layer is not None and 0 < layer <= explainer.layout.n_layers
    assert (watch.ranks[0, layer:] < watch.ranks[1, layer:]).all()
    assert watch.ranks[0, layer - 1] >= watch.ranks[1, layer - 1]
    print(
        f"\n' Paris' overtakes ' London' at lens depth {layer} of {explainer.layout.n_layers} "
        f"(residual after block {layer - 1}); ranks Paris/London per depth:\n"
        f"{watch.ranks[0].tolist()}\n{watch.ranks[1].tolist()}"
    )


def test_generation_time_activations_equal_the_teacher_forced_forward(default_explainer):
    explainer = default_explainer
    tok, layout, model = explainer.tokenizer, explainer.layout, explainer.model
    prompt = tok.encode(PROMPT)
    layers = (0, layout.n_layers // 2, layout.n_layers - 1)
    with captured_mlp_activations(layout, layers) as during:
        new = [s.token_id for s in iter_generate(model, prompt, GenerationParams(max_new_tokens=4), set(), tok.decode)]
    with torch.inference_mode(), captured_mlp_activations(layout, layers) as forced:
        model(torch.tensor([prompt + new]), use_cache=False)
    for layer in layers:
        expected = forced.tensor(layer)[0, :-1]
        torch.testing.assert_close(
            during.tensor(layer)[0], expected, rtol=0, atol=1e-5 * max(1.0, float(expected.abs().max()))
        )
