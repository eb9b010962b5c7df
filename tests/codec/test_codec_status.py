"""Errors -> (HTTP status, gRPC code, message); the generated code is up to date with protos/."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecco_codec import INTERNAL_MESSAGE, decode_request, status_for
from ecco_engine import (
    EngineError,
    InvalidRequest,
    LimitExceeded,
    NonFiniteResult,
    UnknownMethod,
    UnsupportedModel,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("error", "http", "grpc"),
    [
        (InvalidRequest("prompt", "must be a non-empty string"), 400, "INVALID_ARGUMENT"),
        (UnknownMethod("methods", "unknown method 'lime'"), 400, "INVALID_ARGUMENT"),
        (LimitExceeded("max_new_tokens", "must be at most 256, got 300"), 413, "RESOURCE_EXHAUSTED"),
        (NonFiniteResult("integrated gradients gave NaN at position 5"), 422, "FAILED_PRECONDITION"),
        (UnsupportedModel("no decoder blocks found"), 500, "INTERNAL"),
    ],
)
def test_engine_errors(error: EngineError, http: int, grpc: str) -> None:
    status, code, message = status_for(error)
    assert (status, code) == (http, grpc)
    assert str(error) in message or message.endswith(str(error).split(": ", 1)[1])


def test_the_message_is_the_path_and_the_reason() -> None:
    error = LimitExceeded("max_new_tokens", "must be at most 256, got 300").within("generation")
    assert status_for(error) == (413, "RESOURCE_EXHAUSTED", "generation.max_new_tokens: must be at most 256, got 300")
    assert status_for(error).message == f"{error.field}: {error.reason}"
    assert (
        status_for(InvalidRequest("prompt", "tokenizes to zero tokens")).message == "prompt: tokenizes to zero tokens"
    )


def test_errors_raised_by_the_engine_itself(explainer) -> None:
    too_long = decode_request({"prompt": "x", "generation": {"max_new_tokens": 100_000}}).request
    with pytest.raises(LimitExceeded) as info:
        explainer.generate(too_long)
    assert status_for(info.value) == (
        413,
        "RESOURCE_EXHAUSTED",
        "generation.max_new_tokens: must be at most 256, got 100000",
    )
    unknown = decode_request({"prompt": "x", "attribution": {"methods": ["lime"]}}, url_kind="explain").request
    with pytest.raises(UnknownMethod) as info_method:
        explainer.explain(unknown)
    status, code, message = status_for(info_method.value)
    assert (status, code) == (400, "INVALID_ARGUMENT") and message.startswith("attribution.methods: ")


@pytest.mark.parametrize(
    "error", [RuntimeError("CUDA out of memory at /secret/path.py:12"), KeyError("x"), MemoryError()]
)
def test_other_errors_are_internal_without_details(error: BaseException) -> None:
    assert status_for(error) == (500, "INTERNAL", INTERNAL_MESSAGE)


def test_generated_code_is_up_to_date_with_protos() -> None:
    spec = importlib.util.spec_from_file_location("generate_protos", ROOT / "protos" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run `make protos`"


def test_codec_imports_nothing_of_torchserve_or_grpc() -> None:
    script = (
        "import sys, ecco_codec; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ts', 'grpc', 'ecco_client', 'ecco_serving')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("handlers", "clients"))}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
