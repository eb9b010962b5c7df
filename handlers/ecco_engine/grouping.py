"""Roll token-level attribution scores up to the units users think in (``ExplainRequest.grouping``).

Units: single tokens, words (from the tokens' texts and character offsets), given character spans of
the sequence's text, or chat turns (one group per message plus one for the generated text). Sources
and targets are grouped alike.

- A token belongs to the group holding its *anchor*: its first non-whitespace character (its start
  for a whitespace-only or empty token).
- Special tokens (the tokenizer's special ids, e.g. ``<|im_end|>``) and chat-template text (prompt
  tokens of a rendered chat whose anchor lies outside every message's content: role headers, a
  default system prompt) belong to no group; with ``keep_special`` each run of them is a group of
  its own (never crossing the prompt / generated boundary), marked ``special``.
- A word is a run of tokens of one segment (a chat message's content, the plain prompt, the
  generated text) with no whitespace between them and word characters on both sides of every joint:
  ``" Par" + "is"`` is one word, ``"Paris" + "."`` two; ``"'s"``-style contractions join the word,
  and whitespace-only tokens join the word that follows them (``" " + "Fr" + "ance"``).

Scores combine by summing: a grouped row is the sum of the explained tokens' rows in the target
group, each column the sum over the source group's tokens (for a signed ``sum`` aggregation this
keeps completeness; for ``l2`` it is the sum of the norms). For ``l2_normalized`` each grouped row is
then divided by its sum, so the mass of left-out tokens is redistributed over the groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from .errors import InvalidRequest, UnsupportedModel
from .tokens import Token


class GroupUnit(StrEnum):
    """What one group is."""

    TOKENS = "tokens"
    WORDS = "words"
    SPANS = "spans"
    TURNS = "turns"


@dataclass(frozen=True)
class CharSpan:
    """Characters ``[start, end)`` (code points) of the sequence's text, as ``Token.start`` / ``end``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        for name, value in (("start", self.start), ("end", self.end)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidRequest(name, f"must be an integer, got {value!r}")
        if not 0 <= self.start < self.end:
            raise InvalidRequest("end", f"need 0 <= start < end, got [{self.start}, {self.end})")


@dataclass(frozen=True)
class GroupingParams:
    """``unit`` None: no grouped view. ``spans`` (unit ``spans`` only): ascending, not overlapping."""

    unit: GroupUnit | None = None
    spans: tuple[CharSpan, ...] = ()
    keep_special: bool = False

    def __post_init__(self) -> None:
        if self.unit is not None:
            try:
                object.__setattr__(self, "unit", GroupUnit(self.unit))
            except ValueError:
                allowed = ", ".join(repr(u.value) for u in GroupUnit)
                raise InvalidRequest("unit", f"must be one of {allowed}, got {self.unit!r}") from None
        if (self.unit is GroupUnit.SPANS) != bool(self.spans):
            raise InvalidRequest("spans", "give spans exactly when the unit is 'spans'")
        for i in range(1, len(self.spans)):
            if self.spans[i].start < self.spans[i - 1].end:
                raise InvalidRequest(f"spans[{i}]", "must start at or after the previous span's end")


@dataclass(frozen=True)
class TokenGroup:
    """A word, span or turn: its tokens' absolute ``positions`` (ascending), their text and offsets."""

    text: str
    start: int
    end: int
    positions: tuple[int, ...]
    special: bool = False  # a run of special / chat-template tokens (keep_special)
    role: str | None = None  # unit turns: the message's role ("assistant" for the generated text)
    generated: bool = False


@dataclass(frozen=True)
class GroupedAttribution:
    """One method's scores by group: ``scores[i, j]`` is group ``j``'s contribution to group
    ``target_groups[i]``; shape ``(len(target_groups), n_groups)``."""

    method: str
    target_groups: tuple[int, ...]
    scores: np.ndarray


@dataclass(frozen=True)
class GroupedView:
    """The groups in sequence order and one ``GroupedAttribution`` per attribution, in order."""

    unit: GroupUnit
    groups: tuple[TokenGroup, ...]
    attributions: tuple[GroupedAttribution, ...] = field(default=())


def special_ids(tokenizer) -> frozenset[int]:
    """The tokenizer's special ids, including added tokens marked special (``<|im_start|>`` ...)."""
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", ())}
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    ids.update(int(i) for i, token in added.items() if getattr(token, "special", False))
    return frozenset(ids)


def _anchor(token: Token) -> int:
    stripped = token.text.lstrip()
    return token.start + (len(token.text) - len(stripped)) if stripped else token.start


def content_spans(prompt_text: str, contents: Sequence[str]) -> list[tuple[int, int]]:
    """Where each message's content lies in the rendered chat ``prompt_text``, in order; a template
    that trims contents is allowed (the stripped content is looked for too)."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for k, content in enumerate(contents):
        for wanted in (content, content.strip()):
            at = prompt_text.find(wanted, cursor)
            if at >= 0:
                spans.append((at, at + len(wanted)))
                cursor = at + len(wanted)
                break
        else:
            raise UnsupportedModel(
                f"grouping: the chat template changes the text of message {k}, so its tokens cannot be found"
            )
    return spans


def _segments(
    tokens: Sequence[Token], prompt_length: int, special: frozenset[int], contents: Sequence[str] | None
) -> list[int | None]:
    """Per token: its segment (a message index, or ``len(contents)`` / 1 for the generated text), or
    None for a special or chat-template token."""
    generated = len(contents) if contents is not None else 1
    spans = content_spans("".join(t.text for t in tokens[:prompt_length]), contents) if contents is not None else []
    out: list[int | None] = []
    for position, token in enumerate(tokens):
        if token.id in special:
            out.append(None)
        elif position >= prompt_length:
            out.append(generated)
        elif contents is None:
            out.append(0)
        else:
            anchor = _anchor(token)
            out.append(next((k for k, (a, b) in enumerate(spans) if a <= anchor < b), None))
    return out


def _word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _joins(previous: Token, token: Token) -> bool:
    """Whether ``token`` continues the word ``previous`` is part of."""
    if not previous.text or not token.text or previous.text.isspace():
        return True  # a piece of an incomplete multi-byte character, or a word's leading whitespace
    if token.text[0].isspace() or previous.text[-1].isspace() or not _word_char(previous.text[-1]):
        return False
    if _word_char(token.text[0]):
        return True
    return token.text[0] in "'’" and len(token.text) > 1 and token.text[1].isalpha()


def _key(unit: GroupUnit, spans: Sequence[CharSpan], token: Token, segment: int) -> int | None:
    """The group key of a non-special token for units other than words (None: in no group)."""
    if unit is GroupUnit.TURNS:
        return segment
    anchor = _anchor(token)
    return next((j for j, s in enumerate(spans) if s.start <= anchor < s.end), None)


def group_tokens(
    tokens: Sequence[Token],
    prompt_length: int,
    params: GroupingParams,
    special: frozenset[int],
    messages: Sequence[tuple[str, str]] | None = None,
) -> tuple[TokenGroup, ...]:
    """The groups of ``tokens`` (``tokens[:prompt_length]`` the prompt) in sequence order.

    ``messages``: the chat's ``(role, content)`` turns when the prompt is a rendered chat (then text
    outside the contents is template text), else None."""
    unit = params.unit
    if unit is None:
        raise ValueError("group_tokens needs a unit")
    text_length = tokens[-1].end if tokens else 0
    for j, span in enumerate(params.spans):
        if span.end > text_length:
            raise InvalidRequest(
                f"grouping.spans[{j}]", f"ends at {span.end}, past the sequence's text ({text_length} characters)"
            )
    contents = [content for _, content in messages] if messages is not None else None
    segments = _segments(tokens, prompt_length, special, contents)
    members: list[list[int]] = []  # positions per group, in order of their first token
    flags: list[tuple[bool, int | None]] = []  # (special, segment) per group
    open_key: dict[object, int] = {}  # units spans / turns: key -> group index
    for position, (token, segment) in enumerate(zip(tokens, segments, strict=True)):
        previous = segments[position - 1] if position else -1
        if segment is None:
            if not params.keep_special:
                continue
            same_side = bool(members) and (members[-1][-1] >= prompt_length) == (position >= prompt_length)
            if previous is None and flags and flags[-1][0] and members[-1][-1] == position - 1 and same_side:
                members[-1].append(position)
            else:
                members.append([position])
                flags.append((True, None))
            continue
        if unit is GroupUnit.TOKENS:
            new = True
        elif unit is GroupUnit.WORDS:
            new = previous != segment or not _joins(tokens[position - 1], token)
        else:
            key = _key(unit, params.spans, token, segment)
            if key is None:
                continue
            if key in open_key:
                members[open_key[key]].append(position)
                continue
            open_key[key] = len(members)
            new = True
        if new:
            members.append([position])
            flags.append((False, segment))
        else:
            members[-1].append(position)
    order = sorted(range(len(members)), key=lambda g: members[g][0])
    generated_segment = len(contents) if contents is not None else 1
    groups = []
    for g in order:
        positions = members[g]
        is_special, segment = flags[g]
        role = None
        if unit is GroupUnit.TURNS and segment is not None and messages is not None:
            role = "assistant" if segment == generated_segment else messages[segment][0]
        groups.append(
            TokenGroup(
                text="".join(tokens[p].text for p in positions),
                start=tokens[positions[0]].start,
                end=tokens[positions[-1]].end,
                positions=tuple(positions),
                special=is_special,
                role=role,
                generated=positions[0] >= prompt_length,
            )
        )
    return tuple(groups)


def group_scores(
    method: str,
    scores: np.ndarray,
    target_positions: Sequence[int],
    groups: Sequence[TokenGroup],
    *,
    renormalize: bool,
) -> GroupedAttribution:
    """``scores`` ``(n_targets, n_sources)`` (sources are positions ``0..n_sources-1``) summed over each
    group's sources and explained targets; rows divided by their sum when ``renormalize``."""
    n_sources = scores.shape[1]
    columns = np.zeros((n_sources, len(groups)))
    group_of: dict[int, int] = {}
    for g, group in enumerate(groups):
        for p in group.positions:
            group_of[p] = g
            if p < n_sources:
                columns[p, g] = 1.0
    by_source = scores.astype(np.float64) @ columns  # (n_targets, n_groups)
    target_groups = sorted({group_of[p] for p in target_positions if p in group_of})
    rows = np.zeros((len(target_groups), len(groups)))
    for i, position in enumerate(target_positions):
        if position in group_of:
            rows[target_groups.index(group_of[position])] += by_source[i]
    if renormalize:
        totals = rows.sum(axis=1, keepdims=True)
        rows = np.divide(rows, totals, out=np.zeros_like(rows), where=totals > 0)
    return GroupedAttribution(method=method, target_groups=tuple(target_groups), scores=rows.astype(np.float32))
