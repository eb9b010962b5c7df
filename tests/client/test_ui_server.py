"""``ecco ui``'s server against the in-process TorchServe stand-in (REST): the page and its files, the relayed
stream (tokens, then rows, then the views' data, equal to the unary reply's), errors before and after the
stream started, the key kept server-side, and requests that are not the page's own refused."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_torchserve import MODEL, TOKEN

from ecco_client import EccoClient
from ecco_client.ui_server import UiServer, Upstream, serving
from ecco_client.views import view_data

REPO = Path(__file__).resolve().parents[2]
REQUEST = {
    "prompt": "The capital of France is",
    "generation": {"max_new_tokens": 3},
    "attribution": {"methods": ["integrated_gradients", "grad_x_input"], "n_steps": 4},
}


@pytest.fixture
def ui(rest_url: str) -> Iterator[UiServer]:
    with serving(Upstream(url=rest_url, model=MODEL, tokens=lambda: TOKEN)) as server:
        yield server


def call(
    server: UiServer, method: str, path: str, body: object = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """One raw request (any Host / Origin / content type): status, headers (lower-case names), body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    sent = {"host": f"127.0.0.1:{server.port}", "content-type": "application/json"} | headers
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def lines(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]


def test_the_page_and_its_files(ui) -> None:
    status, headers, page = call(ui, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]
    text = page.decode("utf-8")
    assert MODEL in text and TOKEN not in text
    assert "<script>" not in text  # no inline script: everything comes from /static
    files = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert files and all(f.startswith("/static/") for f in files)
    for name in files:
        status, headers, body = call(ui, "GET", name)
        assert status == 200 and body, name
        assert headers["content-type"].startswith("text/javascript" if name.endswith(".js") else "text/css")
        assert TOKEN.encode() not in body
    for missing in ("/static/live.html", "/static/../ui_server.py", "/static/%2e%2e/page.py", "/api/explain"):
        assert call(ui, "GET", missing)[0] == 404, missing


def test_the_stream_is_relayed_as_tokens_rows_then_views(ui, rest_url) -> None:
    status, headers, body = call(ui, "POST", "/api/explain", REQUEST)
    assert status == 200 and headers["content-type"].startswith("application/x-ndjson")
    items = lines(body)
    kinds = [next(iter(item)) for item in items]
    assert kinds == ["token"] * 3 + ["row"] * 6 + ["views"]
    views = items[-1]["views"]
    with EccoClient(url=rest_url, model=MODEL, token=TOKEN) as client:
        unary = view_data(
            client.explain(**REQUEST["generation"], **REQUEST["attribution"], prompt=REQUEST["prompt"]).to_json()
        )
    assert {**views, "timings": []} == {**unary, "timings": []}  # a stream detokenizes while generating
    generated = views["tokens"][views["prompt_length"] :]
    assert [item["token"]["text"] for item in items[:3]] == [t["text"] for t in generated]
    assert [item["token"]["position"] for item in items[:3]] == [views["prompt_length"] + i for i in range(3)]
    for item in items[3:9]:
        row = item["row"]
        a = next(a for a in views["attributions"] if a["method"] == row["method"])
        index = a["targets"].index(row["target_position"])
        assert row["scores"] == a["rows"][index][: row["target_position"]]
        assert row["target_score"] == a["target_scores"][index]
        assert (row["convergence_delta"] is not None) == (row["method"] == "integrated_gradients")


def test_errors_before_and_after_the_stream_started(ui) -> None:
    status, _, body = call(ui, "POST", "/api/explain", {**REQUEST, "generation": {"max_new_tokens": 0}})
    error = json.loads(body)
    assert (status, error["status"], error["code"]) == (400, 400, "INVALID_ARGUMENT")
    assert error["message"].startswith("generation.max_new_tokens: ")
    status, _, body = call(ui, "POST", "/api/explain", {**REQUEST, "attribution": {"positions": [5], "n_steps": 2}})
    items = lines(body)  # the tokens went out, then the server failed: the last line is the error
    assert status == 200 and [next(iter(i)) for i in items] == ["token"] * 3 + ["error"]
    assert items[-1]["error"]["message"].startswith("attribution.positions: ")
    status, _, body = call(ui, "POST", "/api/explain", {"prompt": "x", "generation": {"max_tokens": 2}})
    assert status == 400 and "max_tokens" in json.loads(body)["message"]  # not an ExplainRequest field
    assert call(ui, "POST", "/api/explain", b"{not json")[0] == 400
    too_long = {"content-length": str(2 * 1024 * 1024)}  # refused before the body is read
    assert call(ui, "POST", "/api/explain", b"{}", **too_long)[0] == 413


def test_the_key_stays_here_and_only_the_page_may_call(rest_url) -> None:
    with serving(Upstream(url=rest_url, model=MODEL, tokens=lambda: "a-wrong-key")) as server:
        status, _, body = call(server, "POST", "/api/explain", REQUEST)
        assert status == 401 and "Token Authorization failed" in json.loads(body)["message"]
    with serving(Upstream(url="http://127.0.0.1:9", model=MODEL, tokens=lambda: TOKEN)) as server:
        status, _, body = call(server, "POST", "/api/explain", REQUEST)
        assert (status, json.loads(body)["code"]) == (503, "UNAVAILABLE")
    with serving(Upstream(url=rest_url, model=MODEL, tokens=lambda: TOKEN)) as server:
        assert call(server, "GET", "/", host="attacker.example")[0] == 403  # a DNS name rebound to 127.0.0.1
        assert call(server, "POST", "/api/explain", REQUEST, host="attacker.example")[0] == 403
        assert call(server, "POST", "/api/explain", REQUEST, origin="https://attacker.example")[0] == 403
        assert call(server, "POST", "/api/explain", REQUEST, **{"content-type": "text/plain"})[0] == 415
        same_origin = {"origin": f"http://localhost:{server.port}", "host": f"localhost:{server.port}"}
        assert call(server, "POST", "/api/explain", REQUEST, **same_origin)[0] == 200


def test_the_ecco_ui_command_serves_until_stopped(rest_url, tmp_path) -> None:
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": TOKEN}}))
    command = [sys.executable, "-m", "ecco_client", "ui", "--url", rest_url, "--model", MODEL]
    env = {"PYTHONPATH": f"{REPO / 'handlers'}:{REPO / 'clients'}", "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [*command, "--key-file", str(key_file), "--port", "0", "--quiet"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        banner = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
        assert url, banner
        connection = http.client.HTTPConnection("127.0.0.1", int(url.group(1)), timeout=30)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        process.terminate()
        process.wait(10)
    missing = subprocess.run(
        [*command, "--key-file", str(tmp_path / "none.json")], capture_output=True, text=True, env=env, timeout=30
    )
    assert missing.returncode == 1 and "no TorchServe key file" in missing.stderr
