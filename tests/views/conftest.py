"""Fixtures of tests/views: real replies (explained.py) and, for the browser tests, Debian's chromium
driven by Playwright (never a downloaded browser); the browser tests skip, naming why, without them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from explained import attribution_request, explain, internals_request

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def reply() -> dict[str, Any]:
    """IG + grad×input of 4 generated tokens, float32 on the wire."""
    return explain(attribution_request())


@pytest.fixture(scope="session")
def inside_reply() -> dict[str, Any]:
    """The same plus every part of the internals (lens, rankings, watch, activations, NMF, similarity)."""
    return explain(internals_request())


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
