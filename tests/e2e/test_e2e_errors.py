"""Errors against a real TorchServe: each error class on REST and gRPC, mixed batches, the token, and
a worker that keeps serving correct results afterwards."""

from __future__ import annotations

import json
import threading
import time

import grpc
import pytest

from ecco_client import EccoClient, EccoError, ExplainResult, RowEvent, TokenEvent
from ecco_proto.ecco.v1 import ecco_pb2 as pb
from ts_calls import (
    EXPLAIN,
    GENERATE,
    assert_same,
    grpc_predict,
    in_process,
    reply_message,
    request_message,
    rest,
    worker_pids,
)

pytestmark = pytest.mark.slow

# (case, model, kind, request, HTTP status, gRPC code, text the message must contain)
ERRORS = [
    ("invalid value", "tiny", "explain", {"prompt": "x", "generation": {"max_new_tokens": 0}},
     400, "INVALID_ARGUMENT", "generation.max_new_tokens"),
    ("unknown method", "tiny", "explain", {"prompt": "x", "attribution": {"methods": ["nope"]}},
     400, "INVALID_ARGUMENT", "attribution.methods"),
    ("out-of-range position", "tiny", "explain",
     {"prompt": "x", "generation": {"max_new_tokens": 2}, "attribution": {"positions": [5], "n_steps": 4}},
     400, "INVALID_ARGUMENT", "attribution.positions"),
    ("limit: new tokens", "tiny", "generate", {"prompt": "x", "generation": {"max_new_tokens": 33}},
     413, "RESOURCE_EXHAUSTED", "generation.max_new_tokens"),
    ("limit: IG steps", "tiny", "explain", {"prompt": "x", "attribution": {"n_steps": 129}},
     413, "RESOURCE_EXHAUSTED", "attribution.n_steps"),
    ("non-finite attribution", "tiny-nan", "explain",
     {"prompt": "x", "generation": {"max_new_tokens": 2}, "attribution": {"n_steps": 4}},
     422, "FAILED_PRECONDITION", "non-finite"),
    ("internal error", "tiny-nan", "generate",
     {"prompt": "x", "generation": {"max_new_tokens": 2, "do_sample": True, "seed": 1}},
     500, "INTERNAL", "internal error"),
]  # fmt: skip
PATHS = {"generate": "/predictions", "explain": "/explanations"}
LEAKS = ("Traceback", "probability tensor", 'File "')


@pytest.mark.parametrize(
    ("case", "model", "kind", "fields", "status", "code", "text"), ERRORS, ids=[e[0] for e in ERRORS]
)
def test_error_has_its_http_status_and_grpc_code(served, case, model, kind, fields, status, code, text):
    reply = rest(served, f"{PATHS[kind]}/{model}", fields)
    assert reply.status == status, reply.body
    assert reply.content_type.startswith("application/json")
    error = reply.json()
    assert (error["code"], error["type"]) == (status, code)
    assert text in error["message"] and not any(leak in error["message"] for leak in LEAKS)

    with pytest.raises(grpc.RpcError) as raised:
        grpc_predict(served, model, request_message(kind, fields).SerializeToString())
    assert raised.value.code().name == code
    assert raised.value.details().startswith(error["message"])  # + TorchServe's "\norg.pytorch...Exception"


@pytest.mark.parametrize(("body", "content_type", "text"), [
    (b"{not json", "application/json", "body: not valid JSON"),
    (b'{"prompt": "x", "max_new_token": 3}', "application/json", "max_new_token"),
    (b"\xff\xfe garbage", "application/x-protobuf", "body"),
])  # fmt: skip
def test_malformed_body_is_400_naming_the_problem(served, body, content_type, text):
    reply = rest(served, "/explanations/tiny", body, content_type=content_type)
    assert reply.status == 400 and text in reply.json()["message"], reply.body
    with pytest.raises(grpc.RpcError) as raised:
        grpc_predict(served, "tiny", body)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_request_without_the_token_is_refused(served):
    """Token authorization is on. TorchServe 0.12 refuses REST with 400 (not 401), gRPC with PERMISSION_DENIED."""
    for token in (None, "wrong-token"):
        reply = rest(served, "/predictions/tiny", GENERATE, token=token)
        assert reply.status == 400 and "Token Authorization failed" in reply.json()["message"]
        with pytest.raises(grpc.RpcError) as raised:
            grpc_predict(served, "tiny", request_message("generate", GENERATE).SerializeToString(), token=token)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rest(served, "/predictions/tiny", GENERATE).status == 200


def _batch_count(served) -> int:
    log = served.server.run_dir / "logs" / "model_log.log"
    return log.read_text().count("handling a batch of 4 requests") if log.exists() else 0


def _in_one_batch(served, calls: dict, check) -> None:
    """Run the four ``calls`` at once until they form one TorchServe batch of 4 (maxBatchDelay 100 ms);
    ``check(results)`` every time. A call's result is its return value or the exception it raised."""
    for _attempt in range(3):
        before = _batch_count(served)
        barrier, results = threading.Barrier(len(calls)), {}

        def run(name, call, barrier=barrier, results=results):
            barrier.wait()
            try:
                results[name] = call()
            except Exception as error:  # the checks look at it
                results[name] = error

        threads = [threading.Thread(target=run, args=item) for item in calls.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        check(results)
        if _batch_count(served) > before:
            return
    pytest.fail("the four concurrent requests never formed one batch of 4")


def test_mixed_batch_gives_each_row_its_own_result(served, reference):
    """Four concurrent requests (REST good / REST 400 / gRPC good / gRPC 413) land in one batch of 4."""
    bad = {"prompt": "x", "generation": {"max_new_tokens": 0}}
    too_big = {"prompt": "x", "generation": {"max_new_tokens": 99}}
    calls = {
        "rest ok": lambda: rest(served, "/explanations/tiny", EXPLAIN),
        "rest bad": lambda: rest(served, "/explanations/tiny", bad),
        "grpc ok": lambda: grpc_predict(served, "tiny", request_message("generate", GENERATE).SerializeToString()),
        "grpc too big": lambda: grpc_predict(served, "tiny", request_message("generate", too_big).SerializeToString()),
    }

    def check(results):
        assert results["rest ok"].status == 200
        assert_same(reply_message(results["rest ok"].json()), in_process(reference, "explain", EXPLAIN))
        assert results["rest bad"].status == 400
        assert "generation.max_new_tokens" in results["rest bad"].json()["message"]
        assert_same(reply_message(results["grpc ok"]), in_process(reference, "generate", GENERATE))
        # a gRPC row's status cannot travel in a batch (TorchServe 0.12): an OK call whose reply carries
        # `error` -- unless it was alone in its batch (a retry), then it is a real RESOURCE_EXHAUSTED
        if isinstance(results["grpc too big"], grpc.RpcError):
            assert results["grpc too big"].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        else:
            reply = pb.GenerateResponse.FromString(results["grpc too big"])
            assert reply.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            assert reply.error.message.startswith("generation.max_new_tokens: ")
            assert not reply.tokens and not reply.generated_text  # nothing else is set

    _in_one_batch(served, calls, check)


def test_client_in_a_multi_row_grpc_batch(served, reference):
    """ecco_client over gRPC, four rows of one batch: the bad rows raise EccoError with their code (a
    unary call and a stream), the others succeed (a unary explain and a stream)."""
    client = EccoClient(grpc=served.server.grpc_target, model="tiny", token=served.token, timeout=120)
    assert client.ping() == "Healthy"  # connected before the calls race
    ok_stream = {"prompt": "The capital of France is", "max_new_tokens": 3, "methods": ["grad_x_input"]}
    calls = {
        "explain ok": lambda: client.explain(prompt=EXPLAIN["prompt"], max_new_tokens=3, n_steps=8,
                                             methods=["integrated_gradients", "grad_x_input"]),
        "generate too big": lambda: client.generate(prompt="x", max_new_tokens=99),
        "stream ok": lambda: list(client.stream("explain", **ok_stream)),
        "stream bad": lambda: list(client.stream("explain", prompt="x", methods=["nope"])),
    }  # fmt: skip

    def check(results):
        explained = results["explain ok"]
        assert isinstance(explained, ExplainResult), explained
        assert_same(reply_message(explained.message.SerializeToString()), in_process(reference, "explain", EXPLAIN))
        too_big = results["generate too big"]
        assert isinstance(too_big, EccoError) and (too_big.status, too_big.code) == (413, "RESOURCE_EXHAUSTED")
        assert too_big.message.startswith("generation.max_new_tokens: ")
        items = results["stream ok"]
        assert isinstance(items, list), items
        assert [type(i) for i in items] == [TokenEvent] * 3 + [RowEvent] * 3 + [ExplainResult]
        assert [i.token for i in items[:3]] == list(items[-1].generated_tokens)
        bad = results["stream bad"]
        assert isinstance(bad, EccoError) and (bad.status, bad.code) == (400, "INVALID_ARGUMENT")
        assert bad.message.startswith("attribution.methods")

    try:
        _in_one_batch(served, calls, check)
    finally:
        client.close()


def test_worker_keeps_serving_correct_results_after_errors(served, reference):
    pids = {model: worker_pids(served, model) for model in ("tiny", "tiny-nan")}
    for _case, model, kind, fields, status, _code, _text in ERRORS:
        assert rest(served, f"{PATHS[kind]}/{model}", fields).status == status
        with pytest.raises(grpc.RpcError):
            grpc_predict(served, model, request_message(kind, fields).SerializeToString())
    assert_same(
        reply_message(rest(served, "/explanations/tiny", EXPLAIN).json()), in_process(reference, "explain", EXPLAIN)
    )
    greedy = rest(served, "/predictions/tiny-nan", {"prompt": "x", "generation": {"max_new_tokens": 2}})
    assert greedy.status == 200  # the broken model still generates greedily after its 500s
    assert {model: worker_pids(served, model) for model in pids} == pids  # no worker was restarted


# ---- hostile bodies (issue 13): a 400 / 413 naming the problem, at once, and the worker keeps serving
DEEP = 100_000
HOSTILE = [
    ("deep JSON", b'{"prompt": "x", "generation": ' + b"[" * DEEP + b"]" * DEEP + b"}",
     400, "INVALID_ARGUMENT", "body: JSON nested more than 32 levels deep"),
    ("5000-digit integer", b'{"prompt": "x", "generation": {"max_new_tokens": ' + b"9" * 5000 + b"}}",
     400, "INVALID_ARGUMENT", "body: an integer literal has 5000 digits"),
    ("50 MB prompt", json.dumps({"prompt": "x" * 50_000_000, "generation": {"max_new_tokens": 1}}).encode(),
     413, "RESOURCE_EXHAUSTED", "prompt: input is 50000000 characters"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "status", "code", "text"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_body_is_refused_at_once_naming_the_problem(served, reference, case, body, status, code, text):
    pids = worker_pids(served, "tiny")
    start = time.perf_counter()
    reply = rest(served, "/explanations/tiny", body)
    print(f"\n{case}: REST {reply.status} in {time.perf_counter() - start:.3f} s")  # measured, not asserted
    assert reply.status == status, reply.body[:500]
    assert reply.json()["message"].startswith(text)

    start = time.perf_counter()
    with pytest.raises(grpc.RpcError) as raised:  # the same JSON body over gRPC
        grpc_predict(served, "tiny", body)
    print(f"{case}: gRPC {raised.value.code().name} in {time.perf_counter() - start:.3f} s")
    assert raised.value.code().name == code and raised.value.details().startswith(text)

    assert worker_pids(served, "tiny") == pids  # no worker restarted
    assert_same(
        reply_message(rest(served, "/explanations/tiny", EXPLAIN).json()), in_process(reference, "explain", EXPLAIN)
    )


def test_huge_prompt_in_protobuf_binary_is_refused_at_once(served):
    body = request_message("explain", {"prompt": "x" * 50_000_000}).SerializeToString()
    start = time.perf_counter()
    with pytest.raises(grpc.RpcError) as raised:
        grpc_predict(served, "tiny", body)
    print(f"\n50 MB binary prompt: gRPC {raised.value.code().name} in {time.perf_counter() - start:.3f} s")
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert raised.value.details().startswith("prompt: input is 50000000 characters")


def test_step_counts_are_limited_as_sent(served):
    """The served limit is 128 steps: a tolerance loop with no max_n_steps runs within it (it used to be
    refused naming max_n_steps, a field never sent); a max_n_steps beyond it is 413 naming max_n_steps."""
    fields = {"prompt": "x", "generation": {"max_new_tokens": 1},
              "attribution": {"n_steps": 100, "completeness_tolerance": 1e-9}}  # fmt: skip
    reply = rest(served, "/explanations/tiny", fields)
    assert reply.status == 200, reply.body
    fields["attribution"]["max_n_steps"] = 200
    reply = rest(served, "/explanations/tiny", fields)
    assert reply.status == 413
    assert reply.json()["message"].startswith("attribution.max_n_steps: must be at most 128")


def test_hostile_kserve_envelopes_are_400_naming_the_problem(served):
    for body, text in [
        (b'{"instances": ' + b"[" * DEEP + b"]" * DEEP + b"}", "body: JSON nested more than 32 levels deep"),
        (b'{"instances": [{"prompt": "x", "seed": ' + b"9" * 5000 + b"}]}", "body: an integer literal has 5000 digits"),
    ]:
        reply = rest(served, "/v1/models/tiny:explain", body)
        assert reply.status == 400 and reply.json()["message"].startswith(text), reply.body[:500]
