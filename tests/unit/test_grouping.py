"""Scores by word, span and chat turn (``ExplainRequest.grouping``): template and special tokens left out,
a word split into several tokens gets one score, and the combination rule (sum; renormalized rows for
``l2_normalized``) holds exactly (float32 round-off, 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest

from ecco_engine import (
    AttributionParams,
    CharSpan,
    ChatMessage,
    Explainer,
    ExplainRequest,
    GenerationParams,
    GroupingParams,
    InvalidRequest,
)
from ecco_engine.grouping import GroupingParams as Params
from ecco_engine.grouping import group_tokens, special_ids
from ecco_engine.tokens import Token
from tiny_models import tiny_model, tiny_tokenizer

QUESTION = "The capital of France is"


def _explain(grouping: GroupingParams, aggregation: str = "sum", **request):
    explainer = Explainer(tiny_model("gpt2", seed=4), tiny_tokenizer())
    params = AttributionParams(methods=("grad_x_input", "integrated_gradients"), n_steps=4, aggregation=aggregation)
    request.setdefault("messages", (ChatMessage("user", QUESTION),))
    generation = GenerationParams(max_new_tokens=4)
    return explainer.explain(ExplainRequest(generation=generation, attribution=params, grouping=grouping, **request))


def _expected(attribution, groups, *, renormalize: bool) -> tuple[list[int], np.ndarray]:
    """The rule, spelled out: sum token scores over each source group and over each target group's
    explained tokens; renormalize rows for l2_normalized."""
    group_of = {p: g for g, group in enumerate(groups) for p in group.positions}
    targets = sorted({group_of[p] for p in attribution.target_positions if p in group_of})
    rows = np.zeros((len(targets), len(groups)))
    for i, t in enumerate(attribution.target_positions):
        if t not in group_of:
            continue
        for s in range(attribution.scores.shape[1]):
            if s in group_of:
                rows[targets.index(group_of[t]), group_of[s]] += attribution.scores[i, s]
    if renormalize:
        rows = rows / rows.sum(axis=1, keepdims=True)
    return targets, rows


def _template_positions(explanation) -> set[int]:
    """Prompt positions outside the message's content, and special tokens anywhere."""
    tokens = explanation.generation.tokens
    prompt = "".join(t.text for t in tokens[: explanation.generation.prompt_length])
    start = prompt.index(QUESTION)
    special = special_ids(tiny_tokenizer())
    out = set()
    for p, t in enumerate(tokens):
        inside = start <= t.start + (len(t.text) - len(t.text.lstrip())) < start + len(QUESTION)
        if t.id in special or (p < explanation.generation.prompt_length and not inside):
            out.add(p)
    return out


@pytest.mark.parametrize("aggregation", ["sum", "l2_normalized"])
def test_chat_words_leave_out_the_template_and_give_a_split_word_one_score(aggregation):
    explanation = _explain(GroupingParams(unit="words"), aggregation)
    view = explanation.grouped
    assert view is not None and view.unit == "words"
    template = _template_positions(explanation)
    assert len(template) > 5  # <|im_start|>user\n ... <|im_start|>assistant\n
    grouped = {p for g in view.groups for p in g.positions}
    assert not grouped & template and not any(g.special for g in view.groups)
    assert not any("<|im" in g.text or "user" in g.text or "assistant" in g.text for g in view.groups)
    prompt_words = [g.text for g in view.groups if not g.generated]
    assert prompt_words == ["The", " capital", " of", " France", " is"]
    france = next(g for g in view.groups if g.text == " France")
    assert len(france.positions) > 1  # " ", "Fr", "an", "ce" with this tokenizer: several pieces, one group
    column = view.groups.index(france)
    for attribution, grouped_attribution in zip(explanation.attributions, view.attributions, strict=True):
        assert grouped_attribution.method == attribution.method
        targets, rows = _expected(attribution, view.groups, renormalize=aggregation == "l2_normalized")
        assert list(grouped_attribution.target_groups) == targets
        np.testing.assert_allclose(grouped_attribution.scores, rows, rtol=1e-5, atol=1e-6)
        if aggregation == "sum":  # the word's one score is the sum over its pieces (and the row group's targets)
            for row, g in enumerate(grouped_attribution.target_groups):
                explained = [i for i, t in enumerate(attribution.target_positions) if t in view.groups[g].positions]
                pieces = attribution.scores[np.ix_(explained, list(france.positions))].sum()
                assert grouped_attribution.scores[row, column] == pytest.approx(pieces, rel=1e-5, abs=1e-6)
        else:
            np.testing.assert_allclose(grouped_attribution.scores.sum(axis=1), 1.0, rtol=1e-5)


def test_turns_one_group_per_message_and_one_for_the_response():
    messages = (ChatMessage("system", "Be brief."), ChatMessage("user", QUESTION))
    explanation = _explain(GroupingParams(unit="turns"), messages=messages)
    groups = explanation.grouped.groups
    assert [(g.role, g.text, g.generated) for g in groups[:2]] == [
        ("system", "Be brief.", False),
        ("user", QUESTION, False),
    ]
    assert len(groups) == 3 and groups[2].role == "assistant" and groups[2].generated
    assert groups[2].text == explanation.generation.generated_text
    for a in explanation.grouped.attributions:
        assert a.target_groups == (2,) and a.scores.shape == (1, 3)
    # keep_special: the template runs come back as groups of their own and every token is in one group
    kept = _explain(GroupingParams(unit="turns", keep_special=True), messages=messages).grouped.groups
    positions = [p for g in kept for p in g.positions]
    assert sorted(positions) == list(range(len(explanation.generation.tokens)))
    assert [g.special for g in kept] == [True, False, True, False, True, False]


def test_spans_take_the_tokens_whose_first_character_they_hold():
    explanation = _explain(
        GroupingParams(unit="spans", spans=(CharSpan(4, 11), CharSpan(15, 24))), prompt=QUESTION, messages=()
    )
    groups = explanation.grouped.groups
    assert [g.text for g in groups] == [" capital", "France is"]  # the " " token before "Fr" starts at 14
    for a in explanation.grouped.attributions:
        assert a.target_groups == ()  # the generated tokens are in no span
    with pytest.raises(InvalidRequest, match=r"grouping.spans\[0\]: ends at 999"):
        _explain(GroupingParams(unit="spans", spans=(CharSpan(0, 999),)), prompt=QUESTION, messages=())


def test_request_checks():
    with pytest.raises(InvalidRequest, match="spans"):
        GroupingParams(unit="spans")
    with pytest.raises(InvalidRequest, match="spans"):
        GroupingParams(unit="words", spans=(CharSpan(0, 1),))
    with pytest.raises(InvalidRequest, match=r"spans\[1\]"):
        GroupingParams(unit="spans", spans=(CharSpan(0, 5), CharSpan(4, 6)))
    with pytest.raises(InvalidRequest, match="end"):
        CharSpan(3, 3)
    with pytest.raises(InvalidRequest, match=r"grouping\.unit: 'turns' groups a chat"):
        ExplainRequest(prompt="x", grouping=GroupingParams(unit="turns"))


def _tokens(*texts: str) -> tuple[Token, ...]:
    out, offset = [], 0
    for i, text in enumerate(texts):
        out.append(Token(id=100 + i, text=text, start=offset, end=offset + len(text)))
        offset += len(text)
    return tuple(out)


def test_word_rules_on_token_texts():
    tokens = _tokens(" Par", "is", ".", " don", "'t", "\n", "\n", "As", " 20", "24", "!")
    groups = group_tokens(tokens, 8, Params(unit="words"), frozenset())
    # the prompt / generated boundary (after "As") splits words too
    assert [g.text for g in groups] == [" Paris", ".", " don't", "\n\nAs", " 2024", "!"]
    assert [g.generated for g in groups] == [False, False, False, False, True, True]
    assert groups[0].positions == (0, 1) and groups[3].positions == (5, 6, 7)
    every = group_tokens(tokens, 8, Params(unit="tokens"), frozenset({102}))
    assert [g.positions for g in every][:3] == [(0,), (1,), (3,)]  # the special token 102 (".") is left out
