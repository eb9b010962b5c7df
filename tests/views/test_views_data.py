"""The views' data (ecco_client.views.view_data) and page, from real replies, without a browser: it equals
the client's typed result decoded from the same reply (exactly: both read the same float32 / float16 numbers),
whatever the JSON spelling; the page is one self-contained document that loads nothing."""

from __future__ import annotations

import re
import struct
from typing import Any

import pytest
from explained import attribution_request, explain
from google.protobuf import json_format

from ecco_client import ExplainResult
from ecco_client.views import render_fragment, render_html, view_data
from ecco_proto.ecco.v1 import ecco_pb2 as pb


def f32(rows: Any) -> Any:
    """Numbers (nested) as float32: JSON carries a float32's shortest decimal, the protobuf the float32 itself."""
    if isinstance(rows, (list, tuple)):
        return [f32(x) for x in rows]
    return rows if isinstance(rows, int) else struct.unpack("<f", struct.pack("<f", rows))[0]


def typed(reply: dict[str, Any]) -> ExplainResult:
    return ExplainResult.from_proto(json_format.ParseDict(reply, pb.ExplainResponse()))


def test_attributions_equal_the_client_result(reply) -> None:
    data, result = view_data(reply), typed(reply)
    assert [t["text"] for t in data["tokens"]] == [t.text for t in result.tokens]
    assert data["prompt_length"] == result.prompt_length
    assert [a["method"] for a in data["attributions"]] == ["integrated_gradients", "grad_x_input"]
    for ours, theirs in zip(data["attributions"], result.attributions, strict=True):
        assert ours["targets"] == list(theirs.target_positions)
        assert f32(ours["rows"]) == f32(theirs.scores)
        assert f32(ours["target_scores"]) == f32(theirs.target_scores)
        assert f32(ours["convergence_deltas"]) == f32(theirs.convergence_deltas)
        assert ours["n_steps"] == list(theirs.n_steps)
        assert ours["signed"] is False  # l2_normalized: unsigned
    assert data["attributions"][0]["baseline"] == "eos"
    assert data["attributions"][1]["convergence_deltas"] == []


def test_sum_aggregation_is_signed_and_float16_decodes_like_the_client() -> None:
    reply = explain(attribution_request(aggregation="SUM") | {"float16": True})
    assert reply["attributions"][0]["scores"]["float16_values"]  # base64 float16 on the wire
    data, result = view_data(reply), typed(reply)
    for ours, theirs in zip(data["attributions"], result.attributions, strict=True):
        assert ours["signed"] is True
        assert f32(ours["rows"]) == f32(theirs.scores)
    assert any(v < 0 for row in data["attributions"][0]["rows"] for v in row)


def test_camel_case_json_gives_the_same_data(reply) -> None:
    camel = json_format.MessageToDict(json_format.ParseDict(reply, pb.ExplainResponse()))
    assert "promptLength" in camel
    assert view_data(camel) == view_data(reply)


def test_internals_equal_the_client_result(inside_reply) -> None:
    inside, result = view_data(inside_reply)["internals"], typed(inside_reply).internals
    assert result is not None
    lens = inside["layer_predictions"]["predictions"]
    assert [p["position"] for p in lens] == list(result.layer_predictions.positions)
    for p in lens:
        theirs = result.layer_predictions.at(p["position"])
        assert [tuple(r) for r in p["token_ids"]] == list(theirs.token_ids)
        assert f32(p["probabilities"]) == f32(theirs.probabilities)
    assert [tuple(r) for r in inside["token_rankings"]["ranks"]] == list(result.token_rankings.ranks)
    watch = inside["watch"]
    ids = watch["token_ids"]
    expected = {
        (w, lo): result.watch.overtake_layer(ids[w], ids[lo])
        for w in range(len(ids))
        for lo in range(len(ids))
        if w != lo
    }
    found = {(o["winner"], o["loser"]): o["layer"] for o in watch["overtakes"]}
    assert found == {pair: layer for pair, layer in expected.items() if layer is not None}
    assert found  # the leader at the output overtakes the others somewhere
    nmf = inside["nmf"]
    assert f32(nmf["strengths"]) == f32(result.nmf.token_strengths)
    assert f32(nmf["top"]) == [f32(result.nmf.component_neurons(c)) for c in range(result.nmf.n_components)]
    for block in inside["activations"]["layers"]:
        theirs = result.activations.layer(block["layer"])
        for row, top in enumerate(block["top"]):
            assert f32(top) == f32(theirs.top(row, 4))
    for m in inside["similarity"]["matrices"]:
        theirs = result.similarity.of(m["representation"])
        assert f32(m["matrix"]) == f32(theirs.matrix)


def test_full_activations_are_reduced_to_the_top_neurons() -> None:
    reply = explain(attribution_request() | {"internals": {"activations": True, "activation_layers": [1]}})
    block = view_data(reply)["internals"]["activations"]["layers"][0]
    full = typed(reply).internals.activations.layer(1)
    assert f32(block["top"]) == [f32(full.top(row, 8)) for row in range(len(block["top"]))]


def test_page_is_self_contained(inside_reply) -> None:
    page = render_html(inside_reply)
    assert page.startswith("<!doctype html>")
    # nothing that could load anything: no src/href, no link/import/fetch, no URL but the SVG namespace
    assert not re.search(r"\b(src|href)\s*=", page)
    assert not re.search(r"<link|@import|fetch\(|XMLHttpRequest|WebSocket|url\(", page)
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in page  # and the browser is told so
    assert page.count("</script>") == 2  # the data and the script


def test_token_text_cannot_end_the_data_script(reply) -> None:
    edited = {
        **reply,
        "tokens": [{**t, "text": "</script><!--"} if i == 3 else t for i, t in enumerate(reply["tokens"])],
    }
    page = render_html(edited)
    assert page.count("</script>") == 2
    assert "\\u003c/script\\u003e\\u003c!--" in page


def test_fragments_have_distinct_roots(reply) -> None:
    first, second = render_fragment(reply), render_fragment(reply)
    ids = [re.search(r'class="ecco-view" id="([^"]+)"', f).group(1) for f in (first, second)]
    assert ids[0] != ids[1]
    assert f'getElementById("{ids[0]}")' in first


def test_an_error_reply_is_refused() -> None:
    with pytest.raises(ValueError, match="field x: bad"):
        view_data({"error": {"code": 3, "message": "field x: bad"}})
