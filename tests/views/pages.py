"""Opening a view in the browser: the page written to a file and loaded from disk, with every request and
console message recorded (a view may make no request but its own file and log no error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from browsers import Opened, recorded_page

from ecco_client.views import write_html


def open_view(browser: Any, reply: dict[str, Any], path: Path, **viewport: int) -> Opened:
    write_html(reply, path)
    opened = recorded_page(browser, **viewport)
    page = opened.page
    page.goto(path.as_uri())
    page.wait_for_selector(".ecco-view[data-ready=true]")
    return opened


def scores_shown(page: Any) -> dict[int, float]:
    """The attribution view's colored sources: position -> the value it shows."""
    return page.eval_on_selector_all(
        ".ecco-attribution .tok[data-score]",
        "spans => Object.fromEntries(spans.map(s => [s.dataset.pos, Number(s.dataset.score)]))",
    )


def field_value(page: Any, name: str) -> float:
    return float(page.get_attribute(f".ecco-attribution .target-info td[data-field={name}]", "data-value"))
