"""``ecco ui``'s HTTP server: the live page on 127.0.0.1, relaying TorchServe's REST stream to it.

    with serving(Upstream(url="http://127.0.0.1:8080", model="smollm2-135m-instruct", tokens=lambda: key)) as ui:
        print(ui.url)          # http://127.0.0.1:<port>/ : open it in a browser

Routes: ``GET /`` (the page), ``GET /static/<file>`` (its scripts and styles, the package's own files),
``POST /api/explain`` (body: the proto3 JSON of an ``ExplainRequest``; reply: JSON lines, see
``ui_events``). The inference key stays here: the page never sees it. The server listens on 127.0.0.1
only, answers only requests whose ``Host`` (and ``Origin``, when sent) is itself (no DNS rebinding, no
cross-site post), and sends a Content-Security-Policy that lets the page load and fetch from itself only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import urlsplit

from .client import EccoClient
from .errors import EccoError
from .ui_events import page_error, page_event, page_request
from .views.live_page import render_live_page, static_file

#: the page's own request bodies are small; anything larger is refused (413)
MAX_BODY_BYTES = 1024 * 1024
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Upstream:
    """The TorchServe REST endpoint the page's requests go to; ``tokens()`` gives the inference key now."""

    url: str
    model: str
    tokens: Callable[[], str | None]
    timeout: float = 600.0

    def client(self) -> EccoClient:
        return EccoClient(url=self.url, model=self.model, token=self.tokens(), timeout=self.timeout)


class UiServer(ThreadingHTTPServer):
    """The live page's server on 127.0.0.1 (``port`` 0: a free one); ``log``: where requests are logged."""

    daemon_threads = True

    def __init__(self, upstream: Upstream, port: int = 0, log: TextIO | None = None) -> None:
        super().__init__(("127.0.0.1", port), UiHandler)
        self.upstream = upstream
        self.log = log
        self.page = render_live_page(model=upstream.model, endpoint=upstream.url).encode("utf-8")

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def own_hosts(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})


@contextmanager
def serving(upstream: Upstream, port: int = 0, log: TextIO | None = None) -> Iterator[UiServer]:
    """A ``UiServer`` answering on a thread of this process; shut down and closed when the block ends."""
    server = UiServer(upstream, port, log)
    thread = threading.Thread(target=server.serve_forever, name="ecco-ui", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class UiHandler(BaseHTTPRequestHandler):
    server: UiServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log is not None:
            print(f"ecco ui: {self.address_string()} {format % args}", file=self.server.log, flush=True)

    def _headers(self, status: int, content_type: str, length: int | None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        if length is not None:
            self.send_header("content-length", str(length))
        self.send_header("content-security-policy", CSP)
        self.send_header("x-content-type-options", "nosniff")
        self.send_header("referrer-policy", "no-referrer")
        self.send_header("cache-control", "no-store")
        self.end_headers()

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self._headers(status, content_type, len(body))
        self.wfile.write(body)

    def _fail(self, error: EccoError) -> None:
        self._send(error.status, json.dumps(page_error(error)).encode(), "application/json")

    def _own_host(self) -> bool:
        """Whether the request was sent to this server by name (a rebound DNS name is refused: 403)."""
        if (self.headers.get("host") or "").lower() in self.server.own_hosts():
            return True
        self._fail(EccoError.from_http(403, "this server answers requests to 127.0.0.1 / localhost only"))
        return False

    def do_GET(self) -> None:
        if not self._own_host():
            return
        path = urlsplit(self.path).path
        if path == "/":
            return self._send(200, self.server.page, "text/html; charset=utf-8")
        found = static_file(path.removeprefix("/static/")) if path.startswith("/static/") else None
        if found is None:
            return self._fail(EccoError.from_http(404, f"no such page: {path}"))
        self._send(200, *found)

    def do_POST(self) -> None:
        if not self._own_host():
            return
        if urlsplit(self.path).path != "/api/explain":
            return self._fail(EccoError.from_http(404, f"no such endpoint: {self.path}"))
        origin = self.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() not in self.server.own_hosts():
            return self._fail(EccoError.from_http(403, f"requests from {origin} are refused"))
        if (self.headers.get("content-type") or "").split(";")[0].strip() != "application/json":
            return self._fail(EccoError.from_http(415, "the body must be application/json"))
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            return self._fail(EccoError.from_http(413, f"the request body is over {MAX_BODY_BYTES} bytes"))
        try:
            request = page_request(json.loads(self.rfile.read(length) or b"null"))
        except ValueError as error:
            return self._fail(EccoError.from_http(400, f"the request body is not JSON: {error}"))
        except EccoError as error:
            return self._fail(error)
        self._relay(request)

    def _line(self, item: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(item, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n")
        self.wfile.flush()

    def _relay(self, request: Any) -> None:
        """TorchServe's stream as the page's JSON lines, each written as soon as it arrives. An error
        before the first event is the reply's status; after it, the last line."""
        try:
            client = self.server.upstream.client()
        except (OSError, ValueError) as error:  # the key file is gone or broken
            return self._fail(EccoError(500, "INTERNAL", f"cannot read the inference key: {error}"))
        with client:
            items = client.stream_events("explain", request)
            try:
                first = next(items)
            except EccoError as error:
                return self._fail(error)
            except StopIteration:
                return self._fail(EccoError(502, "INTERNAL", "the server's stream ended without an event"))
            self._headers(200, "application/x-ndjson; charset=utf-8", None)  # HTTP/1.0: ends when we close
            finished = False
            try:
                for item in _chain(first, items):
                    line = page_event(item)
                    finished = "views" in line
                    self._line(line)
                if not finished:
                    raise EccoError(502, "INTERNAL", "the server's stream ended without the summary")
            except EccoError as error:
                self._line({"error": page_error(error)})
            except ValueError as error:  # a summary the views cannot read (a malformed matrix)
                self._line({"error": page_error(EccoError(502, "INTERNAL", str(error)))})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the page stopped reading (Stop, or closed): closing `items` closes the upstream reply
            finally:
                items.close()


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
