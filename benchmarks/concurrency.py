"""Concurrency and backpressure: several clients at once against TorchServe with 2 workers.

Starts a private TorchServe on 127.0.0.1 (``_served``: the default model, or ``--tiny``), then for each
client count in ``--clients`` runs that many threads, each sending ``--requests`` explain requests one
after the other, half of the clients over REST and half over gRPC (``ecco_client.EccoClient``). Printed
per client count: requests, answers, errors by (HTTP status, gRPC code), throughput (answers per second
of wall time), latency percentiles of the answers and of the refusals.

Backpressure: the archive's job queue holds ``--job-queue-size`` requests (default 4 here); with more
clients than workers + queue, TorchServe refuses the excess at once instead of queueing it (REST 503
ServiceUnavailableException; gRPC INTERNAL with the same message: TorchServe 0.12 maps it so): the
refusals' latency shows how quickly.

Run from the repository root: ``python benchmarks/concurrency.py --tiny`` (seconds), or without
``--tiny`` for the default model (``make model`` first). Nothing is asserted; the figures are printed.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass

import _common  # noqa: F401  (sets sys.path before the engine is imported)
from _common import table
from _served import Session, add_server_options, serving

from ecco_client import EccoError

REQUEST = {
    "prompt": "The capital of France is",
    "max_new_tokens": 4,
    "do_sample": False,
    "methods": ["integrated_gradients"],
    "n_steps": 32,
}


@dataclass(frozen=True)
class Call:
    """One request: wall seconds and its outcome ("ok" or "<HTTP status> <gRPC code>")."""

    seconds: float
    outcome: str


def client_loop(session: Session, transport: str, requests: int, calls: list[Call], barrier: threading.Barrier) -> None:
    with session.client(transport, timeout=600) as client:
        barrier.wait()
        for _ in range(requests):
            start = time.perf_counter()
            try:
                client.explain(**REQUEST)
                outcome = "ok"
            except EccoError as error:
                outcome = f"{error.status} {error.code}"
            calls.append(Call(time.perf_counter() - start, outcome))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run(session: Session, clients: int, requests: int) -> list[object]:
    calls: list[Call] = []
    barrier = threading.Barrier(clients + 1)
    threads = [
        threading.Thread(target=client_loop, args=(session, "rest" if i % 2 == 0 else "grpc", requests, calls, barrier))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ok = [c.seconds for c in calls if c.outcome == "ok"]
    refused = [c.seconds for c in calls if c.outcome != "ok"]
    errors = Counter(c.outcome for c in calls if c.outcome != "ok")
    shown = ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none"
    return [
        clients, len(calls), len(ok), shown, f"{len(ok) / wall:.2f}",
        f"{percentile(ok, 50):.3f}", f"{percentile(ok, 90):.3f}", f"{percentile(ok, 99):.3f}",
        f"{percentile(refused, 50):.3f}" if refused else "-",
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_server_options(parser)
    parser.set_defaults(job_queue_size=4)
    parser.add_argument("--clients", default="1,2,4,16", help="client counts, comma separated (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=8, help="requests per client (default: %(default)s)")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    with serving(args) as session:
        with session.client("rest", timeout=600) as client:
            client.explain(**REQUEST)  # warm-up: both workers loaded, one request through
        rows = [run(session, clients, args.requests) for clients in counts]
    print(f"\n{args.workers} workers, job queue {args.job_queue_size}, {args.requests} explain requests per client")
    headers = ["clients", "requests", "answered", "errors", "answers/s", "p50 s", "p90 s", "p99 s", "refused p50 s"]
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
