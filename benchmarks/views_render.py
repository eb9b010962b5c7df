"""Time to render the attribution view, for 16 and 256 generated tokens and for 256 x ~2,000 sources.

The replies are real: a tiny random Llama (tests/tiny_models.py) explains a prompt with grad x input
through the codec, as the REST handler answers. Printed per case: the reply's JSON size, Python's
``render_html`` seconds, and in Debian's chromium (Playwright): page load until every view is drawn,
a hover (re-coloring every source) and a select (the same plus redrawing the matrix), medians of the
page's own clock including style and layout.
Not a timed test. Run from the repository root: ``python benchmarks/views_render.py``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import _common
from _common import table

sys.path[:0] = [str(_common.REPO_ROOT / "clients"), str(_common.REPO_ROOT / "tests")]

from ecco_client.views import render_html  # noqa: E402
from ecco_codec import decode_request, encode_explanation  # noqa: E402
from ecco_engine import Explainer  # noqa: E402
from ecco_engine.explainer import EngineLimits  # noqa: E402
from tiny_models import CORPUS, tiny_model, tiny_tokenizer  # noqa: E402

CASES = (("16 generated", 16, 16), ("256 generated", 16, 256), ("256 x 2,000 sources", 2000, 256))
HOVER = """(kind) => { const v = document.querySelector('.ecco-attribution');
  const t = [...v.querySelectorAll('.tok.explained')]; const times = [];
  for (let i = 0; i < 6; i++) {
    const start = performance.now();
    t[t.length - 1 - (i % 2)].dispatchEvent(new MouseEvent(kind, {bubbles: true}));
    document.body.offsetHeight;  // force style and layout inside the measurement
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b)[3]; }"""


def prompt_of(n_tokens: int) -> str:
    """Corpus text cut to about ``n_tokens`` tokens of the tiny tokenizer."""
    tokenizer = tiny_tokenizer()
    ids = tokenizer(" ".join(CORPUS * 40))["input_ids"][:n_tokens]
    return tokenizer.decode(ids)


def reply_for(explainer: Explainer, n_prompt: int, n_new: int) -> dict:
    request = {
        "prompt": prompt_of(n_prompt),
        "generation": {"max_new_tokens": n_new},
        "attribution": {"methods": ["grad_x_input"]},
    }
    decoded = decode_request(json.dumps(request).encode(), content_type="application/json", url_kind="explain")
    reply = encode_explanation(explainer.explain(decoded.request), decoded, model_name="tiny-llama")
    return json.loads(json.dumps(reply))


def main() -> None:
    from playwright.sync_api import sync_playwright

    explainer = Explainer(tiny_model("llama"), tiny_tokenizer(), limits=EngineLimits(token_budget=8192))
    rows = []
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as folder:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for name, n_prompt, n_new in CASES:
            reply = reply_for(explainer, n_prompt, n_new)
            attribution = reply["attributions"][0]
            start = time.perf_counter()
            page_text = render_html(reply)
            python_seconds = time.perf_counter() - start
            path = Path(folder) / "view.html"
            path.write_text(page_text, encoding="utf-8")
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            start = time.perf_counter()
            page.goto(path.as_uri())
            page.wait_for_selector(".ecco-view[data-ready=true]")
            load_seconds = time.perf_counter() - start
            hover_ms = page.evaluate(HOVER, "mouseover")
            select_ms = page.evaluate(HOVER, "click")
            page.close()
            rows.append(
                [
                    name,
                    f"{len(attribution['target_positions'])} x {attribution['n_sources']}",
                    f"{len(json.dumps(reply)) / 1e6:.2f} MB",
                    f"{python_seconds:.3f}",
                    f"{load_seconds:.3f}",
                    f"{hover_ms:.1f}",
                    f"{select_ms:.1f}",
                ]
            )
        browser.close()
    print(
        table(
            ["case", "targets x sources", "reply JSON", "render_html s", "page ready s", "hover ms", "select ms"], rows
        )
    )


if __name__ == "__main__":
    main()
