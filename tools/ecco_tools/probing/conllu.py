"""Read and write the CoNLL-U subset the probes need: words, UPOS, XPOS, dependency labels, spacing.

A sentence is a block of 10-column lines (``ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC``)
separated by a blank line; ``#`` lines are comments (``# sent_id = ...``, ``# text = ...``).
Probes label *syntactic words*; the text the model reads is made of *surface tokens*. They are
the same except for multi-word tokens (a ``3-4`` range line, e.g. Spanish "del" = "de" + "el"):
then the range's form is the surface token and both syntactic words share its characters (and so
its model tokens). Empty nodes (``5.1``) are skipped. ``SpaceAfter=No`` in MISC (on the word, or
on the range line for a multi-word token) rebuilds the text exactly; every other surface token is
followed by one space. The ``# text`` comment is not needed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ecco_engine.errors import InvalidRequest

LABEL_COLUMNS = {"upos": 3, "xpos": 4, "deprel": 7}


@dataclass(frozen=True)
class Sentence:
    """One sentence: parallel tuples over its syntactic words."""

    words: tuple[str, ...]
    upos: tuple[str, ...]
    xpos: tuple[str, ...]
    deprel: tuple[str, ...]
    space_after: tuple[bool, ...]  # per surface token
    sent_id: str = ""
    heads: tuple[int, ...] = field(default=())  # 1-based head word, 0 = root, -1 = unknown
    surface: tuple[str, ...] = field(default=())  # surface tokens; () means the words themselves
    surface_index: tuple[int, ...] = field(default=())  # per word: index of its surface token

    @property
    def surface_tokens(self) -> tuple[str, ...]:
        return self.surface or self.words

    @property
    def word_to_surface(self) -> tuple[int, ...]:
        return self.surface_index or tuple(range(len(self.words)))

    def labels(self, column: str) -> tuple[str, ...]:
        """The labels of one column: ``upos``, ``xpos`` or ``deprel`` (subtypes like ``nmod:poss`` kept)."""
        if column not in LABEL_COLUMNS:
            raise InvalidRequest("label", f"must be one of {sorted(LABEL_COLUMNS)}, got {column!r}")
        return getattr(self, column)

    @property
    def text(self) -> str:
        """The surface text, words joined with the recorded spacing."""
        return "".join(self.surface_spans()[1]).rstrip(" ")

    def surface_spans(self) -> tuple[list[tuple[int, int]], list[str]]:
        """``(spans, pieces)``: each surface token's ``(start, end)`` character span in ``text``."""
        spans, pieces, at = [], [], 0
        for token, space in zip(self.surface_tokens, self.space_after, strict=True):
            spans.append((at, at + len(token)))
            piece = token + (" " if space else "")
            pieces.append(piece)
            at += len(piece)
        return spans, pieces


def _parse_block(lines: list[str], where: str, index: int) -> Sentence:
    words, upos, xpos, deprel, heads = [], [], [], [], []
    surface: list[str] = []
    space: list[bool] = []
    surface_index: list[int] = []
    multiword_end = 0  # last word id covered by the current multi-word token
    sent_id = str(index)
    for line in lines:
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            if key.strip() == "sent_id":
                sent_id = value.strip()
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise InvalidRequest("conllu", f"{where}: expected 10 tab-separated columns, got {len(cols)}: {line!r}")
        no_space = "SpaceAfter=No" in cols[9].split("|")
        if "." in cols[0]:
            continue  # empty node
        if "-" in cols[0]:
            first, _, last = cols[0].partition("-")
            if not (first.isdigit() and last.isdigit()):
                raise InvalidRequest("conllu", f"{where}: bad multi-word token id {cols[0]!r}")
            multiword_end = int(last)
            surface.append(cols[1])
            space.append(not no_space)
            continue
        if not cols[0].isdigit():
            raise InvalidRequest("conllu", f"{where}: bad word id {cols[0]!r}")
        if int(cols[0]) > multiword_end:  # a word that is its own surface token
            surface.append(cols[1])
            space.append(not no_space)
        surface_index.append(len(surface) - 1)
        words.append(cols[1])
        upos.append(cols[3])
        xpos.append(cols[4])
        deprel.append(cols[7])
        heads.append(int(cols[6]) if cols[6].isdigit() else -1)
    if not words:
        raise InvalidRequest("conllu", f"{where}: sentence {sent_id} has no words")
    plain = len(surface) == len(words)
    return Sentence(
        tuple(words),
        tuple(upos),
        tuple(xpos),
        tuple(deprel),
        tuple(space),
        sent_id,
        tuple(heads),
        () if plain else tuple(surface),
        () if plain else tuple(surface_index),
    )


def parse_conllu(lines: Iterable[str], where: str = "<conllu>") -> Iterator[Sentence]:
    """Sentences from CoNLL-U lines (``where`` names the source in error messages)."""
    block: list[str] = []
    index = 0
    for raw in lines:
        line = raw.rstrip("\n").rstrip("\r")
        if line.strip():
            block.append(line)
            continue
        if any(not b.startswith("#") for b in block):
            index += 1
            yield _parse_block(block, where, index)
        block = []
    if any(not b.startswith("#") for b in block):
        yield _parse_block(block, where, index + 1)


def read_conllu(path: str | os.PathLike[str]) -> list[Sentence]:
    """Every sentence of a CoNLL-U file (UTF-8)."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        sentences = list(parse_conllu(handle, str(path)))
    if not sentences:
        raise InvalidRequest("conllu", f"{path}: no sentences")
    return sentences


def format_conllu(sentences: Iterable[Sentence], comments: Iterable[str] = ()) -> str:
    """CoNLL-U for ``sentences`` (LEMMA, FEATS left ``_``; no multi-word tokens); ``comments`` open the file."""
    out = [f"# {c}" for c in comments]
    for s in sentences:
        if s.surface:
            raise InvalidRequest("conllu", f"sentence {s.sent_id}: writing multi-word tokens is not supported")
        out.append(f"# sent_id = {s.sent_id}")
        out.append(f"# text = {s.text}")
        heads = s.heads or (0,) * len(s.words)
        for i, word in enumerate(s.words):
            misc = "_" if s.space_after[i] else "SpaceAfter=No"
            head = str(heads[i]) if heads[i] >= 0 else "_"
            out.append("\t".join([str(i + 1), word, "_", s.upos[i], s.xpos[i], "_", head, s.deprel[i], "_", misc]))
        out.append("")
    return "\n".join(out) + "\n"
