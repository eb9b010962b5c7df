"""The default model's explanation of the demo prompt in the browser: the views show its scores, and their
screenshots are written to docs/views/*.png (the pictures of docs/views.md and the README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pages import field_value, open_view, scores_shown

from ecco_client.views import view_data

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "model_store" / "smollm2-135m-instruct"
SHOTS = ROOT / "docs" / "views"
REQUEST = {
    "prompt": "The capital of France is",
    "generation": {"max_new_tokens": 4},
    "attribution": {"methods": ["integrated_gradients", "grad_x_input"], "n_steps": 16},
    "internals": {
        "layer_predictions": True,
        "top_k": 5,
        "token_rankings": True,
        "watch": [{"text": " Paris"}, {"text": " London"}, {"text": " Rome"}],
        "activations": True,
        "activation_top_k": 6,
        "nmf_components": 3,
        "similarity": ["HIDDEN"],
    },
}


@pytest.fixture(scope="module")
def real_reply() -> dict:
    if not (MODEL / "ecco_build.json").exists():
        pytest.fail(f"the default model is not built: run `make model` (expected {MODEL})")
    from ecco_codec import decode_request, encode_explanation
    from ecco_engine import Explainer
    from ecco_engine.loading import load_model

    model, tokenizer = load_model(MODEL)
    engine = Explainer(model, tokenizer)
    decoded = decode_request(json.dumps(REQUEST).encode(), content_type="application/json", url_kind="explain")
    reply = encode_explanation(engine.explain(decoded.request), decoded, model_name=MODEL.name, tokenizer=tokenizer)
    return json.loads(json.dumps(reply))


@pytest.mark.slow
@pytest.mark.real_model
def test_default_model_views_and_screenshots(browser, real_reply, tmp_path) -> None:
    view = open_view(browser, real_reply, tmp_path / "default.html", width=1100, height=1200)
    page, a = view.page, view_data(real_reply)["attributions"][0]
    first = a["targets"][0]
    page.click(f".ecco-attribution .tok[data-pos='{first}']")
    assert scores_shown(page) == {str(j): a["rows"][0][j] for j in range(first)}
    assert field_value(page, "convergence_delta") == a["convergence_deltas"][0]
    SHOTS.mkdir(exist_ok=True)
    for name in ("attribution", "matrix", "layer-predictions", "rankings", "watch", "activations", "nmf", "similarity"):
        if name == "activations":
            page.hover(f".ecco-activations .tok[data-pos='{first - 1}']")
        page.locator(f".ecco-{name}").screenshot(path=str(SHOTS / f"{name}.png"))
    view.assert_clean(page.url)
