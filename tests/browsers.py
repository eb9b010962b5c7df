"""A real browser for the tests that need one: Debian's chromium driven by Playwright (never a downloaded
browser), and a page whose requests and console errors are recorded. Tests without them skip, naming why.
The ``browser`` fixture is made available to every test by tests/conftest.py."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev extra (pip install -e '.[dev]')")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} missing: run scripts/install_browser.sh")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Opened:
    """A browser page with the URLs it requested and its console errors."""

    page: Any
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self, own: str) -> None:
        """No request but the page's own file (nor any to a host other than 127.0.0.1); no console error."""
        outside = [u for u in self.requests if u != own and not u.startswith("http://127.0.0.1")]
        assert outside == [], outside
        assert self.errors == []


def recorded_page(browser: Any, width: int = 1200, height: int = 900) -> Opened:
    """A new page of ``browser`` recording every request and console error from now on."""
    page = browser.new_page(viewport={"width": width, "height": height})
    opened = Opened(page)
    page.on("request", lambda request: opened.requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and opened.errors.append(message.text))
    page.on("pageerror", lambda error: opened.errors.append(str(error)))
    return opened
