"""The live page of ``ecco ui``: a form, the stream as it arrives, then every view of the explanation.

Unlike the self-contained file (``page.py``), this page is served: its scripts and styles are the same
package files, loaded from the server that serves the page (``/static/<name>``), so its
Content-Security-Policy allows scripts from that server only and no inline script at all.
"""

from __future__ import annotations

import html
from importlib import resources
from string import Template

from .page import SCRIPTS

#: the live page's own files, after the views' scripts
LIVE_SCRIPTS = (*SCRIPTS, "live.js")
STYLES = ("views.css", "live.css")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def static_file(name: str) -> tuple[bytes, str] | None:
    """``(body, content type)`` of one of the page's scripts or styles; None for any other name."""
    if name not in LIVE_SCRIPTS and name not in STYLES:
        return None
    return _read(name).encode("utf-8"), _TYPES[name[name.rindex(".") :]]


def render_live_page(*, model: str, endpoint: str) -> str:
    """The page's HTML; ``model`` and ``endpoint`` (the TorchServe URL) are shown, never the key."""
    return Template(_read("live.html")).substitute(
        model=html.escape(model),
        endpoint=html.escape(endpoint),
        styles="\n".join(f'<link rel="stylesheet" href="/static/{name}">' for name in STYLES),
        scripts="\n".join(f'<script src="/static/{name}"></script>' for name in LIVE_SCRIPTS),
    )
