"""The default model's archive on a real TorchServe (needs `make model`): REST, gRPC and in-process agree.

Its own TorchServe (module scope), built the way `make archive` builds the default archive, into a
temporary store (the weights are hard-linked, so this costs no copy).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

from ecco_codec import decode_request, encode_explanation
from ecco_engine import Explainer
from ecco_engine.loading import load_model
from ecco_serving.archive import build_archive
from ecco_serving.server import Ports, config_with_ports, free_ports, start, stop
from ts_calls import Served, assert_same, grpc_predict, reply_message, request_message, rest

pytestmark = [pytest.mark.slow, pytest.mark.real_model]

MODEL_DIR = REPO / "model_store" / "smollm2-135m-instruct"
NAME = "smollm2-135m-instruct"
REQUEST = {
    "prompt": "The capital of France is",
    "generation": {"max_new_tokens": 4},
    "attribution": {"methods": ["integrated_gradients"], "n_steps": 16},
}


@pytest.fixture(scope="module")
def real_served(tmp_path_factory) -> Iterator[Served]:
    if not (MODEL_DIR / "model.safetensors").is_file():
        pytest.skip(f"{MODEL_DIR} is missing: run `make model`")
    store = tmp_path_factory.mktemp("real-store")
    archive = build_archive(MODEL_DIR, store, NAME)  # the default archive's settings
    run_dir = tmp_path_factory.mktemp("real-run")
    config = config_with_ports(REPO / "config.properties", run_dir / "config.properties", Ports(*free_ports(6)))
    started = time.perf_counter()
    server = start(run_dir, config, store, {NAME: archive.name}, timeout=300)
    print(f"\nTorchServe up with {NAME} in {time.perf_counter() - started:.1f} s")
    try:
        yield Served(server=server, model_dirs={NAME: MODEL_DIR}, keys=server.keys())
    finally:
        stop(run_dir)


def test_default_model_explains_alike_over_rest_grpc_and_in_process(real_served):
    start = time.perf_counter()
    over_rest = rest(real_served, f"/explanations/{NAME}", REQUEST)
    rest_seconds = time.perf_counter() - start
    assert over_rest.status == 200, over_rest.body
    body = request_message("explain", REQUEST).SerializeToString()
    start = time.perf_counter()
    over_grpc = reply_message(grpc_predict(real_served, NAME, body))
    grpc_seconds = time.perf_counter() - start
    served = reply_message(over_rest.json())
    assert served == over_grpc  # same worker, same request: identical
    assert served.generated_text.strip() and len(served.attributions[0].target_positions) == 4

    model, tokenizer = load_model(MODEL_DIR)
    decoded = decode_request(body, content_type="application/x-protobuf")
    start = time.perf_counter()
    explanation = Explainer(model, tokenizer).explain(decoded.request)
    local_seconds = time.perf_counter() - start
    assert_same(served, reply_message(encode_explanation(explanation, decoded, model_name=NAME)))
    print(f"explain latency: REST {rest_seconds:.2f} s, gRPC {grpc_seconds:.2f} s, in-process {local_seconds:.2f} s")


def test_default_archive_is_what_make_archive_builds():
    makefile = (REPO / "Makefile").read_text()
    assert f"NAME    := {NAME}" in makefile and "archive --model $(MODEL) --name $(NAME)" in makefile
    assert Path(MODEL_DIR).name == NAME
