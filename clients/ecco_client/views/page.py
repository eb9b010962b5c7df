"""One self-contained HTML page (or notebook fragment) of an explanation: CSS, script and data inline.

The page loads nothing: no CDN, no font, no image, no request at all, so it opens from disk, offline, and
in a notebook output cell. The script and styles are the package files in ``static/`` (ours).
"""

from __future__ import annotations

import html
import json
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from .data import view_data

#: the page's script files, in the order they are inlined (later ones use the earlier ones' names)
SCRIPTS = ("common.js", "attribution.js", "matrix.js", "lens.js", "neurons.js", "mount.js")


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>``, no ``<!--``)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _title(data: dict[str, Any]) -> str:
    generated = "".join(t["text"] for t in data["tokens"][data["prompt_length"] :])
    return f"ecco · {data['model'] or 'explanation'} · {json.dumps(generated, ensure_ascii=False)[:60]}"


def render_fragment(response: dict[str, Any], *, element_id: str | None = None) -> str:
    """An HTML fragment (a ``<div>`` with its style, data and script) of every view of ``response``, the
    proto3 JSON of an ``ExplainResponse``. Several fragments may share a page (a notebook's cells)."""
    return _fragment(view_data(response), element_id or f"ecco-{uuid.uuid4().hex[:12]}")


def _fragment(data: dict[str, Any], root: str) -> str:
    script = "\n".join(_static(name) for name in SCRIPTS)
    return (
        f'<div class="ecco-view" id="{html.escape(root)}">\n'
        f"<style>{_static('views.css')}</style>\n"
        f'<script type="application/json" class="ecco-data">{_script_json(data)}</script>\n'
        f"<noscript>This view needs JavaScript (it is inline; nothing is downloaded).</noscript>\n"
        f"<script>{script}\nEccoViews.mount(document.getElementById({json.dumps(root)}));</script>\n"
        "</div>"
    )


def render_html(response: dict[str, Any], *, title: str | None = None) -> str:
    """A complete HTML document of every view of ``response`` (proto3 JSON of an ``ExplainResponse``)."""
    data = view_data(response)
    heading = title or _title(data)
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n"
        f"<title>{html.escape(heading)}</title>\n</head>\n<body>\n"
        f"{_fragment(data, 'ecco-main')}\n</body>\n</html>\n"
    )


def write_html(response: dict[str, Any], path: str | Path, *, title: str | None = None) -> Path:
    """Write ``render_html(response)`` to ``path`` (UTF-8); returns the path."""
    target = Path(path)
    target.write_text(render_html(response, title=title), encoding="utf-8")
    return target
