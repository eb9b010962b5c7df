"""A contrast token per explained position (Inseq's ``contrast_targets``) equals a direct Captum
computation per token with that token's own contrast (1e-4 of each row's largest magnitude, fp32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients

from ecco_engine import AttributionParams, Explainer, ExplainRequest, GenerationParams, InvalidRequest
from ecco_engine.attribution import aggregate
from ecco_engine.types import Aggregation
from tiny_models import tiny_model, tiny_tokenizer

PROMPT = "The capital of France is"
CONTRASTS = {2: 40, 0: 5, 1: " of"}  # generated-token index -> contrast (id or one-token text)


def _explain(model, method: str, **attribution):
    params = AttributionParams(methods=(method,), target="contrastive", aggregation="sum", n_steps=8, **attribution)
    request = ExplainRequest(prompt=PROMPT, generation=GenerationParams(max_new_tokens=4), attribution=params)
    return Explainer(model, tiny_tokenizer()).explain(request)


def _captum_row(model, ids, position: int, contrast: int, method: str) -> np.ndarray:
    embedding = model.get_input_embeddings()
    prefix = embedding(torch.tensor([ids[:position]])).detach()

    def forward(x):
        logits = model(inputs_embeds=x).logits[:, -1, :]
        return torch.log_softmax(logits, -1)[:, ids[position]] - torch.log_softmax(logits, -1)[:, contrast]

    if method == "integrated_gradients":
        base = embedding.weight[tiny_tokenizer().eos_token_id].detach().expand_as(prefix)
        attr = IntegratedGradients(forward).attribute(prefix, baselines=base, n_steps=8, method="gausslegendre")
    else:
        attr = InputXGradient(forward).attribute(prefix)
    return aggregate(attr.detach().double(), Aggregation.SUM)[0].numpy()


@pytest.mark.parametrize("method", ["grad_x_input", "integrated_gradients"])
def test_per_position_contrast_equals_captum_per_token(method):
    model, tok = tiny_model("llama", seed=3), tiny_tokenizer()
    positions = tuple(CONTRASTS)  # (2, 0, 1): contrast_tokens pair with positions as given
    result = _explain(model, method, positions=positions, contrast_tokens=tuple(CONTRASTS.values()))
    ours = result.attributions[0]
    ids = [t.id for t in result.generation.tokens]
    expected_ids = [c if isinstance(c, int) else tok.encode(c)[0] for _, c in sorted(CONTRASTS.items())]
    assert ours.contrast_token_ids == tuple(expected_ids) and ours.contrast_token_id is None
    for row, (position, contrast) in enumerate(zip(ours.target_positions, expected_ids, strict=True)):
        reference = _captum_row(model, ids, position, contrast, method)
        scale = max(np.abs(reference).max(), 1e-12)
        np.testing.assert_allclose(ours.scores[row, :position], reference, rtol=0, atol=1e-4 * scale)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, position - 1]
        expected = float(logits[ids[position]] - logits[contrast])
        assert ours.target_scores[row] == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_one_contrast_for_all_is_reported_per_target_too():
    a = _explain(tiny_model("gpt2"), "grad_x_input", contrast_token=7).attributions[0]
    assert a.contrast_token_id == 7 and a.contrast_token_ids == (7,) * len(a.target_positions)
    plain = Explainer(tiny_model("gpt2"), tiny_tokenizer()).explain(ExplainRequest(prompt=PROMPT)).attributions[0]
    assert plain.contrast_token_ids is None and plain.contrast_token_id is None


def test_contrast_tokens_checks():
    model = tiny_model("gpt2")
    with pytest.raises(InvalidRequest, match=r"attribution\.contrast_tokens: gives 2 tokens for 4 explained"):
        _explain(model, "grad_x_input", contrast_tokens=(5, 6))
    with pytest.raises(InvalidRequest, match=r"attribution\.positions: must not repeat"):
        _explain(model, "grad_x_input", contrast_tokens=(5, 6), positions=(1, 1))
    with pytest.raises(InvalidRequest, match=r"attribution\.contrast_tokens\[1\]"):
        _explain(model, "grad_x_input", contrast_tokens=(5, " Paris is"), positions=(0, 1))
    with pytest.raises(InvalidRequest, match="not both"):
        AttributionParams(target="contrastive", contrast_token=5, contrast_tokens=(5,))
    with pytest.raises(InvalidRequest, match="contrast_tokens: is only meaningful"):
        AttributionParams(contrast_tokens=(5,))
