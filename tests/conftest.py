"""Fixtures shared by every test directory: the one browser of the session (``browsers.browser``; one
Playwright per process, so it is defined once, here)."""

from browsers import browser as browser  # the fixture
