"""Ecco's views of an explanation, from the wire format alone (no torch, no tokenizer, no network).

    from ecco_client.views import render_html, write_html
    write_html(response_json, "explanation.html")   # response_json: proto3 JSON dict of an ExplainResponse

Views: attribution (tokens, hover/select, method switch, target score and IG delta, matrix), layer
predictions, rankings, watch list, FFNN activations, NMF factors, layer similarity. The page is one
self-contained file (script, styles and data inline) that opens from disk and makes no request.
"""

from __future__ import annotations

from .data import view_data
from .page import render_fragment, render_html, write_html

__all__ = ["render_fragment", "render_html", "view_data", "write_html"]
