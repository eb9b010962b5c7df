"""Logit lens, token rankings and the watch list on eight tiny architectures.

The tiny models' final norms get random weights (and biases) so that a double-normalised or
un-normalised lens would be visibly wrong (~3e-3 in probability) while ours must match the
model's own output to 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecco_engine import Explainer, ExplainRequest, GenerationParams, InvalidRequest, NonFiniteResult
from ecco_engine.internals import (
    InternalsLimits,
    InternalsParams,
    LensHead,
    WatchedTokens,
    captured_residual_stream,
    inspect_sequence,
    ranks_of,
)
from ecco_engine.layout import discover_layout
from tiny_models import ARCHITECTURES, tiny_model, tiny_tokenizer

PROMPT = "The capital of France is Paris. The capital"
TOL = 1e-5  # probabilities and log-probabilities, fp32


def sharpened(arch: str):
    """A tiny model whose final norm has random weights (scale ~3) and biases."""
    model = tiny_model(arch)
    layout = discover_layout(model)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        weight = layout.final_norm.weight
        weight.copy_(3.0 + torch.randn(weight.shape, generator=generator))
        bias = getattr(layout.final_norm, "bias", None)
        if bias is not None:
            bias.copy_(torch.randn(bias.shape, generator=generator))
    return model, layout


def model_probs(model, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return torch.softmax(model(torch.tensor([ids]), use_cache=False).logits[0].float(), dim=-1)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_last_layer_lens_is_the_models_output_distribution(arch):
    model, layout = sharpened(arch)
    ids = tiny_tokenizer().encode(PROMPT)
    expected = model_probs(model, ids)  # (n, vocab)
    with torch.inference_mode():
        with captured_residual_stream(layout, range(len(ids))) as store:
            model(torch.tensor([ids]), use_cache=False)
        lens_logits = LensHead(model, layout)(store.tensor(layout.n_layers)[0])
    torch.testing.assert_close(torch.softmax(lens_logits, -1), expected, rtol=0, atol=TOL)
    torch.testing.assert_close(torch.log_softmax(lens_logits, -1), expected.log(), rtol=0, atol=1e-4)

    params = InternalsParams(layer_predictions=True, top_k=5, positions=tuple(range(len(ids))))
    result = inspect_sequence(model, layout, tiny_tokenizer(), ids, 3, params).layer_predictions
    assert result.output_deviation <= TOL
    top = torch.topk(expected, 5, dim=-1)
    assert result.token_ids.shape == (len(ids), layout.n_layers + 1, 5)
    np.testing.assert_array_equal(result.token_ids[:, -1], top.indices.numpy())
    np.testing.assert_allclose(result.probabilities[:, -1], top.values.numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_residual_stream_is_hidden_states_before_the_final_norm(arch):
    """Depths 0..n-1 equal transformers' hidden_states; hidden_states[-1] is already normed, so
    normalising it again (the double-norm pitfall) would move the distribution by >1e-4."""
    model, layout = sharpened(arch)
    ids = tiny_tokenizer().encode(PROMPT)
    with torch.inference_mode():
        with captured_residual_stream(layout, range(len(ids))) as store:
            hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        for depth in range(layout.n_layers):
            torch.testing.assert_close(store.tensor(depth), hidden[depth], rtol=0, atol=1e-6)
        final = store.tensor(layout.n_layers)
        torch.testing.assert_close(layout.final_norm(final), hidden[-1], rtol=0, atol=1e-5)
        head = LensHead(model, layout)
        right = torch.softmax(head(final[0]), -1)
        double = torch.softmax(head(layout.final_norm(hidden[-1])[0]), -1)
    assert float((right - double).abs().max()) > 1e-4


@pytest.mark.parametrize("arch", ["gpt2", "llama", "opt"])
def test_greedy_tokens_rank_first_at_the_last_layer(arch):
    model, layout = sharpened(arch)
    tok = tiny_tokenizer()
    generation = Explainer(model, tok, layout=layout).generate(
        ExplainRequest(prompt="The capital of France is", generation=GenerationParams(max_new_tokens=5))
    )
    ids = [t.id for t in generation.tokens]
    params = InternalsParams(layer_predictions=True, token_rankings=True, top_k=3)
    result = inspect_sequence(model, layout, tok, ids, generation.prompt_length, params)
    rankings = result.token_rankings
    n_generated = len(ids) - generation.prompt_length
    assert rankings.positions == tuple(range(generation.prompt_length, len(ids)))
    assert rankings.token_ids == tuple(generation.generated_ids)
    assert rankings.ranks.shape == rankings.probabilities.shape == (n_generated, layout.n_layers + 1)
    assert (rankings.ranks[:, -1] == 0).all()  # greedy: the generated token is the model's top token
    # default lens positions: the position that predicted each generated token
    predictions = result.layer_predictions
    assert predictions.positions == tuple(p - 1 for p in rankings.positions)
    np.testing.assert_array_equal(predictions.token_ids[:, -1, 0], generation.generated_ids)
    np.testing.assert_allclose(predictions.probabilities[:, -1, 0], rankings.probabilities[:, -1], rtol=0, atol=1e-7)
    # every depth: rank and probability agree with a direct computation from the residual stream
    expected = model_probs(model, ids)
    for i, position in enumerate(rankings.positions):
        token = ids[position]
        direct_rank = int((expected[position - 1] > expected[position - 1, token]).sum())
        assert rankings.ranks[i, -1] == direct_rank
        assert abs(rankings.probabilities[i, -1] - float(expected[position - 1, token])) <= TOL


def test_rankings_at_every_depth_match_a_direct_lens():
    model, layout = sharpened("qwen2")
    tok = tiny_tokenizer()
    ids = tok.encode(PROMPT)
    prompt_length = 4
    watch = (" capital", tok.eos_token_id)
    params = InternalsParams(token_rankings=True, watch=watch, watch_position=6)
    result = inspect_sequence(model, layout, tok, ids, prompt_length, params)
    with torch.inference_mode():
        with captured_residual_stream(layout, range(len(ids))) as store:
            model(torch.tensor([ids]), use_cache=False)
        head = LensHead(model, layout)
        watch_ids = torch.tensor([tok.encode(" capital")[0], tok.eos_token_id])
        for depth in range(layout.n_layers + 1):
            logits = head(store.tensor(depth)[0])  # (n, vocab)
            probs = torch.softmax(logits, -1)
            targets = torch.tensor(ids[prompt_length:])
            rows = torch.arange(prompt_length - 1, len(ids) - 1)
            ranks = ranks_of(logits[rows], targets)
            np.testing.assert_array_equal(result.token_rankings.ranks[:, depth], ranks.numpy())
            np.testing.assert_allclose(
                result.token_rankings.probabilities[:, depth], probs[rows, targets].numpy(), rtol=0, atol=TOL
            )
            watched = ranks_of(logits[6:7], watch_ids[None, :])[0]
            np.testing.assert_array_equal(result.watch.ranks[:, depth], watched.numpy())
    assert result.watch.position == 6 and result.watch.token_ids == tuple(int(i) for i in watch_ids)


def test_watch_defaults_to_the_last_prompt_position_and_rejects_multi_token_words():
    model, layout = sharpened("gpt2")
    tok = tiny_tokenizer()
    ids = tok.encode(PROMPT)
    result = inspect_sequence(model, layout, tok, ids, 5, InternalsParams(watch=(" capital",)))
    assert result.watch.position == 4
    assert result.layer_predictions is None and result.token_rankings is None and result.activations is None
    with pytest.raises(InvalidRequest) as error:
        inspect_sequence(model, layout, tok, ids, 5, InternalsParams(watch=(" capital", " Paris")))
    assert error.value.field == "watch[1]"


def test_ranks_count_strictly_larger_logits():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0]])
    assert ranks_of(logits, torch.tensor([1])).tolist() == [0]
    assert ranks_of(logits, torch.tensor([[2, 0, 3]])).tolist() == [[0, 2, 3]]


def test_overtake_layer_is_where_the_winner_stays_ahead():
    ranks = np.array([[5, 1, 3, 0, 0], [2, 4, 1, 1, 2]])
    watched = WatchedTokens(position=3, token_ids=(10, 20), ranks=ranks, probabilities=np.zeros(ranks.shape))
    assert watched.overtake_layer(10, 20) == 3  # ahead at depth 1 too, but behind again at depth 2
    assert watched.overtake_layer(20, 10) is None


def _post_processing_model(family: str):
    from transformers import AutoModelForCausalLM, CohereConfig, Gemma2Config, GraniteConfig, OPTConfig

    vocab = len(tiny_tokenizer())
    small = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    config = {
        "gemma2_softcap": lambda: Gemma2Config(**small, head_dim=8, final_logit_softcapping=0.05),
        "cohere_logit_scale": lambda: CohereConfig(**small, logit_scale=7.0),
        "granite_logits_scaling": lambda: GraniteConfig(**small, logits_scaling=0.1),
        "opt_project_out": lambda: OPTConfig(
            vocab_size=vocab,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=16,
            max_position_embeddings=256,
        ),
    }[family]()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    layout = discover_layout(model)
    with torch.no_grad():
        layout.final_norm.weight.mul_(20)  # sharp distributions: a missing step is visible
    return model, layout


@pytest.mark.parametrize(
    "family", ["gemma2_softcap", "cohere_logit_scale", "granite_logits_scaling", "opt_project_out"]
)
def test_lens_applies_what_the_model_does_after_the_final_norm(family):
    """Soft-capping, logit scales and OPT's project_out: without them the lens is off by 1e-3..0.8."""
    model, layout = _post_processing_model(family)
    ids = tiny_tokenizer().encode(PROMPT)
    params = InternalsParams(layer_predictions=True, positions=tuple(range(len(ids))))
    assert inspect_sequence(model, layout, tiny_tokenizer(), ids, 3, params).layer_predictions.output_deviation <= TOL
    head = LensHead(model, layout)
    if family == "opt_project_out":
        assert len(head.projections) == 1
        return
    expected = model_probs(model, ids)
    with torch.inference_mode():
        with captured_residual_stream(layout, range(len(ids))) as store:
            model(torch.tensor([ids]), use_cache=False)
        head.post = []
        bare = torch.softmax(head(store.tensor(layout.n_layers)[0]), -1)
    assert float((bare - expected).abs().max()) > 1e-3


def test_non_finite_lens_is_an_error_not_a_result():
    model, layout = sharpened("llama")
    with torch.no_grad():
        layout.final_norm.weight[3] = float("nan")
    ids = tiny_tokenizer().encode(PROMPT)
    with pytest.raises(NonFiniteResult):
        inspect_sequence(model, layout, tiny_tokenizer(), ids, 3, InternalsParams(token_rankings=True))


@pytest.mark.parametrize("chunk_rows", [1, 3, 7])
def test_chunked_unembedding_gives_the_same_results(chunk_rows):
    """The memory bound (rows x vocab per unembedding call) changes nothing but the batching."""
    model, layout = sharpened("gemma")
    tok = tiny_tokenizer()
    ids = tok.encode(PROMPT)
    params = InternalsParams(layer_predictions=True, token_rankings=True, watch=(" capital", 7), watch_position=2)
    whole = inspect_sequence(model, layout, tok, ids, 4, params)
    vocab = layout.unembedding.weight.shape[0]
    chunked = inspect_sequence(
        model, layout, tok, ids, 4, params, InternalsLimits(lens_chunk_elements=chunk_rows * vocab)
    )
    np.testing.assert_array_equal(chunked.layer_predictions.token_ids, whole.layer_predictions.token_ids)
    np.testing.assert_allclose(
        chunked.layer_predictions.probabilities, whole.layer_predictions.probabilities, rtol=0, atol=1e-6
    )
    np.testing.assert_array_equal(chunked.token_rankings.ranks, whole.token_rankings.ranks)
    np.testing.assert_array_equal(chunked.watch.ranks, whole.watch.ranks)
    np.testing.assert_allclose(chunked.watch.probabilities, whole.watch.probabilities, rtol=0, atol=1e-6)
    assert chunked.layer_predictions.output_deviation <= TOL
