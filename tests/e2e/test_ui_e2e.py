"""``ecco ui`` against a real TorchServe: the command started as a user starts it (the key read from
TorchServe's own key file), a prompt typed into its page in a real browser (Debian's chromium), its
tokens and attribution rows streamed into the page, then the views of the finished explanation.

The page's numbers are compared with the unary reply of the same server: tokens exactly, scores to
``1e-6 * max|row|`` (the stream and the unary call run the same kernels in the same worker)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from browsers import recorded_page

from ecco_client import EccoClient
from ecco_client.views import view_data

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PROMPT = "The capital of France is"
OPTIONS = {"max_new_tokens": 3, "methods": ["integrated_gradients", "grad_x_input"], "n_steps": 4}


def test_a_prompt_typed_into_the_page_streams_tokens_and_rows(served, browser) -> None:
    env = {"PYTHONPATH": f"{REPO / 'handlers'}:{REPO / 'clients'}", "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "ecco_client", "ui", "--url", served.server.inference_url, "--model", "tiny"]
    command += ["--key-file", str(served.server.key_file), "--port", "0", "--quiet"]
    ui = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        banner = ui.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", banner)
        assert url, banner
        view = recorded_page(browser)
        page = view.page
        page.goto(url.group(0))
        page.wait_for_selector("body[data-ready=true]")
        page.fill("#prompt", PROMPT)
        page.fill("#max-new-tokens", str(OPTIONS["max_new_tokens"]))
        page.check("input[name=method][value=grad_x_input]")
        page.fill("#n-steps", str(OPTIONS["n_steps"]))
        page.evaluate("""() => {
          window.arrivals = [];
          const watch = (id, kind) => new MutationObserver(rs => rs.forEach(r => r.addedNodes.forEach(
            () => window.arrivals.push(kind)))).observe(document.getElementById(id), {childList: true});
          watch("live-tokens", "token"); watch("live-rows", "row"); watch("views", "views");
        }""")
        page.click("#explain")
        page.wait_for_selector("#views .ecco-view[data-ready=true]", timeout=120_000)
        assert page.evaluate("window.arrivals") == ["token"] * 3 + ["row"] * 6 + ["views"]

        with EccoClient(url=served.server.inference_url, model="tiny", token=served.token) as client:
            reply = view_data(client.explain(prompt=PROMPT, **OPTIONS).to_json())
        generated = reply["tokens"][reply["prompt_length"] :]
        titles = page.eval_on_selector_all("#live-tokens .tok", "spans => spans.map(s => s.title)")
        assert [t.split(" at position")[0] for t in titles] == [
            json.dumps(t["text"], ensure_ascii=False) for t in generated
        ]
        rows = page.eval_on_selector_all(
            "#live-rows .live-row",
            """rows => rows.map(r => [r.dataset.method, Number(r.dataset.target), Array.from(
                 r.querySelectorAll('.source')).map(s => [Number(s.dataset.pos), Number(s.dataset.score)])])""",
        )
        assert sorted((m, t) for m, t, _ in rows) == sorted(
            (a["method"], t) for a in reply["attributions"] for t in a["targets"]
        )
        for method, target, top in rows:
            a = next(a for a in reply["attributions"] if a["method"] == method)
            scores = a["rows"][a["targets"].index(target)][:target]
            tolerance = 1e-6 * max(abs(v) for v in scores)
            assert all(abs(score - scores[pos]) <= tolerance for pos, score in top), (method, target, top)
        assert page.get_attribute("#live", "data-state") == "done"
        assert page.query_selector("#views .ecco-attribution") is not None
        view.assert_clean(url.group(0))
    finally:
        ui.terminate()
        ui.wait(10)  # raises if the command outlives the test
