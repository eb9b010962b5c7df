"""The page's data: an ``ExplainResponse`` (proto3 JSON dict) turned into the plain shapes the views draw.

Matrices are decoded here (float32 or float16 alike), so the page's script only reads lists of rows.
Everything is a JSON-ready dict; ``None`` marks a non-finite number. Positions are absolute positions into
``tokens`` (prompt, then generated), as on the wire. Internals are in ``internals.py``.
"""

from __future__ import annotations

from typing import Any

from .internals import internals_data
from .wire import Json, enum, field, ints, matrix, numbers


def _token(t: Json) -> Json:
    return {
        "id": int(field(t, "id", 0)),
        "text": str(field(t, "text", "")),
        "start": int(field(t, "start", 0)),
        "end": int(field(t, "end", 0)),
    }


def _signed(rows: list[list[float | None]], aggregation: str | None) -> bool:
    """Whether scores carry a sign (two colors): SUM aggregation, or any negative value."""
    return aggregation == "sum" or any(v is not None and v < 0 for row in rows for v in row)


def attribution_data(a: Json) -> Json:
    """One method's attribution: ``rows`` has shape (n_targets, n_sources), ``targets`` (n_targets,)."""
    rows = matrix(field(a, "scores"))
    aggregation = enum(field(a, "aggregation"))
    contrast = field(a, "contrast_token_id")
    return {
        "method": str(field(a, "method", "")),
        "target": enum(field(a, "target")),
        "aggregation": aggregation,
        "signed": _signed(rows, aggregation),
        "targets": ints(field(a, "target_positions")),
        "n_sources": int(field(a, "n_sources", 0)),
        "rows": rows,
        "target_scores": numbers(field(a, "target_scores")),
        "baseline_scores": numbers(field(a, "baseline_scores")),
        "convergence_deltas": numbers(field(a, "convergence_deltas")),
        "n_steps": ints(field(a, "n_steps")),
        "baseline": field(a, "baseline"),
        "integration": enum(field(a, "integration")),
        "contrast_token_id": None if contrast is None else int(contrast),
    }


def view_data(response: Json) -> dict[str, Any]:
    """Everything the views show of one ``ExplainResponse`` (or ``GenerateResponse``) in proto3 JSON.

    Raises ValueError for a reply that carries ``error`` (there is nothing to show) or a malformed matrix.
    """
    error = field(response, "error")
    if error:
        raise ValueError(f"the reply is an error: {error.get('message', error)}")
    internals = field(response, "internals")
    return {
        "model": str(field(response, "model", "")),
        "engine_version": str(field(response, "engine_version", "")),
        "finish_reason": str(field(response, "finish_reason", "")),
        "prompt_length": int(field(response, "prompt_length", 0)),
        "tokens": [_token(t) for t in field(response, "tokens", ())],
        "timings": [
            {"stage": str(field(t, "stage", "")), "seconds": float(field(t, "seconds", 0.0))}
            for t in field(response, "timings", ())
        ],
        "attributions": [attribution_data(a) for a in field(response, "attributions", ())],
        "internals": internals_data(internals) if internals else None,
    }
