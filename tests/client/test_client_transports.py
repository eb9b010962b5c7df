"""EccoClient over real sockets (REST and gRPC servers from conftest): same typed results, errors, auth."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_torchserve import BATCHED_MODEL, MODEL, TOKEN

from ecco_client import EccoClient, EccoError, ExplainResult, GenerateResult, RowEvent, TokenEvent, read_key_file
from ecco_client.build import build_request
from ecco_engine import AttributionParams, ExplainRequest, GenerationParams
from ecco_proto.ecco.v1 import ecco_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
#: small enough to be quick on a tiny model: 3 tokens, 4 IG steps
OPTIONS = {
    "prompt": "The capital of France is",
    "max_new_tokens": 3,
    "methods": ["integrated_gradients", "saliency"],
    "n_steps": 4,
}
FLOAT16_RTOL, FLOAT16_ATOL = 2.0**-11, 2.0**-24


def _clients(rest_url: str, grpc_target: str) -> dict[str, EccoClient]:
    return {
        "rest-json": EccoClient(url=rest_url, model=MODEL, token=TOKEN),
        "rest-proto": EccoClient(url=rest_url, model=MODEL, token=TOKEN, wire="proto"),
        "rest-kserve": EccoClient(url=rest_url, model=MODEL, token=TOKEN, kserve=True),
        "grpc": EccoClient(grpc=grpc_target, model=MODEL, token=TOKEN),
    }


@pytest.fixture(scope="module")
def clients(rest_url, grpc_target):
    made = _clients(rest_url, grpc_target)
    yield made
    for client in made.values():
        client.close()


def _without_timings(result: GenerateResult) -> GenerateResult:
    return dataclasses.replace(result, timings=tuple(dataclasses.replace(t, seconds=0.0) for t in result.timings))


def test_every_transport_gives_the_same_typed_results(clients, backend) -> None:
    explained = {name: client.explain(**OPTIONS) for name, client in clients.items()}
    generated = {name: client.generate(**OPTIONS) for name, client in clients.items()}
    first = next(iter(explained.values()))
    assert isinstance(first, ExplainResult) and first.model == MODEL
    for name, result in explained.items():
        assert _without_timings(result) == _without_timings(first), name
        assert result.to_json()["attributions"][0]["scores"] == first.to_json()["attributions"][0]["scores"], name
    for name, result in generated.items():
        assert type(result) is GenerateResult, name
        assert _without_timings(result) == _without_timings(generated["grpc"]), name
        assert result.generated_text == first.generated_text, name
    # and they equal the engine's own result, bit for bit (float32 on the wire)
    engine = backend.explainer.explain(
        ExplainRequest(
            prompt=OPTIONS["prompt"],
            generation=GenerationParams(max_new_tokens=3),
            attribution=AttributionParams(methods=("integrated_gradients", "saliency"), n_steps=4),
        )
    )
    assert [t.id for t in first.tokens] == [t.id for t in engine.generation.tokens]
    for ours, theirs in zip(first.attributions, engine.attributions, strict=True):
        np.testing.assert_array_equal(ours.scores_array(), theirs.scores)
        np.testing.assert_array_equal(np.float32(ours.target_scores), theirs.target_scores)
        assert ours.target_positions == theirs.target_positions
    ig = first.attribution("integrated_gradients")
    assert ig.n_steps == (4, 4, 4) and ig.baseline == "eos" and ig.integration == "gauss_legendre"
    assert len(ig.convergence_deltas) == 3 and first.attribution("saliency").convergence_deltas == ()


def test_float16_over_grpc(clients) -> None:
    exact = clients["grpc"].explain(**OPTIONS)
    compact = clients["grpc"].explain(**OPTIONS, float16=True)
    assert compact.attributions[0].scores != exact.attributions[0].scores  # really rounded
    for a, b in zip(exact.attributions, compact.attributions, strict=True):
        np.testing.assert_allclose(b.scores_array(), a.scores_array(), rtol=FLOAT16_RTOL, atol=FLOAT16_ATOL)


@pytest.mark.parametrize("name", ["grpc", "rest-json"])
def test_stream(clients, name) -> None:
    """gRPC StreamPredictions and REST JSON lines: tokens, then rows, then the unary reply."""
    items = list(clients[name].stream("explain", **OPTIONS))
    summary = items[-1]
    assert isinstance(summary, ExplainResult)
    tokens = [i for i in items if isinstance(i, TokenEvent)]
    rows = [i for i in items if isinstance(i, RowEvent)]
    assert items == [*tokens, *rows, summary]  # in this order
    assert [t.token for t in tokens] == list(summary.generated_tokens)  # ids, texts and offsets
    assert [t.position for t in tokens] == [summary.prompt_length + i for i in range(3)]
    assert [t.index for t in tokens] == [0, 1, 2] and len(rows) == 2 * 3
    for row in rows:
        assert row.scores == summary.attribution(row.method).row(row.target_position)[: row.target_position]
        assert (row.n_steps == 4) == (row.method == "integrated_gradients") == (row.baseline_score is not None)
    # the same reply as the unary call; the stages differ (a stream detokenizes while generating)
    assert dataclasses.replace(summary, timings=()) == dataclasses.replace(clients[name].explain(**OPTIONS), timings=())
    generate_items = list(clients[name].stream("generate", prompt="Hi", max_new_tokens=2))
    assert [type(i) for i in generate_items] == [TokenEvent, TokenEvent, GenerateResult]


def test_stream_needs_json_lines_on_rest(clients) -> None:
    for name in ("rest-proto", "rest-kserve"):
        with pytest.raises(ValueError, match="JSON lines"):
            next(clients[name].stream("explain", **OPTIONS))


@pytest.mark.parametrize("name", ["grpc", "rest-json"])
def test_stream_errors_raise_before_and_after_the_first_event(clients, name) -> None:
    with pytest.raises(EccoError) as info:  # refused before anything is streamed
        next(clients[name].stream("explain", prompt="x", max_new_tokens=0))
    assert (info.value.status, info.value.code) == (400, "INVALID_ARGUMENT")
    received = []
    with pytest.raises(EccoError) as info:  # fails after the tokens: position 5 of 2 generated
        for item in clients[name].stream("explain", prompt="x", max_new_tokens=2, positions=[5], n_steps=2):
            received.append(item)
    assert [type(i) for i in received] == [TokenEvent, TokenEvent]
    assert (info.value.status, info.value.code) == (400, "INVALID_ARGUMENT")
    assert info.value.message.startswith("attribution.positions: ")


def test_an_error_in_the_reply_raises_like_a_status(grpc_target) -> None:
    """A gRPC request that shared a TorchServe batch gets an OK call whose reply carries ``error``."""
    with EccoClient(grpc=grpc_target, model=BATCHED_MODEL, token=TOKEN) as client:
        with pytest.raises(EccoError) as info:
            client.generate(prompt="x", max_new_tokens=100_000)
        assert (info.value.status, info.value.code) == (413, "RESOURCE_EXHAUSTED")
        assert info.value.message.startswith("generation.max_new_tokens: ")
        with pytest.raises(EccoError) as info:
            list(client.stream("explain", prompt="x", methods=["lime"]))
        assert (info.value.status, info.value.code) == (400, "INVALID_ARGUMENT")
        assert client.generate(prompt="x", max_new_tokens=1).generated_text  # a good request is a reply


@pytest.mark.parametrize(
    ("options", "status", "code", "field"),
    [
        ({"prompt": "x", "max_new_tokens": 0}, 400, "INVALID_ARGUMENT", "generation.max_new_tokens"),
        ({"prompt": "x", "methods": ["lime"]}, 400, "INVALID_ARGUMENT", "attribution.methods"),
        ({"prompt": "x", "target": "contrastive"}, 400, "INVALID_ARGUMENT", "attribution.contrast_token"),
        ({"prompt": "x", "max_new_tokens": 100_000}, 413, "RESOURCE_EXHAUSTED", "generation.max_new_tokens"),
        ({"prompt": "x", "max_new_tokens": 2, "positions": [5]}, 400, "INVALID_ARGUMENT", "attribution.positions"),
    ],
)
def test_errors_are_the_same_on_every_transport(clients, options, status, code, field) -> None:
    seen = set()
    for name, client in clients.items():
        with pytest.raises(EccoError) as info:
            client.explain(**options)
        assert (info.value.status, info.value.code) == (status, code), name
        assert info.value.message.startswith(f"{field}: "), (name, info.value.message)
        seen.add(info.value.message)
    assert len(seen) == 1


def test_no_token_or_wrong_model_or_no_server(rest_url, grpc_target) -> None:
    for client in (EccoClient(url=rest_url, model=MODEL), EccoClient(grpc=grpc_target, model=MODEL, token="wrong")):
        with client, pytest.raises(EccoError) as info:
            client.generate(prompt="x", max_new_tokens=1)
        assert (info.value.status, info.value.code) == (401, "UNAUTHENTICATED")
    with EccoClient(grpc=grpc_target, model="nope", token=TOKEN) as client, pytest.raises(EccoError) as info:
        client.generate(prompt="x")
    assert (info.value.status, info.value.code) == (404, "NOT_FOUND")
    for client in (
        EccoClient(url="http://127.0.0.1:9", model=MODEL, timeout=5),
        EccoClient(grpc="127.0.0.1:9", model=MODEL, timeout=5),
    ):
        with client, pytest.raises(EccoError) as info:
            client.generate(prompt="x")
        assert (info.value.status, info.value.code) == (503, "UNAVAILABLE")
        assert "127.0.0.1:9" in info.value.message


def test_ping(clients) -> None:
    assert clients["grpc"].ping() == "Healthy"
    assert clients["rest-json"].ping() == "Healthy"


def test_key_file(tmp_path, rest_url) -> None:
    key_file = tmp_path / "key_file.json"
    key_file.write_text(
        json.dumps(
            {
                "management": {"key": "m-key", "expiration time": "2099-01-01T00:00:00Z"},
                "inference": {"key": TOKEN, "expiration time": "2099-01-01T00:00:00Z"},
                "API": {"key": "api-key"},
            }
        )
    )
    assert read_key_file(key_file) == TOKEN and read_key_file(key_file, "API") == "api-key"
    with EccoClient(url=rest_url, model=MODEL, key_file=key_file) as client:
        assert client.generate(prompt="x", max_new_tokens=1).finish_reason in ("length", "eos")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="inference"):
        read_key_file(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        read_key_file(tmp_path / "missing.json")


def test_build_request() -> None:
    request = build_request(
        "explain",
        messages=[("system", "Be brief."), {"role": "user", "content": "Hi"}],
        target="Log_Probability",
        aggregation="l2-normalized",
        contrast=None,
        seed=0,
    )
    assert request.kind == pb.EXPLAIN and [m.role for m in request.messages] == ["system", "user"]
    assert request.attribution.target == pb.LOG_PROBABILITY and request.attribution.aggregation == pb.L2_NORMALIZED
    assert request.generation.HasField("seed") and not request.generation.HasField("max_new_tokens")
    assert not request.HasField("prompt")
    assert build_request("explain", prompt="x", contrast=5).attribution.contrast_token_id == 5
    with pytest.raises(ValueError, match="target must be one of probability"):
        build_request("explain", prompt="x", target="prob")


def test_the_client_imports_no_torch(rest_url, grpc_target) -> None:
    """In a fresh interpreter, the client package (and a real call with it) never imports torch."""
    script = f"""
import json, sys
from ecco_client import EccoClient
from ecco_client.cli import main
for kwargs in ({{"url": {rest_url!r}}}, {{"grpc": {grpc_target!r}}}):
    with EccoClient(model={MODEL!r}, token={TOKEN!r}, **kwargs) as client:
        result = client.explain(prompt="Hi", max_new_tokens=1, n_steps=2)
print(json.dumps({{"heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "captum")),
                  "numpy": "numpy" in sys.modules, "text": result.generated_text}}))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("handlers", "clients"))}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [] and report["numpy"] is False and report["text"]
