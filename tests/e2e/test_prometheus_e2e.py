"""A real Prometheus scraping a real TorchServe (two workers) and the handler-metrics exporter.

The module starts its own TorchServe (``tiny`` with two workers, ``tiny-nan`` with one, for server
errors), the metrics exporter and Debian's ``prometheus`` binary on free 127.0.0.1 ports, with the
repository's monitoring/prometheus.yml (targets and a 1 s scrape interval substituted) and its rules.
TorchServe and the exporter are started by ``ecco_serving.server.start(metrics_port=...)``, as
``make serve`` does. It sends a known number of requests, good and bad, over REST and gRPC, then asks Prometheus's HTTP
API: the request counts are exact, the histograms hold every observation, both workers' counts are in
the sum, every dashboard query and every recording rule returns data. Every process it starts is
stopped at the end and checked to be gone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
import yaml
from monitoring_queries import MONITORING, RULE_FILES, dashboard_queries

from ecco_serving.archive import ArchiveSettings, build_archive
from ecco_serving.metrics_exporter import running_exporter
from ecco_serving.server import Ports, config_with_ports, free_ports, metrics_dir, start, stop
from ts_calls import EXPLAIN, GENERATE, Served, grpc_predict, request_message, rest, worker_pids

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LIMITS = {"max_new_tokens": 32, "max_n_steps": 128}
ARCHIVES = {
    "tiny": ArchiveSettings(workers=2, batch_size=1, response_timeout_s=120, limits=LIMITS),
    "tiny-nan": ArchiveSettings(workers=1, batch_size=1, response_timeout_s=120, limits=LIMITS),
}
EXPLAIN_IG = {**EXPLAIN, "attribution": {"methods": ["integrated_gradients"], "n_steps": 8}}
WAIT_S = 60.0


@dataclass(frozen=True)
class Monitored:
    served: Served
    prometheus_url: str
    metrics_dir: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """``GET /api/v1/query``: the instant vector's samples (``{"metric": {...}, "value": [t, "v"]}``)."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=30) as response:
            reply = json.loads(response.read())
        assert reply["status"] == "success", reply
        return reply["data"]["result"]

    def by(self, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
        """Values by ``labels``; zeros left out (each worker creates its model's usual series at zero)."""
        values = {tuple(s["metric"].get(k, "") for k in labels): float(s["value"][1]) for s in self.query(expr)}
        return {key: value for key, value in values.items() if value != 0}

    def scalar(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def wait_for(self, expr: str, expected: float) -> None:
        """Until the query's single value equals ``expected`` (scraped and stored)."""
        deadline = time.monotonic() + WAIT_S
        while (got := self.scalar(expr)) != expected:
            assert time.monotonic() < deadline, f"{expr} = {got} after {WAIT_S:.0f} s, expected {expected}"
            time.sleep(0.5)


def prometheus_config(path: Path, targets: dict[str, str]) -> Path:
    """monitoring/prometheus.yml with ``targets`` ({job: host:port}), 1 s intervals, absolute rule files."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(MONITORING / rule) for rule in config["rule_files"]]
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_prometheus(work: Path, port: int, config: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: run `make monitoring-deps` (Debian's prometheus package)"
    log = (work / "prometheus.log").open("ab")
    process = subprocess.Popen(
        [
            binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        ],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"Prometheus did not start: {(work / 'prometheus.log').read_text()[-2000:]}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, model_dirs) -> Iterator[Monitored]:
    store = tmp_path_factory.mktemp("store-prometheus")
    archives = {name: build_archive(model_dirs[name], store, name, ARCHIVES[name]).name for name in ARCHIVES}
    run_dir = tmp_path_factory.mktemp("run-prometheus")
    ports = free_ports(8)
    config = config_with_ports(REPO / "config.properties", run_dir / "config.properties", Ports(*ports[:6]))
    # start() runs the metrics exporter too and gives TorchServe (so every worker) PROMETHEUS_MULTIPROC_DIR
    server = start(run_dir, config, store, archives, timeout=300, metrics_port=ports[6])
    family = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    prometheus = None
    try:
        exporter = running_exporter(run_dir)
        assert exporter is not None
        family.append(psutil.Process(exporter))
        work = tmp_path_factory.mktemp("prometheus")
        targets = {"torchserve": f"127.0.0.1:{server.ports.metrics}", "ecco-handler": f"127.0.0.1:{ports[6]}"}
        prometheus = start_prometheus(work, ports[7], prometheus_config(work / "prometheus.yml", targets))
        family.append(psutil.Process(prometheus.pid))
        served = Served(server=server, model_dirs=dict(model_dirs), keys=server.keys())
        yield Monitored(served, f"http://127.0.0.1:{ports[7]}", metrics_dir(run_dir))
    finally:
        if prometheus is not None:
            prometheus.terminate()
            try:
                prometheus.wait(30)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait(10)
        stop(run_dir)  # TorchServe and the exporter
        alive = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"processes started by the Prometheus test still running: {alive}"


def _grpc_status(call: Callable[[], bytes]) -> str:
    try:
        call()
    except grpc.RpcError as error:
        return error.code().name
    return "OK"


def send(monitored: Monitored) -> Counter[tuple[str, str, str, str]]:
    """One request of every kind, good and bad; returns {(model, kind, transport, outcome): count}."""
    served = monitored.served
    sent: Counter[tuple[str, str, str, str]] = Counter()

    def rest_call(model: str, kind: str, fields: dict[str, Any] | bytes, status: int) -> None:
        path = "/explanations/" if kind == "explain" else "/predictions/"
        reply = rest(served, path + model, fields)
        assert reply.status == status, reply.body
        sent[model, kind, "rest", "ok" if status == 200 else "server_error" if status >= 500 else "client_error"] += 1

    def grpc_call(kind: str, fields: dict[str, Any], code: str) -> None:
        body = request_message(kind, fields).SerializeToString()
        assert _grpc_status(lambda: grpc_predict(served, "tiny", body)) == code
        # a gRPC request that fails to decode has no kind yet (REST has the URL's)
        sent["tiny", kind if code == "OK" else "unknown", "grpc", "ok" if code == "OK" else "client_error"] += 1

    rest_call("tiny", "generate", GENERATE, 200)
    rest_call("tiny", "explain", EXPLAIN, 200)  # integrated_gradients + grad_x_input
    grpc_call("generate", GENERATE, "OK")
    grpc_call("explain", EXPLAIN_IG, "OK")
    rest_call("tiny", "explain", {"prompt": "x", "attribution": {"methods": ["nope"]}}, 400)
    rest_call("tiny", "generate", {"prompt": "x", "generation": {"max_new_tokens": 33}}, 413)
    grpc_call("explain", {"prompt": "x", "generation": {"max_new_tokens": 0}}, "INVALID_ARGUMENT")
    rest_call("tiny-nan", "generate", {"prompt": "x", "generation": {"max_new_tokens": 2, "do_sample": True}}, 500)
    return sent


def test_prometheus_sees_exact_counts_histograms_and_every_dashboard_query(monitored):
    m = monitored
    m.wait_for('count(up{job=~"torchserve|ecco-handler"} == 1)', 2)
    # round 1, one after the other: every series exists in Prometheus before round 2 adds to it, so
    # rates over the dashboard's windows see increases
    sent = send(m)
    m.wait_for("sum(ecco_requests_total)", sum(sent.values()))
    # round 2: three rounds from three threads, so both workers of "tiny" serve
    with ThreadPoolExecutor(max_workers=3) as pool:
        for more in pool.map(lambda _: send(m), range(3)):
            sent.update(more)
    m.wait_for("sum(ecco_requests_total)", sum(sent.values()))

    counted = m.by(
        "sum by (model, kind, transport, outcome) (ecco_requests_total)", "model", "kind", "transport", "outcome"
    )
    assert counted == {key: float(n) for key, n in sent.items()}
    histogram = m.by(
        "sum by (model, kind, transport, outcome) (ecco_request_duration_seconds_count)",
        "model", "kind", "transport", "outcome",
    )  # fmt: skip
    assert histogram == counted
    infinite = m.by('sum by (kind) (ecco_request_duration_seconds_bucket{le="+Inf"})', "kind")
    assert infinite == m.by("sum by (kind) (ecco_requests_total)", "kind")
    # every explain request that got an answer ran integrated gradients; one in two also grad_x_input
    explained_ok = sum(n for (model, kind, _, outcome), n in sent.items() if kind == "explain" and outcome == "ok")
    stages = m.by(
        'sum by (stage, method) (ecco_stage_duration_seconds_count{kind="explain", model="tiny"})', "stage", "method"
    )
    assert stages["attribution", "integrated_gradients"] == explained_ok
    assert stages["attribution", "grad_x_input"] == explained_ok / 2
    assert stages["generation", ""] >= explained_ok and stages["encoding", ""] == explained_ok
    methods = m.by('sum by (method) (ecco_requests_total{kind="explain", outcome="ok"})', "method")
    assert methods == {
        ("grad_x_input+integrated_gradients",): explained_ok / 2,
        ("integrated_gradients",): explained_ok / 2,
    }
    # the explanation attributes every generated token
    generated = m.scalar('sum(ecco_generated_tokens_total{kind="explain"})')
    assert generated > 0 and m.scalar('sum(ecco_explained_tokens_total{method="integrated_gradients"})') == generated
    errors = m.by("sum by (status) (ecco_errors_total)", "status")
    per_round = {"400": 2, "413": 1, "500": 1}
    assert errors == {(status,): 4.0 * n for status, n in per_round.items()}
    assert m.scalar("sum(ecco_requests_in_flight)") == 0

    # both workers of "tiny" served, and the exported sum is over both
    workers = worker_pids(m.served, "tiny")
    files = {int(path.stem.rsplit("_", 1)[1]) for path in m.metrics_dir.glob("counter_*.db")}
    assert set(workers) <= files, f"worker pids {workers}, metric files of {sorted(files)}"

    # TorchServe's own frontend metrics are scraped too
    assert m.scalar('sum(ts_inference_requests_total{model_name="tiny"})') > 0

    # every dashboard query returns data, the explain latency quantile a real number of seconds
    queries = dashboard_queries(rate_interval="5m")
    empty = [str(q) for q in queries if not m.query(q.expr)]
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
    p95 = m.by(next(q.expr for q in queries if q.record == "dashboard:panel_1_B"), "method")
    for method in ("integrated_gradients", "grad_x_input+integrated_gradients"):  # the methods sent
        assert 0 < p95[method,] < 120, p95

    # the recording rules produce data (Prometheus evaluates them every second here)
    records = [
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]
    deadline = time.monotonic() + WAIT_S
    while missing := [record for record in records if not m.query(record)]:
        assert time.monotonic() < deadline, f"recording rules without data: {missing}"
        time.sleep(1)

    # the server-error ratio of the model that only fails: NaN (0/0) until the rule's rate() window
    # holds two scrapes after the errors, then positive
    def tiny_nan_error_ratio() -> float:
        return m.by("model:ecco_request_errors:ratio_rate5m", "model").get(("tiny-nan",), float("nan"))

    while not tiny_nan_error_ratio() > 0:
        assert time.monotonic() < deadline, f"error ratio of tiny-nan: {tiny_nan_error_ratio()}"
        time.sleep(1)
