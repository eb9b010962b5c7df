"""Exact replay by token ids, and the log-probability (and top alternatives) of every generated or
replayed token: equal to a direct ``log_softmax`` of the model's logits (1e-5)."""

from __future__ import annotations

import pytest
import torch

from ecco_engine import (
    AttributionParams,
    EngineLimits,
    Explainer,
    ExplainRequest,
    GeneratedToken,
    GenerationParams,
    InvalidRequest,
    LimitExceeded,
)
from ecco_engine.replay import roundtrip_warning
from tiny_models import tiny_model, tiny_tokenizer

PROMPT = "The capital of France is"
NO_ATTRIBUTION = AttributionParams(methods=())


def _explainer(seed: int = 0, limits: EngineLimits | None = None) -> Explainer:
    return Explainer(tiny_model("llama", seed=seed), tiny_tokenizer(), limits=limits)


def _split_ids() -> list[int]:
    """Ids of single characters whose text re-tokenizes to fewer, merged tokens ("c", "a", "p" -> "cap")."""
    tok = tiny_tokenizer()
    ids = tok.convert_tokens_to_ids(["Ġ", "c", "a", "p", "i", "t", "a", "l"])
    assert tok.encode(tok.decode(ids), add_special_tokens=False) != ids
    return ids


def _assert_logprobs_are_the_models(explainer: Explainer, generation, top_n: int) -> None:
    ids = [t.id for t in generation.tokens]
    with torch.no_grad():
        log_probs = torch.log_softmax(explainer.model(torch.tensor([ids])).logits[0].double(), dim=-1)
    for t in generation.tokens[: generation.prompt_length]:
        assert t.logprob is None and t.top_tokens == ()
    for p in range(generation.prompt_length, len(ids)):
        token = generation.tokens[p]
        assert token.logprob == pytest.approx(float(log_probs[p - 1, ids[p]]), abs=1e-5)
        top = torch.topk(log_probs[p - 1], top_n)
        assert [a.id for a in token.top_tokens] == top.indices.tolist()
        for alternative, value in zip(token.top_tokens, top.values.tolist(), strict=True):
            assert alternative.logprob == pytest.approx(value, abs=1e-5)
            assert alternative.text == tiny_tokenizer().decode([alternative.id])


@pytest.mark.parametrize("sampled", [False, True])
def test_generated_tokens_carry_the_models_log_probabilities(sampled):
    explainer = _explainer(seed=1)
    generation = GenerationParams(max_new_tokens=5, top_n_tokens=3, do_sample=sampled, temperature=0.5, seed=7)
    result = explainer.generate(ExplainRequest(prompt=PROMPT, generation=generation))
    _assert_logprobs_are_the_models(explainer, result, 3)
    # the stream carries the same numbers as the reply
    request = ExplainRequest(prompt=PROMPT, generation=generation, attribution=NO_ATTRIBUTION)
    *events, final = explainer.stream(request)
    streamed = [e for e in events if isinstance(e, GeneratedToken)]
    assert [(e.logprob, e.top_tokens) for e in streamed] == [
        (t.logprob, t.top_tokens) for t in final.generation.tokens[final.generation.prompt_length :]
    ]


def test_replay_by_ids_gives_exactly_the_logged_ids_and_warns_that_the_text_would_not():
    explainer = _explainer()
    logged = _split_ids()
    by_ids = explainer.explain(
        ExplainRequest(
            prompt=PROMPT,
            continuation_ids=tuple(logged),
            generation=GenerationParams(top_n_tokens=2),
            attribution=AttributionParams(methods=("grad_x_input",)),
        )
    )
    generation = by_ids.generation
    assert generation.generated_ids == logged and generation.finish_reason == "given"
    assert by_ids.attributions[0].target_positions == tuple(range(generation.prompt_length, len(generation.tokens)))
    (warning,) = generation.warnings
    assert warning.startswith("continuation_ids: ") and "replay by ids" in warning
    _assert_logprobs_are_the_models(explainer, generation, 2)
    # the same text sent as text explains other tokens, which is what the warning is about
    by_text = explainer.generate(ExplainRequest(prompt=PROMPT, continuation=generation.generated_text))
    assert by_text.generated_ids != logged and by_text.generated_text == generation.generated_text
    assert by_text.warnings == ()
    # ids that survive the round trip get no warning
    plain = explainer.generate(ExplainRequest(prompt=PROMPT, continuation_ids=tuple(by_text.generated_ids)))
    assert plain.generated_ids == by_text.generated_ids and plain.warnings == ()


def test_roundtrip_warning_names_the_field():
    tok = tiny_tokenizer()
    assert roundtrip_warning(tok, tok.encode(" capital", add_special_tokens=False), "generated_text") is None
    assert roundtrip_warning(tok, _split_ids(), "generated_text").startswith("generated_text: the text of these 8")


def test_replay_and_top_n_checks():
    explainer = _explainer(limits=EngineLimits(max_top_n_tokens=4))
    with pytest.raises(InvalidRequest, match="continuation_ids: token id 99999"):
        explainer.generate(ExplainRequest(prompt=PROMPT, continuation_ids=(5, 99999)))
    with pytest.raises(InvalidRequest, match="continuation_ids"):
        ExplainRequest(prompt=PROMPT, continuation="x", continuation_ids=(5,))
    with pytest.raises(InvalidRequest, match="continuation_ids"):
        ExplainRequest(prompt=PROMPT, continuation_ids=())
    with pytest.raises(InvalidRequest, match="top_n_tokens"):
        GenerationParams(top_n_tokens=-1)
    with pytest.raises(LimitExceeded, match=r"generation\.top_n_tokens: must be at most 4"):
        explainer.generate(ExplainRequest(prompt=PROMPT, generation=GenerationParams(top_n_tokens=5)))
