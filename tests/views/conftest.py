"""Fixtures of tests/views: real replies (explained.py) and, for the browser tests, Debian's chromium
driven by Playwright (``browser``, tests/conftest.py); the browser tests skip, naming why, without them."""

from __future__ import annotations

from typing import Any

import pytest
from explained import attribution_request, explain, internals_request


@pytest.fixture(scope="session")
def reply() -> dict[str, Any]:
    """IG + grad×input of 4 generated tokens, float32 on the wire."""
    return explain(attribution_request())


@pytest.fixture(scope="session")
def inside_reply() -> dict[str, Any]:
    """The same plus every part of the internals (lens, rankings, watch, activations, NMF, similarity)."""
    return explain(internals_request())
