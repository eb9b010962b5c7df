"""The text of every token id an ``InternalsResult`` mentions (``ecco.v1.InternalsResult.token_texts``),
so a viewer of the reply needs no tokenizer."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ecco_engine.internals import InternalsResult


def result_token_ids(result: InternalsResult) -> list[int]:
    """Every token id the result mentions (sorted, distinct)."""
    ids: set[int] = set()
    if result.layer_predictions is not None:
        ids.update(int(i) for i in np.unique(result.layer_predictions.token_ids))
    if result.token_rankings is not None:
        ids.update(int(i) for i in result.token_rankings.token_ids)
    if result.watch is not None:
        ids.update(int(i) for i in result.watch.token_ids)
    return sorted(ids)


def token_texts(tokenizer, ids: Iterable[int]) -> dict[int, str]:
    """Each id decoded alone (special tokens kept); an id the tokenizer cannot decode is left out."""
    texts = {}
    for token_id in ids:
        try:
            texts[token_id] = tokenizer.decode([token_id], skip_special_tokens=False)
        except (ValueError, TypeError, IndexError, OverflowError, KeyError):  # e.g. padded vocabulary rows
            continue
    return texts
