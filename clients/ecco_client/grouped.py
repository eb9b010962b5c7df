"""The grouped view of an explanation (``ExplainRequest.grouping``): attributions rolled up to words,
character spans or chat turns, decoded from ``ecco.v1.GroupedView``; plus its text table."""

from __future__ import annotations

from dataclasses import dataclass

from .matrices import Rows
from .text import shown


@dataclass(frozen=True)
class TokenGroup:
    """A word, span or turn: its text, character offsets and the absolute positions of its tokens."""

    text: str
    start: int
    end: int
    positions: tuple[int, ...]
    special: bool = False  # a run of special / chat-template tokens (keep_special)
    role: str = ""  # unit "turns" only
    generated: bool = False


@dataclass(frozen=True)
class GroupedAttribution:
    """``scores[i][j]``: contribution of group ``j`` to group ``target_groups[i]``."""

    method: str
    target_groups: tuple[int, ...]
    scores: Rows


@dataclass(frozen=True)
class GroupedView:
    """The groups (``unit``: "tokens", "words", "spans" or "turns") and one grouped attribution per method."""

    unit: str | None
    groups: tuple[TokenGroup, ...]
    attributions: tuple[GroupedAttribution, ...]

    def attribution(self, method: str) -> GroupedAttribution:
        for a in self.attributions:
            if a.method == method:
                return a
        raise KeyError(f"no grouped attribution for method {method!r}")


def grouped_table(view: GroupedView, method: str, *, top: int = 5) -> list[str]:
    """Lines: for each group holding explained tokens, its ``top`` source groups with their weights."""
    a = view.attribution(method)
    lines = [f"  by {view.unit}: {'group':<22}  top {top} source {view.unit} (weight)"]
    for row, g in zip(a.scores, a.target_groups, strict=True):
        ranked = sorted(range(len(row)), key=lambda j: abs(row[j]), reverse=True)[:top]
        sources = " | ".join(f"{shown(view.groups[j].text, 16)} {row[j]:.3g}" for j in ranked if row[j] != 0)
        label = view.groups[g].role or ""
        lines.append(f"  {label:>9}  {shown(view.groups[g].text, 22):<22}  {sources}")
    return lines
