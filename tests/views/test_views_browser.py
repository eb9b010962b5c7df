"""The views in a real browser (Debian's chromium through Playwright), from real replies of a tiny model:
hovering / selecting / keys show exactly the reply's scores; the method and scale switches; the matrix;
the internals views; no request outside the page's own file and no console error on any page.

Numbers are compared exactly: the page shows the JSON's own decimals (JavaScript doubles parse them as
Python does)."""

from __future__ import annotations

import pytest
from explained import attribution_request, explain
from pages import field_value, open_view, scores_shown

from ecco_client.views import view_data


def expected_row(reply, method: int, position: int) -> dict[str, float]:
    a = view_data(reply)["attributions"][method]
    row = a["rows"][a["targets"].index(position)]
    return {str(j): row[j] for j in range(position)}


def test_hover_and_select_show_the_reply_scores(browser, reply, tmp_path) -> None:
    view = open_view(browser, reply, tmp_path / "attribution.html")
    page, a = view.page, view_data(reply)["attributions"]
    for row, position in enumerate(a[0]["targets"]):
        page.hover(f".ecco-attribution .tok[data-pos='{position}']")
        assert scores_shown(page) == expected_row(reply, 0, position)
        assert field_value(page, "target_score") == a[0]["target_scores"][row]
        assert field_value(page, "convergence_delta") == a[0]["convergence_deltas"][row]
        assert field_value(page, "n_steps") == a[0]["n_steps"][row]
    # hover a source: the readout names it and gives its value
    last = a[0]["targets"][-1]
    page.click(f".ecco-attribution .tok[data-pos='{last}']")
    page.hover(".ecco-attribution .tok[data-pos='1']")
    assert float(page.get_attribute(".ecco-attribution .readout", "data-value")) == expected_row(reply, 0, last)["1"]
    # the selection stays after the pointer leaves
    page.mouse.move(5, 5)
    assert page.get_attribute(f".ecco-attribution .tok[data-pos='{last}']", "aria-pressed") == "true"
    assert scores_shown(page) == expected_row(reply, 0, last)
    view.assert_clean(page.url)


def test_method_switch_and_scales(browser, reply, tmp_path) -> None:
    view = open_view(browser, reply, tmp_path / "methods.html")
    page, a = view.page, view_data(reply)["attributions"]
    page.click(".ecco-attribution .methods label:has-text('grad_x_input')")
    first = a[1]["targets"][0]
    page.hover(f".ecco-attribution .tok[data-pos='{first}']")
    assert scores_shown(page) == expected_row(reply, 1, first)
    assert page.query_selector(".ecco-attribution .target-info td[data-field=convergence_delta]") is None
    assert page.get_attribute(".ecco-matrix canvas", "data-method") == "grad_x_input"
    row = a[1]["rows"][0]
    legend = ".ecco-attribution .legend"
    assert float(page.get_attribute(legend, "data-scale")) == max(abs(v) for v in row)
    assert page.get_attribute(legend, "data-signed") == "false"
    assert "per target" in page.inner_text(legend)
    page.click(".ecco-attribution .scale label:has-text('shared')")
    page.hover(f".ecco-attribution .tok[data-pos='{first}']")
    assert float(page.get_attribute(legend, "data-scale")) == max(abs(v) for r in a[1]["rows"] for v in r)
    assert "whole matrix" in page.inner_text(legend)
    view.assert_clean(page.url)


def test_keyboard_selection(browser, reply, tmp_path) -> None:
    view = open_view(browser, reply, tmp_path / "keys.html")
    page, targets = view.page, view_data(reply)["attributions"][0]["targets"]
    page.focus(f".ecco-attribution .tok[data-pos='{targets[0]}']")
    for position in targets[1:]:
        page.keyboard.press("ArrowRight")
        assert page.evaluate("document.activeElement.dataset.pos") == str(position)
        assert page.get_attribute(f".ecco-attribution .tok[data-pos='{position}']", "aria-pressed") == "true"
        assert scores_shown(page) == expected_row(reply, 0, position)
    page.keyboard.press("Home")
    assert page.evaluate("document.activeElement.dataset.pos") == str(targets[0])
    page.keyboard.press("Escape")
    assert page.query_selector(".ecco-attribution .tok[aria-pressed=true]") is None
    view.assert_clean(page.url)


def test_signed_scores_use_two_colors(browser, tmp_path) -> None:
    reply = explain(attribution_request(aggregation="SUM", methods=["grad_x_input"]))
    view = open_view(browser, reply, tmp_path / "signed.html")
    page, a = view.page, view_data(reply)["attributions"][0]
    assert page.get_attribute(".ecco-attribution .legend", "data-signed") == "true"
    position = a["targets"][-1]
    page.hover(f".ecco-attribution .tok[data-pos='{position}']")
    shown = scores_shown(page)
    assert shown == expected_row(reply, 0, position)
    colors = page.eval_on_selector_all(
        ".ecco-attribution .tok[data-score]",
        "spans => Object.fromEntries(spans.map(s => [s.dataset.pos, getComputedStyle(s).backgroundColor]))",
    )
    negative = [j for j, v in shown.items() if v < 0]
    positive = [j for j, v in shown.items() if v > 0]
    assert negative and positive
    assert all(colors[j].startswith("rgba(179, 88, 6") for j in negative)
    assert all(colors[j].startswith("rgba(33, 102, 172") or colors[j] == "rgb(33, 102, 172)" for j in positive)
    view.assert_clean(page.url)


def test_matrix_hover_and_click(browser, reply, tmp_path) -> None:
    view = open_view(browser, reply, tmp_path / "matrix.html")
    page, a = view.page, view_data(reply)["attributions"][0]
    box = page.locator(".ecco-matrix canvas").bounding_box()
    rows, cols = len(a["targets"]), a["n_sources"]
    i, j = rows - 1, 2
    x = box["x"] + (j + 0.5) * box["width"] / cols
    y = box["y"] + (i + 0.5) * box["height"] / rows
    page.mouse.move(x, y)
    readout = ".ecco-matrix .readout"
    assert page.get_attribute(readout, "data-target") == str(a["targets"][i])
    assert float(page.get_attribute(readout, "data-value")) == a["rows"][i][j]
    page.mouse.click(x, y)
    assert page.get_attribute(f".ecco-attribution .tok[data-pos='{a['targets'][i]}']", "aria-pressed") == "true"
    view.assert_clean(page.url)


def test_text_pieces_are_shown_faithfully(browser, reply, tmp_path) -> None:
    view = open_view(browser, reply, tmp_path / "text.html")
    page = view.page
    tokens = view_data(reply)["tokens"]
    shown = page.eval_on_selector_all(".ecco-attribution .tok", "spans => spans.map(s => s.textContent)")
    for token, text in zip(tokens, shown, strict=True):
        expected = token["text"].replace("\n", "\u21b5\n").replace("\t", "\u21e5\t") if token["text"] else "\u2205"
        assert text == expected
    assert any(t["text"] == "" for t in tokens)  # byte-level pieces of multi-byte characters
    assert any(t["text"] == "東" for t in tokens)
    view.assert_clean(page.url)


@pytest.mark.slow
def test_internals_views(browser, inside_reply, tmp_path) -> None:
    view = open_view(browser, inside_reply, tmp_path / "internals.html", height=1400)
    page, inside = view.page, view_data(inside_reply)["internals"]
    # logit lens: the table of the second position
    lens = inside["layer_predictions"]["predictions"]
    page.select_option(".ecco-layer-predictions select", "1")
    cells = page.eval_on_selector_all(
        ".ecco-layer-predictions td", "tds => tds.map(t => [Number(t.dataset.id), Number(t.dataset.probability)])"
    )
    assert cells == [
        [i, p]
        for ids, ps in zip(lens[1]["token_ids"], lens[1]["probabilities"], strict=True)
        for i, p in zip(ids, ps, strict=True)
    ]
    # rankings: every (layer, token) cell shows the reply's rank
    ranks = page.eval_on_selector_all(
        ".ecco-rankings td", "tds => tds.map(t => [t.dataset.layer, t.dataset.position, t.dataset.rank])"
    )
    r = inside["token_rankings"]
    assert sorted(ranks) == sorted(
        [str(layer), str(p), str(r["ranks"][i][layer])]
        for i, p in enumerate(r["positions"])
        for layer in range(len(r["ranks"][i]))
    )
    # watch chart: one marked overtake per pair that has one
    marks = page.eval_on_selector_all(".ecco-watch g.overtake", "gs => gs.map(g => Number(g.dataset.layer))")
    assert marks == [o["layer"] for o in inside["watch"]["overtakes"]]
    # activations: hover a token, its top neurons per block
    act = inside["activations"]
    page.hover(".ecco-activations .tok[data-pos='2']")
    neurons = page.eval_on_selector_all(
        ".ecco-activations td", "tds => tds.map(t => [Number(t.dataset.neuron), Number(t.dataset.value)])"
    )
    assert neurons == [nv for block in act["layers"] for nv in block["top"][act["positions"].index(2)]]
    # NMF: pick factor 1, every factored token shows its strength
    nmf = inside["nmf"]
    page.click(".ecco-nmf .factors label:has-text('factor 1')")
    strengths = page.eval_on_selector_all(
        ".ecco-nmf .tok[data-strength]", "s => s.map(t => [Number(t.dataset.pos), Number(t.dataset.strength)])"
    )
    assert strengths == [[p, nmf["strengths"][1][c]] for c, p in enumerate(nmf["positions"])]
    # similarity: every cell
    for m in inside["similarity"]["matrices"]:
        values = page.eval_on_selector_all(
            f".ecco-similarity table[data-representation={m['representation']}] td",
            "tds => tds.map(t => Number(t.dataset.value))",
        )
        assert values == [v for row in m["matrix"] for v in row]
    view.assert_clean(page.url)
