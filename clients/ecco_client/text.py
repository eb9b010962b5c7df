"""Token texts for tables."""

from __future__ import annotations

import json


def shown(text: str, width: int = 14) -> str:
    """A token's text quoted, with whitespace and control characters visible, cut to ``width``."""
    quoted = json.dumps(text, ensure_ascii=False)
    return quoted if len(quoted) <= width else quoted[: width - 2] + "…" + '"'
