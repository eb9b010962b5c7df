"""The views from the client: ``ecco explain --html``, ``ecco view`` of a saved ``--json`` reply and the
result's ``to_html()`` / ``_repr_html_`` all embed exactly the data of the reply (against the real servers)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from fake_torchserve import MODEL, TOKEN

from ecco_client import EccoClient
from ecco_client.cli import main
from ecco_client.views import view_data

ARGS = ["--prompt", "The capital of France is", "--max-new-tokens", "2", "--method", "grad_x_input"]


def embedded(page: str) -> dict:
    """The data a page draws (its ``<script type="application/json">``)."""
    found = re.search(r'<script type="application/json" class="ecco-data">(.*?)</script>', page, re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_explain_html_and_view_of_the_json(rest_url, tmp_path: Path) -> None:
    server = ["--url", rest_url, "--model", MODEL, "--token", TOKEN]
    out = io.StringIO()
    assert main(["explain", *server, *ARGS, "--json", "--html", str(tmp_path / "live.html")], out=out) == 0
    reply = json.loads(out.getvalue())
    assert embedded((tmp_path / "live.html").read_text(encoding="utf-8")) == view_data(reply)
    (tmp_path / "reply.json").write_text(out.getvalue(), encoding="utf-8")
    kserve = tmp_path / "kserve.json"
    kserve.write_text(json.dumps({"explanations": [reply]}), encoding="utf-8")
    for source in ("reply.json", "kserve.json"):
        target = tmp_path / f"{source}.html"
        assert main(["view", str(tmp_path / source), "-o", str(target)]) == 0
        assert embedded(target.read_text(encoding="utf-8")) == view_data(reply)


def test_view_of_an_error_reply_fails(tmp_path: Path, capsys) -> None:
    saved = tmp_path / "error.json"
    saved.write_text(json.dumps({"error": {"code": 3, "message": "generation.max_new_tokens: too small"}}))
    assert main(["view", str(saved), "-o", str(tmp_path / "x.html")]) == 1
    assert "generation.max_new_tokens: too small" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_result_shows_itself_in_a_notebook(grpc_target) -> None:
    with EccoClient(grpc=grpc_target, model=MODEL, token=TOKEN) as client:
        result = client.explain(prompt="The capital of France is", max_new_tokens=2, methods=["grad_x_input"])
    fragment = result._repr_html_()
    assert fragment.startswith('<div class="ecco-view"')
    assert embedded(fragment) == view_data(result.to_json())
    assert result.to_html().startswith("<!doctype html>")
