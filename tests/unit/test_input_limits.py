"""Limits apply to what a request gave, named as given; text too long for ``max_input_tokens`` is refused
before the tokenizer sees it."""

from __future__ import annotations

import time

import pytest

from ecco_engine import (
    AttributionParams,
    EngineLimits,
    Explainer,
    ExplainRequest,
    GenerationParams,
    InvalidRequest,
    LimitExceeded,
)
from ecco_engine.input_size import MAX_CHARS_PER_TOKEN, max_input_chars
from ecco_engine.types import DEFAULT_MAX_N_STEPS, ChatMessage
from tiny_models import tiny_model, tiny_tokenizer

LIMIT_STEPS = 1024


class CountingTokenizer:
    """The tiny tokenizer, counting the characters it is asked to encode."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self.encoded_chars = 0

    def encode(self, text, *args, **kwargs):
        self.encoded_chars += len(text)
        return self._tokenizer.encode(text, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __len__(self) -> int:
        return len(self._tokenizer)


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    limits = EngineLimits(max_new_tokens=4, max_n_steps=LIMIT_STEPS, max_input_tokens=16)
    return Explainer(tiny_model("gpt2"), CountingTokenizer(tiny_tokenizer()), limits=limits)


def _explain(explainer: Explainer, **attribution) -> tuple[int, ...]:
    request = ExplainRequest(
        prompt="hi",
        generation=GenerationParams(max_new_tokens=1),
        attribution=AttributionParams(**{"methods": ("integrated_gradients",), **attribution}),
    )
    (result,) = explainer.explain(request).attributions
    assert result.n_steps is not None
    return result.n_steps


def test_n_steps_above_the_default_ceiling_is_served_within_the_server_limit(explainer):
    """600 steps (> 512, the tolerance loop's default ceiling) with no max_n_steps sent: served as asked."""
    assert DEFAULT_MAX_N_STEPS < 600 < LIMIT_STEPS
    assert _explain(explainer, n_steps=600) == (600,)
    assert _explain(explainer, n_steps=600, completeness_tolerance=1e-12) == (600,)  # no room to double


def test_steps_beyond_the_server_limit_are_413_naming_the_field_sent(explainer):
    for attribution, field in [
        ({"n_steps": 100_000}, "n_steps"),
        ({"n_steps": LIMIT_STEPS + 1, "completeness_tolerance": 0.1}, "n_steps"),
        ({"n_steps": 4, "max_n_steps": LIMIT_STEPS + 1, "completeness_tolerance": 0.1}, "max_n_steps"),
    ]:
        with pytest.raises(LimitExceeded) as raised:
            _explain(explainer, **attribution)
        assert raised.value.field == f"attribution.{field}"  # the wire path of the field sent
        assert f"must be at most {LIMIT_STEPS} (the server's limit), got" in str(raised.value)


def test_an_omitted_max_n_steps_is_capped_at_the_server_limit():
    params = AttributionParams(methods=("integrated_gradients",), n_steps=4, completeness_tolerance=0.1)
    assert params.max_n_steps is None and params.step_ceiling == DEFAULT_MAX_N_STEPS
    assert params.within(128).max_n_steps == 128
    assert params.within(4096).max_n_steps == DEFAULT_MAX_N_STEPS
    assert AttributionParams(methods=("integrated_gradients",), n_steps=600).step_ceiling == 600
    given = AttributionParams(methods=("integrated_gradients",), n_steps=4, max_n_steps=64)
    assert given.within(32) is given  # a given one is checked against the limit, never changed
    with pytest.raises(InvalidRequest, match="max_n_steps: must be an integer >= n_steps"):
        AttributionParams(methods=("integrated_gradients",), n_steps=8, max_n_steps=4)


@pytest.mark.parametrize(("request_fields", "field"), [
    ({"prompt": "x" * 5_000_000}, "prompt"),
    ({"messages": (ChatMessage("user", "x" * 3_000_000), ChatMessage("user", "y" * 3_000_000))}, "messages"),
    ({"prompt": "x", "continuation": "y" * 5_000_000}, "continuation"),
])  # fmt: skip
def test_text_too_long_for_the_token_limit_is_refused_before_tokenizing(explainer, request_fields, field):
    request = ExplainRequest(generation=GenerationParams(max_new_tokens=1), **request_fields)
    before = explainer.tokenizer.encoded_chars
    for call in (explainer.generate, explainer.explain, lambda r: list(explainer.stream(r))):
        start = time.perf_counter()
        with pytest.raises(LimitExceeded) as raised:
            call(request)
        print(f"refused in {time.perf_counter() - start:.4f} s")  # measured, not asserted
        assert raised.value.field == field
        assert f"at most {max_input_chars(16)} can fit the limit of 16 tokens" in str(raised.value)
    assert explainer.tokenizer.encoded_chars == before  # the tokenizer never saw it


def test_text_within_the_character_bound_is_counted_in_tokens(explainer):
    """Short of the character bound the exact token count decides (the tiny tokenizer: ~1 token per character)."""
    request = ExplainRequest(prompt="ab " * 20, generation=GenerationParams(max_new_tokens=1))
    assert len(request.prompt or "") <= max_input_chars(16)
    with pytest.raises(LimitExceeded, match=r"prompt: input is \d+ tokens; the limit is 16"):
        explainer.generate(request)


def test_a_one_token_text_longer_than_any_token_is_refused_unread(explainer):
    text = "y" * (MAX_CHARS_PER_TOKEN + 1)
    request = ExplainRequest(
        prompt="hi",
        generation=GenerationParams(max_new_tokens=1),
        attribution=AttributionParams(methods=("integrated_gradients",), target="contrastive", contrast_token=text),
    )
    before = explainer.tokenizer.encoded_chars
    with pytest.raises(InvalidRequest, match=f"contrast_token: is {MAX_CHARS_PER_TOKEN + 1} characters"):
        explainer.explain(request)
    assert explainer.tokenizer.encoded_chars - before < len(text)
