"""Opening a view in the browser: the page written to a file and loaded from disk, with every request and
console message recorded (a view may make no request but its own file and log no error)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecco_client.views import write_html


@dataclass
class Opened:
    """A loaded view: the Playwright page, the URLs it requested and its console errors."""

    page: Any
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self, own: str) -> None:
        """No request but the page's own file (nor any to a host other than 127.0.0.1); no console error."""
        outside = [u for u in self.requests if u != own and not u.startswith("http://127.0.0.1")]
        assert outside == [], outside
        assert self.errors == []


def open_view(browser: Any, reply: dict[str, Any], path: Path, **viewport: int) -> Opened:
    write_html(reply, path)
    page = browser.new_page(viewport={"width": viewport.get("width", 1200), "height": viewport.get("height", 900)})
    opened = Opened(page)
    page.on("request", lambda request: opened.requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and opened.errors.append(message.text))
    page.on("pageerror", lambda error: opened.errors.append(str(error)))
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
