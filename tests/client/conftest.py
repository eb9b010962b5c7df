"""Fixtures: real gRPC and REST servers on 127.0.0.1 (see fake_torchserve.py), stopped at session end."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import ThreadingHTTPServer

import grpc
import pytest
from fake_torchserve import MODEL, TOKEN, Backend, Servicer, http_handler

from ecco_proto.torchserve import inference_pb2_grpc


@pytest.fixture(scope="session")
def backend() -> Backend:
    return Backend()


@pytest.fixture(scope="session")
def grpc_target(backend: Backend) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    inference_pb2_grpc.add_InferenceAPIsServiceServicer_to_server(Servicer(backend), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait(5)


@pytest.fixture(scope="session")
def rest_url(backend: Backend) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), http_handler(backend))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="session")
def server_args(rest_url: str, grpc_target: str) -> dict[str, list[str]]:
    """The ``ecco`` command line's connection options for each transport."""
    return {
        "rest": ["--url", rest_url, "--model", MODEL, "--token", TOKEN],
        "grpc": ["--grpc", grpc_target, "--model", MODEL, "--token", TOKEN],
    }
