"""The live page of ``ecco ui`` in a real browser (Debian's chromium through Playwright) against the in-process
TorchServe stand-in: a prompt typed into the page streams its tokens, then its attribution rows, then the
views of the finished explanation; each token shows while the server is still working; chat and the
model's internals; the server's errors are shown; no request leaves 127.0.0.1 and no console error."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from browsers import Opened, recorded_page
from fake_torchserve import MODEL, TOKEN

from ecco_client import EccoClient
from ecco_client.ui_server import UiServer, Upstream, serving
from ecco_client.views import view_data

PROMPT = "The capital of France is\n\tParis — café"
#: the page records the order in which tokens, rows and the views enter it
ORDER = """() => {
  window.arrivals = [];
  const watch = (id, kind) => new MutationObserver(records => records.forEach(r =>
    r.addedNodes.forEach(() => window.arrivals.push(kind)))).observe(document.getElementById(id), {childList: true});
  watch("live-tokens", "token"); watch("live-rows", "row"); watch("views", "views");
}"""


@pytest.fixture
def ui(rest_url: str) -> Iterator[UiServer]:
    with serving(Upstream(url=rest_url, model=MODEL, tokens=lambda: TOKEN)) as server:
        yield server


def open_page(browser: Any, server: UiServer) -> Opened:
    opened = recorded_page(browser)
    opened.page.goto(server.url)
    opened.page.wait_for_selector("body[data-ready=true]")
    return opened


def fill(page: Any, *, max_new_tokens: int = 3, methods: tuple[str, ...] = ("integrated_gradients",), n_steps: int = 4):
    page.fill("#max-new-tokens", str(max_new_tokens))
    for box in page.query_selector_all("input[name=method]"):
        box.set_checked(box.get_attribute("value") in methods)
    page.fill("#n-steps", str(n_steps))


def unary(rest_url: str, **options: Any) -> dict[str, Any]:
    with EccoClient(url=rest_url, model=MODEL, token=TOKEN) as client:
        return view_data(client.explain(**options).to_json())


def test_a_typed_prompt_streams_tokens_then_rows_then_the_views(browser, ui, rest_url) -> None:
    view = open_page(browser, ui)
    page = view.page
    page.fill("#prompt", PROMPT)
    fill(page, methods=("integrated_gradients", "grad_x_input"))
    page.evaluate(ORDER)
    page.click("#explain")
    page.wait_for_selector("#views .ecco-view[data-ready=true]", timeout=60_000)
    assert page.get_attribute("#live", "data-state") == "done"
    assert page.evaluate("window.arrivals") == ["token"] * 3 + ["row"] * 6 + ["views"]

    reply = unary(
        rest_url, prompt=PROMPT, max_new_tokens=3, methods=["integrated_gradients", "grad_x_input"], n_steps=4
    )
    generated = reply["tokens"][reply["prompt_length"] :]
    shown = page.eval_on_selector_all("#live-tokens .tok", "spans => spans.map(s => [Number(s.dataset.pos), s.title])")
    assert [pos for pos, _ in shown] == [reply["prompt_length"] + i for i in range(3)]
    assert [title.split(" at position")[0] for _, title in shown] == [
        json.dumps(t["text"], ensure_ascii=False) for t in generated
    ]
    rows = page.eval_on_selector_all(
        "#live-rows .live-row",
        """rows => rows.map(r => ({method: r.dataset.method, target: Number(r.dataset.target),
             target_score: Number(r.dataset.targetScore),
             top: Array.from(r.querySelectorAll('.source'))
                       .map(s => [Number(s.dataset.pos), Number(s.dataset.score)])}))""",
    )
    assert len(rows) == 6
    for row in rows:
        a = next(a for a in reply["attributions"] if a["method"] == row["method"])
        index = a["targets"].index(row["target"])
        assert row["target_score"] == a["target_scores"][index]
        scores = a["rows"][index][: row["target"]]
        strongest = sorted(range(len(scores)), key=lambda j: -abs(scores[j]))[:5]
        assert [score for _, score in row["top"]] == [scores[j] for j in strongest]  # the reply's own numbers
        assert [scores[pos] for pos, _ in row["top"]] == [score for _, score in row["top"]]
    named = page.eval_on_selector_all(
        "#live-rows .source", "spans => spans.map(s => [Number(s.dataset.pos), s.textContent])"
    )
    for pos, text in named:  # once the summary came, every source is named by its text
        assert text.startswith(json.dumps(reply["tokens"][pos]["text"], ensure_ascii=False) + " "), (pos, text)

    # the finished explanation's views: hover the last generated token, its sources light up
    last = reply["attributions"][0]["targets"][-1]
    page.hover(f"#views .ecco-attribution .tok[data-pos='{last}']")
    lit = page.eval_on_selector_all(
        "#views .ecco-attribution .tok[data-score]",
        "spans => Object.fromEntries(spans.map(s => [s.dataset.pos, Number(s.dataset.score)]))",
    )
    row = reply["attributions"][0]["rows"][-1]
    assert lit == {str(j): row[j] for j in range(last)}
    assert page.query_selector("#views .ecco-matrix canvas") is not None
    view.assert_clean(ui.url)


def test_each_token_shows_while_the_server_is_still_working(browser, rest_url) -> None:
    """A TorchServe stand-in that sends the first token, then waits: the page shows it already."""
    body = json.dumps(
        {"prompt": "Hi", "generation": {"max_new_tokens": 2}, "attribution": {"n_steps": 2}, "stream": True}
    )
    recorded = urllib.request.Request(
        f"{rest_url}/explanations/{MODEL}",
        data=body.encode(),
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(recorded, timeout=60) as response:
        lines = [line for line in response.read().splitlines(keepends=True) if line.strip()]
    release = threading.Event()

    class Held(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(lines[0])
            self.wfile.flush()
            release.wait(60)
            self.wfile.writelines(lines[1:])

    held = ThreadingHTTPServer(("127.0.0.1", 0), Held)
    thread = threading.Thread(target=held.serve_forever, daemon=True)
    thread.start()
    try:
        with serving(
            Upstream(url=f"http://127.0.0.1:{held.server_address[1]}", model=MODEL, tokens=lambda: TOKEN)
        ) as ui:
            view = open_page(browser, ui)
            page = view.page
            page.fill("#prompt", "Hi")
            page.click("#explain")
            page.wait_for_selector("#live-tokens .tok", timeout=30_000)
            assert page.eval_on_selector_all("#live-tokens .tok", "spans => spans.length") == 1
            assert page.get_attribute("#live", "data-state") == "streaming"
            assert page.inner_html("#views") == "" and page.is_disabled("#explain")
            release.set()
            page.wait_for_selector("#views .ecco-view[data-ready=true]", timeout=30_000)
            assert page.eval_on_selector_all("#live-tokens .tok", "spans => spans.length") == 2
            view.assert_clean(ui.url)
    finally:
        release.set()
        held.shutdown()
        held.server_close()
        thread.join(10)


def test_chat_and_the_models_internals(browser, ui, rest_url) -> None:
    view = open_page(browser, ui)
    page = view.page
    page.check("input[name=input][value=chat]")
    assert page.is_hidden("#prompt") and page.is_visible("#turns textarea")
    page.fill("#turns .turn textarea", "Capital of France?")
    fill(page, max_new_tokens=2, n_steps=2)
    page.check("#layer-predictions")
    page.check("#rankings")
    page.fill("#watch", " is\n the")
    page.click("#explain")
    page.wait_for_selector("#views .ecco-view[data-ready=true]", timeout=60_000)
    reply = unary(
        rest_url,
        messages=[("user", "Capital of France?")],
        max_new_tokens=2,
        methods=["integrated_gradients"],
        n_steps=2,
        internals={"layer_predictions": True, "token_rankings": True, "watch": [" is", " the"]},
    )
    prompt = "".join(t["text"] for t in reply["tokens"][: reply["prompt_length"]])
    assert "Capital of France?" in prompt  # the chat template was applied by the server
    header = page.inner_text("#views .ecco-view header")
    assert f"{reply['prompt_length']} prompt tokens" in header
    for name in ("attribution", "layer-predictions", "rankings", "watch"):
        assert page.query_selector(f"#views .ecco-{name}") is not None, name
    view.assert_clean(ui.url)


def test_the_servers_error_is_shown_in_the_page(browser, ui) -> None:
    view = open_page(browser, ui)
    page = view.page
    page.fill("#prompt", "x")
    fill(page, max_new_tokens=0)
    page.click("#explain")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert page.inner_text("#error").startswith("400 INVALID_ARGUMENT: generation.max_new_tokens: ")
    assert page.get_attribute("#live", "data-state") == "error" and page.is_enabled("#explain")
    # the browser itself logs the refused request; nothing else may be logged
    assert all("status of 400" in error for error in view.errors), view.errors
    view.errors.clear()
    view.assert_clean(ui.url)
