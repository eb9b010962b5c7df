"""Several worker processes, one exporter: what Prometheus scrapes is the sum over all workers.

Real processes (as TorchServe's workers are): each "worker" is a Python process with
PROMETHEUS_MULTIPROC_DIR set that records requests through ecco_serving.metrics; the exporter is
started and stopped with the helpers ``make serve`` uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ecco_serving.metrics import MULTIPROC_ENV
from ecco_serving.metrics_exporter import running_exporter, start_exporter, stop_exporter
from ecco_serving.server import free_ports

HANDLERS = Path(__file__).resolve().parents[2] / "handlers"
WORKER = textwrap.dedent("""
    import sys, time
    from ecco_serving.metrics import observe_request
    ok, failed, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "hold"
    for _ in range(ok):
        with observe_request("tiny", "explain", "integrated_gradients", "rest") as request:
            request.observe_stage("attribution", 2.0, method="")
            request.count_generated(3)
    for _ in range(failed):
        try:
            with observe_request("tiny", "generate", "none", "grpc", status_of=lambda error: 400):
                raise ValueError("bad request")
        except ValueError:
            pass
    if hold:  # a request in flight until killed
        with observe_request("tiny", "explain", "integrated_gradients", "grpc"):
            print("holding", flush=True)
            time.sleep(600)
""")


def worker(directory: Path, ok: int, failed: int, hold: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, MULTIPROC_ENV: str(directory), "PYTHONPATH": str(HANDLERS)}
    args = [sys.executable, "-c", WORKER, str(ok), str(failed), "hold" if hold else "done"]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


@pytest.fixture
def exporter(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"stale file of an earlier run")
    started = start_exporter(run_dir, free_ports(1)[0], directory)
    try:
        yield started, run_dir
    finally:
        stop_exporter(run_dir)


def test_counts_from_all_workers_add_up(exporter):
    started, run_dir = exporter
    assert not (started.directory / "counter_1.db").exists()  # cleaned at start
    first, second = worker(started.directory, 3, 1), worker(started.directory, 5, 2)
    holding = worker(started.directory, 0, 0, hold=True)
    try:
        assert first.wait(60) == 0 and second.wait(60) == 0
        assert holding.stdout is not None and holding.stdout.readline().strip() == "holding"
        samples = scrape(started.url)
        ok = {
            "model": "tiny",
            "kind": "explain",
            "method": "integrated_gradients",
            "transport": "rest",
            "outcome": "ok",
        }
        assert total(samples, "ecco_requests_total", **ok) == 8
        assert total(samples, "ecco_request_duration_seconds_count", **ok) == 8
        assert total(samples, "ecco_request_duration_seconds_bucket", **ok, le="+Inf") == 8
        assert total(samples, "ecco_stage_duration_seconds_bucket", stage="attribution", le="2.5") == 8
        assert total(samples, "ecco_stage_duration_seconds_bucket", stage="attribution", le="1.0") == 0
        assert total(samples, "ecco_generated_tokens_total", kind="explain") == 24
        assert total(samples, "ecco_requests_total", outcome="client_error", transport="grpc") == 3
        assert total(samples, "ecco_errors_total", error="ValueError", status="400") == 3
        assert total(samples, "ecco_requests_in_flight", transport="grpc") == 1  # live sum: only the holder
        pids = {path.stem.rsplit("_", 1)[1] for path in started.directory.glob("counter_*.db")}
        assert pids == {str(first.pid), str(second.pid)}  # one file per worker, summed by the exporter
    finally:
        holding.kill()
        holding.wait(30)
    samples = scrape(started.url)
    assert total(samples, "ecco_requests_in_flight", transport="grpc") == 0  # the dead worker's gauge is gone
    assert total(samples, "ecco_requests_total") == 11  # counters of finished workers stay
    assert running_exporter(run_dir) == started.pid


def test_stop_exporter_stops_it(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    started = start_exporter(run_dir, free_ports(1)[0], tmp_path / "metrics")
    assert stop_exporter(run_dir)
    deadline = time.monotonic() + 10
    while running_exporter(run_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running_exporter(run_dir) is None
    with pytest.raises(OSError):
        urllib.request.urlopen(started.url, timeout=2)
    assert not stop_exporter(run_dir)
