"""Real explanations as the server writes them (proto3 JSON dicts), computed in-process on a tiny random
model: request JSON -> codec decode -> engine -> codec encode, the path of the REST handler."""

from __future__ import annotations

import functools
import json
from typing import Any

from ecco_codec import decode_request, encode_explanation
from ecco_engine import Explainer
from tiny_models import tiny_model, tiny_tokenizer

#: a prompt with markup, a newline, a tab and multi-byte characters (byte-level pieces)
PROMPT = "The capital of </script><b>France</b> is\n\tParis — café 東京 🙂"
METHODS = ["integrated_gradients", "grad_x_input"]
INSIDE = {
    "layer_predictions": True,
    "top_k": 3,
    "token_rankings": True,
    "watch": [{"text": " is"}, {"text": " the"}, {"id": 5}],
    "activations": True,
    "activation_top_k": 4,
    "nmf_components": 3,
    "similarity": ["HIDDEN", "FFN"],
}


@functools.lru_cache(maxsize=2)
def explainer(arch: str = "gpt2") -> Explainer:
    return Explainer(tiny_model(arch), tiny_tokenizer())


def explain(request: dict[str, Any], arch: str = "gpt2") -> dict[str, Any]:
    """The JSON reply of POST /explanations for ``request`` (a proto3 JSON ExplainRequest)."""
    decoded = decode_request(json.dumps(request).encode(), content_type="application/json", url_kind="explain")
    engine = explainer(arch)
    reply = encode_explanation(engine.explain(decoded.request), decoded, model_name="tiny", tokenizer=engine.tokenizer)
    assert isinstance(reply, dict)
    return json.loads(json.dumps(reply))  # exactly what a client reads off the wire


def attribution_request(**attribution: Any) -> dict[str, Any]:
    return {
        "prompt": PROMPT,
        "generation": {"max_new_tokens": 4},
        "attribution": {"methods": METHODS, "n_steps": 8, **attribution},
    }


def internals_request(**options: Any) -> dict[str, Any]:
    return {**attribution_request(), "internals": INSIDE, **options}
