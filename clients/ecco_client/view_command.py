"""``ecco view RESPONSE.json -o FILE``: the views of a saved reply (``ecco explain --json``, a service's log)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .views import write_html


def add_view_command(commands: Any) -> None:
    view = commands.add_parser("view", help="write the HTML views of a saved JSON reply (no server needed)")
    view.add_argument("response", help="an ExplainResponse as proto3 JSON ('-' reads stdin)")
    view.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML file to write")
    view.add_argument("--title", help="the page title (default: model and generated text)")


def reply_of(document: Any) -> dict[str, Any]:
    """The ExplainResponse in a saved document: the reply itself, a KServe v1 body or a stream's summary."""
    if isinstance(document, dict):
        for wrapper in ("explanations", "predictions"):
            if isinstance(document.get(wrapper), list) and document[wrapper]:
                return reply_of(document[wrapper][0])
        for summary in ("explain_summary", "explainSummary", "generate_summary", "generateSummary"):
            if isinstance(document.get(summary), dict):
                return document[summary]
        return document
    raise ValueError("the file does not hold a JSON object (an ExplainResponse)")


def run_view(args: argparse.Namespace) -> int:
    try:
        if args.response == "-":
            document = json.load(sys.stdin)
        else:
            with open(args.response, encoding="utf-8") as source:
                document = json.load(source)
        path = write_html(reply_of(document), args.output, title=args.title)
    except (OSError, ValueError) as error:  # unreadable file, not JSON, an error reply, a bad matrix
        print(f"ecco: {error}", file=sys.stderr)
        return 1
    print(path.resolve())
    return 0
