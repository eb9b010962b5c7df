"""Layer similarity through EccoClient and ``ecco explain --similarity`` against the fake TorchServe servers.

Tolerances: the engine's float64 matrices are packed float32 on the wire (JSON floats round-trip
float32), so the client's values equal the engine's cast to float32 exactly.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from fake_torchserve import MODEL, TOKEN

from ecco_client import EccoClient, build_internals
from ecco_client.cli import main
from ecco_codec import decode_request
from ecco_proto.ecco.v1 import ecco_pb2 as pb

PROMPT = "The capital of France is"
N_LAYERS = 2  # the fake server's tiny GPT-2
ASK = {"similarity": ["hidden", "ffn"], "similarity_method": "cka"}
OPTIONS = {"prompt": PROMPT, "max_new_tokens": 2, "attribute": False, "internals": ASK}


@pytest.fixture(scope="module")
def clients(rest_url, grpc_target):
    made = {
        "rest-json": EccoClient(url=rest_url, model=MODEL, token=TOKEN),
        "rest-proto": EccoClient(url=rest_url, model=MODEL, token=TOKEN, wire="proto"),
        "grpc": EccoClient(grpc=grpc_target, model=MODEL, token=TOKEN),
    }
    yield made
    for client in made.values():
        client.close()


@pytest.fixture(scope="module")
def engine_similarity(backend):
    from ecco_client.build import build_request

    body = build_request("explain", **OPTIONS).SerializeToString()
    decoded = decode_request(body, content_type="application/x-protobuf")
    with backend.lock:
        return backend.explainer.explain(decoded.request).internals.similarity


def test_every_transport_gives_the_engine_matrices(clients, engine_similarity) -> None:
    results = {name: client.explain(**OPTIONS) for name, client in clients.items()}
    first = results["grpc"].internals.similarity
    for name, result in results.items():
        assert result.internals.similarity == first, name
    assert first.method == "linear_cka" and first.positions == engine_similarity.positions
    assert first.n_tokens == len(results["grpc"].tokens)  # default: every token of the sequence
    hidden, ffn = first.matrices
    assert hidden.representation == "hidden" and hidden.labels == ("emb", "h1", "h2")
    assert ffn.representation == "ffn" and ffn.layers == (0, 1) and ffn.labels == ("f0", "f1")
    for got, want in zip(first.matrices, engine_similarity.matrices, strict=True):
        np.testing.assert_array_equal(got.matrix_array(), want.matrix.astype(np.float32).astype(np.float64))
    assert first.of("ffn") is ffn


def test_builder_maps_names_to_the_enum() -> None:
    message = build_internals(similarity=["ffn", "HIDDEN"], similarity_method="pwcca", similarity_positions=[1, 2])
    assert list(message.similarity) == [pb.FFN, pb.HIDDEN] and message.similarity_method == "pwcca"
    assert list(message.similarity_positions) == [1, 2]
    assert not build_internals().HasField("similarity_method")
    with pytest.raises(ValueError, match="hidden, ffn"):
        build_internals(similarity=["attention"])


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, out=out), out.getvalue()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_cli_prints_one_grid_per_representation(rest_url, grpc_target, transport) -> None:
    server = ["--url", rest_url] if transport == "rest" else ["--grpc", grpc_target]
    argv = ["explain", *server, "--model", MODEL, "--token", TOKEN, "--prompt", PROMPT, "--max-new-tokens", "3"]
    code, text = _run([*argv, "--no-attribution", "--similarity", "hidden", "--similarity", "ffn"])
    assert code == 0, text
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("layer similarity (linear_cka) over 11 tokens"))
    grid = lines[start : start + 1 + (2 + N_LAYERS + 1) + (2 + N_LAYERS)]
    assert grid[1].strip() == "hidden states" and grid[2].split() == ["emb", "h1", "h2"]
    assert grid[3].split()[0] == "emb" and grid[3].split()[1] == "1.00"  # the diagonal
    assert grid[6].strip() == "FFNN activations" and grid[7].split() == ["f0", "f1"]
    assert [row.split()[0] for row in grid[8:10]] == ["f0", "f1"] and grid[9].split()[2] == "1.00"


def test_cli_unknown_method_exits_1_naming_the_field(rest_url, capsys) -> None:
    argv = ["explain", "--url", rest_url, "--model", MODEL, "--token", TOKEN, "--prompt", PROMPT]
    code, _ = _run([*argv, "--no-attribution", "--similarity", "ffn", "--similarity-method", "procrustes"])
    assert code == 1
    assert (
        "ecco: 400 INVALID_ARGUMENT: internals.similarity_method: unknown similarity method" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as info:
        _run([*argv, "--similarity", "attention"])
    assert info.value.code == 2


def test_results_are_frozen(clients) -> None:
    similarity = clients["grpc"].explain(**OPTIONS).internals.similarity
    with pytest.raises(dataclasses.FrozenInstanceError):
        similarity.method = "cca"  # type: ignore[misc]
