"""Soak: mixed good and bad requests over REST and gRPC against TorchServe with 2 workers, bounded.

Starts a private TorchServe on 127.0.0.1 (``_served``: the default model, or ``--tiny``), then runs
``--clients`` threads (half REST, half gRPC) until ``--seconds`` have passed or ``--max-requests`` were
sent. Each thread alternates a good request (``ecco_client.EccoClient``: a greedy generate or a small
explain, whose tokens must equal the first answer's) with a bad one from ``BAD`` (field errors through
the client; deep JSON, a 5000-digit integer, a huge prompt and protobuf garbage as raw bodies). Worker
memory (RSS of every TorchServe worker, summed) is sampled every ``--sample-seconds``.

Printed: requests (good / bad), errors on good requests (must be 0), bad requests not refused with a
4xx (must be 0), worker RSS at start and end and its least-squares slope (MB per minute and per 1000
requests), and whether the workers are the ones that started (none restarted). Exit status 1 if a
good request failed or a bad one was not refused as expected.

Run from the repository root: ``python benchmarks/soak.py --tiny --seconds 90``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable

import _common  # noqa: F401  (sets sys.path before the engine is imported)
import grpc
import psutil
from _served import NAME, Session, add_server_options, serving

from ecco_client import EccoClient, EccoError
from ecco_proto.torchserve import inference_pb2, inference_pb2_grpc

GOOD = {
    "generate": {"prompt": "The capital of France is", "max_new_tokens": 4, "do_sample": False},
    "explain": {"prompt": "The capital of France is", "max_new_tokens": 2, "do_sample": False,
                "methods": ["integrated_gradients", "grad_x_input"], "n_steps": 8},
}  # fmt: skip
#: field-level bad requests (through the client): name -> (kind, options, expected HTTP status)
BAD_FIELDS = {
    "zero tokens": ("generate", {"prompt": "x", "max_new_tokens": 0}, 400),
    "unknown method": ("explain", {"prompt": "x", "methods": ["nope"]}, 400),
    "too many steps": ("explain", {"prompt": "x", "n_steps": 100_000}, 413),
    "too many tokens": ("generate", {"prompt": "x", "max_new_tokens": 100_000}, 413),
}
DEEP = 100_000
#: malformed bodies (raw): name -> (body, expected HTTP status); gRPC gets the same bytes
BAD_BODIES = {
    "deep JSON": (b'{"prompt": "x", "generation": ' + b"[" * DEEP + b"]" * DEEP + b"}", 400),
    "huge integer": (b'{"prompt": "x", "generation": {"max_new_tokens": ' + b"9" * 5000 + b"}}", 400),
    "huge prompt": (json.dumps({"prompt": "x" * 2_000_000}).encode(), 413),
    "garbage": (b"\x0a\xff\xff\xff", 400),
}
GRPC_CODES = {400: "INVALID_ARGUMENT", 413: "RESOURCE_EXHAUSTED"}


class Soak:
    """The shared counters of one soak run (thread-safe)."""

    def __init__(self, session: Session, deadline: float, max_requests: int) -> None:
        self.session = session
        self.deadline = deadline
        self.budget = itertools.count()
        self.max_requests = max_requests
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()  # what went wrong, by kind
        self.reference: dict[str, tuple[int, ...]] = {}

    def more(self) -> bool:
        return time.monotonic() < self.deadline and next(self.budget) < self.max_requests

    def record(self, key: str, failure: str | None = None) -> None:
        with self.lock:
            self.counts[key] += 1
            if failure:
                self.failures[failure] += 1


def good_call(soak: Soak, client: EccoClient, kind: str, transport: str) -> None:
    try:
        result = client.explain(**GOOD[kind]) if kind == "explain" else client.generate(**GOOD[kind])
    except EccoError as error:
        soak.record("good", f"good {kind} over {transport}: {error.status} {error.code}")
        return
    ids = tuple(t.id for t in result.tokens)
    with soak.lock:
        expected = soak.reference.setdefault(kind, ids)
    soak.record("good", None if ids == expected else f"good {kind} over {transport}: different tokens")


def bad_field_call(soak: Soak, client: EccoClient, name: str, transport: str) -> None:
    kind, options, status = BAD_FIELDS[name]
    try:
        client.explain(**options) if kind == "explain" else client.generate(**options)
        failure: str | None = f"{name} over {transport}: answered"
    except EccoError as error:
        failure = None if error.status == status else f"{name} over {transport}: {error.status} {error.code}"
    soak.record("bad", failure)


def raw_rest(session: Session, body: bytes) -> int:
    request = urllib.request.Request(
        f"{session.server.inference_url}/explanations/{NAME}",
        data=body,
        headers={"authorization": f"Bearer {session.token}", "content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def bad_body_call(soak: Soak, stub, name: str, transport: str) -> None:
    body, status = BAD_BODIES[name]
    failure = None
    if transport == "rest":
        got = raw_rest(soak.session, body)
        if got != status:
            failure = f"{name} over REST: {got}"
    else:
        request = inference_pb2.PredictionsRequest(model_name=NAME, input={"body": body})
        try:
            stub.Predictions(request, metadata=[("authorization", f"Bearer {soak.session.token}")], timeout=600)
            failure = f"{name} over gRPC: answered"
        except grpc.RpcError as error:
            if error.code().name != GRPC_CODES[status]:
                failure = f"{name} over gRPC: {error.code().name}"
    soak.record("bad", failure)


def client_loop(soak: Soak, transport: str, offset: int) -> None:
    steps: list[Callable[[EccoClient, object], None]] = []
    for i, name in enumerate([*BAD_FIELDS, *BAD_BODIES]):
        kind = "explain" if i % 2 else "generate"
        steps.append(lambda c, s, kind=kind: good_call(soak, c, kind, transport))
        if name in BAD_FIELDS:
            steps.append(lambda c, s, name=name: bad_field_call(soak, c, name, transport))
        else:
            steps.append(lambda c, s, name=name: bad_body_call(soak, s, name, transport))
    channel = grpc.insecure_channel(soak.session.server.grpc_target)
    stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
    with soak.session.client(transport, timeout=600) as client:
        for step in itertools.islice(itertools.cycle(steps), offset, None):
            if not soak.more():
                break
            step(client, stub)
    channel.close()


def rss_mb(pids: list[int]) -> float:
    return sum(psutil.Process(pid).memory_info().rss for pid in pids) / 2**20


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (0 with fewer than two)."""
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_server_options(parser)
    parser.add_argument("--seconds", type=float, default=300.0, help="wall-time bound (default: %(default)s)")
    parser.add_argument("--max-requests", type=int, default=100_000, help="request bound (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=4, help="client threads, half REST half gRPC (default: 4)")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="RSS sampling period (default: 5)")
    args = parser.parse_args()
    with serving(args, limits={"max_input_tokens": 2048, "max_n_steps": 1024, "max_new_tokens": 32}) as session:
        with session.client("rest", timeout=600) as client:  # warm-up: the workers' first requests
            for kind in GOOD:
                client.explain(**GOOD[kind]) if kind == "explain" else client.generate(**GOOD[kind])
        pids = session.worker_pids()
        start = time.monotonic()
        soak = Soak(session, start + args.seconds, args.max_requests)
        samples = [(0.0, 0, rss_mb(pids))]  # (seconds, requests, MB)
        threads = [
            threading.Thread(target=client_loop, args=(soak, "rest" if i % 2 == 0 else "grpc", i))
            for i in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            time.sleep(args.sample_seconds if time.monotonic() + args.sample_seconds < soak.deadline else 0.2)
            samples.append((time.monotonic() - start, sum(soak.counts.values()), rss_mb(pids)))
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start
        restarted = session.worker_pids() != pids
    total = sum(soak.counts.values())
    per_minute = slope([(s / 60, mb) for s, _, mb in samples])
    per_1000 = slope([(n / 1000, mb) for _, n, mb in samples])
    good_errors = sum(v for k, v in soak.failures.items() if k.startswith("good"))
    bad_errors = sum(soak.failures.values()) - good_errors
    print(f"\nsoak: {elapsed:.0f} s, {args.clients} clients (REST and gRPC), {args.workers} workers")
    print(f"requests: {total} ({soak.counts['good']} good, {soak.counts['bad']} bad), {total / elapsed:.1f}/s")
    print(f"errors on good requests: {good_errors}")
    print(f"bad requests not refused as expected: {bad_errors}")
    for failure, count in sorted(soak.failures.items()):
        print(f"  {count} x {failure}")
    print(f"worker RSS (sum of {len(pids)}): start {samples[0][2]:.1f} MB, end {samples[-1][2]:.1f} MB")
    print(f"RSS slope: {per_minute:+.2f} MB/min, {per_1000:+.2f} MB per 1000 requests ({len(samples)} samples)")
    print(f"workers restarted: {'yes' if restarted else 'no'}")
    return 1 if soak.failures or restarted else 0


if __name__ == "__main__":
    raise SystemExit(main())
