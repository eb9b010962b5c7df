"""``ecco ui``: serve the live page on 127.0.0.1 and forward its requests to a TorchServe endpoint.

    ecco ui                                  # http://127.0.0.1:8090/ -> http://127.0.0.1:8080, key from .run/serve
    ecco ui --url http://10.0.0.5:8080 --model my-model --key-file /etc/ts/key_file.json --port 0 --open

The key is found as ``ecco explain`` finds it (--token, --key-file, $ECCO_KEY_FILE, ./key_file.json,
.run/serve/key_file.json) and never reaches the page. Runs until interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import webbrowser
from typing import Any

from .auth import token_source
from .ui_server import UiServer, Upstream

DEFAULT_PORT = 8090


def add_ui_command(commands: Any, *, default_url: str, default_model: str) -> None:
    ui = commands.add_parser("ui", help="serve the live page on 127.0.0.1 (type a prompt, watch it explained)")
    ui.add_argument("--url", default=default_url, help="TorchServe inference URL (REST; %(default)s)")
    ui.add_argument("--model", default=os.environ.get("ECCO_MODEL", default_model), help="model name (%(default)s)")
    ui.add_argument("--token", default=os.environ.get("ECCO_TOKEN"), help="inference key ($ECCO_TOKEN)")
    ui.add_argument("--key-file", help="TorchServe's key_file.json (its 'inference' key; read at every request)")
    ui.add_argument("--timeout", type=float, default=600.0, help="seconds per request to TorchServe (%(default)s)")
    ui.add_argument("--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1 (%(default)s; 0: any free)")
    ui.add_argument("--open", action="store_true", help="open the page in the default browser")
    ui.add_argument("--quiet", action="store_true", help="do not log each request on stderr")


def run_ui(args: argparse.Namespace) -> int:
    tokens = token_source(args.token, args.key_file)
    try:
        tokens()  # a key file named but unreadable is an error now, not at the first request
        server = UiServer(
            Upstream(url=args.url, model=args.model, tokens=tokens, timeout=args.timeout),
            port=args.port,
            log=None if args.quiet else sys.stderr,
        )
    except (OSError, ValueError) as error:
        print(f"ecco: {error}", file=sys.stderr)
        return 1
    with server:
        print(f"ecco ui: {server.url} (model {args.model} at {args.url}; Ctrl-C stops)", flush=True)
        if args.open:
            webbrowser.open(server.url)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0
