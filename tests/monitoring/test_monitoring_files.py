"""monitoring/: the Prometheus config, the rules and their promtool tests, the Grafana dashboard.

Every PromQL expression of the dashboard is checked by ``promtool check rules`` on a rules file
generated from it, and every metric any of them reads is one the handler or TorchServe exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from monitoring_queries import DASHBOARD, MONITORING, RULE_FILES, dashboard_queries, load_dashboard, rules_document
from monitoring_queries import run_promtool as promtool
from prometheus_client import CollectorRegistry

from ecco_serving.metrics import EccoMetrics

#: TorchServe 0.12's frontend metrics the dashboard may read (metrics_mode=prometheus; measured)
TORCHSERVE_METRICS = {
    "ts_inference_requests_total", "ts_inference_latency_microseconds", "ts_queue_latency_microseconds",
    "QueueTime", "WorkerThreadTime", "PredictionTime", "Requests2XX", "Requests4XX", "Requests5XX",
}  # fmt: skip
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "or", "vector", "absent", "le", "round", "max",
    "without", "on", "ignoring", "label_values", "and", "unless", "avg", "min", "count",
}  # fmt: skip


def exported_names() -> set[str]:
    """Every series name the handler's metrics produce (``_bucket``/``_sum``/``_count``/``_total``)."""
    names = set()
    for metric in vars(EccoMetrics(CollectorRegistry())).values():
        for family in metric.describe():
            names |= {
                "histogram": {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"},
                "counter": {f"{family.name}_total"},
                "gauge": {family.name},
            }[family.type]
    return names


def metric_names(expr: str) -> set[str]:
    """Identifiers of ``expr`` that name series (label names, functions and keywords removed)."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    words = set(re.findall(r"\b[A-Za-z_:][\w:]*\b", expr))
    return {w for w in words if w not in PROMQL_WORDS and not re.fullmatch(r"\d+(e\d+)?|e\d+", w)}


def test_prometheus_config_is_valid():
    result = promtool("check", "config", MONITORING / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert jobs == {"torchserve": ["127.0.0.1:8082"], "ecco-handler": ["127.0.0.1:8083"]}


def test_rules_are_valid_and_their_unit_tests_pass():
    checked = promtool("check", "rules", *RULE_FILES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = sorted((MONITORING / "tests").glob("*.yml"))
    assert tests
    result = promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_read_only_exported_metrics():
    recorded = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                unknown = metric_names(rule["expr"]) - exported_names() - recorded - {"up"}
                assert not unknown, f"{path.name} {rule.get('record') or rule.get('alert')}: {unknown}"
                recorded.add(rule.get("record", ""))


def test_every_dashboard_query_is_valid_promql(tmp_path):
    queries = dashboard_queries()
    assert len(queries) >= 12
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text(yaml.safe_dump(rules_document(queries), sort_keys=False))
    result = promtool("check", "rules", rules)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_dashboard_queries_read_only_exported_metrics():
    for query in dashboard_queries():
        unknown = metric_names(query.expr) - exported_names() - TORCHSERVE_METRICS
        assert not unknown, f"{query.where}: {unknown}"


def test_dashboard_is_importable_grafana_json():
    """Schema-level checks of what Grafana needs to import and provision the dashboard."""
    dashboard = load_dashboard()
    assert dashboard["uid"] == "ecco-serve" and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    assert "id" not in dashboard or dashboard["id"] is None  # an id would clash with another Grafana's
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == "Prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["type"] == "timeseries" and panel["title"] and panel["description"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        cover = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cover & cells, f"panel {panel['title']!r} overlaps another"
        cells |= cover
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] and target["expr"].strip()
    json.dumps(dashboard)  # plain JSON all the way down


@pytest.mark.parametrize("question", [
    "explain latency quantiles by method", "request rate", "error ratio", "tokens explained",
    "in-flight", "per-stage latency", "TorchServe queue time",
])  # fmt: skip
def test_dashboard_answers(question):
    """The panels the issue asks for, each found by the metric it must read."""
    needs = {
        "explain latency quantiles by method": r"histogram_quantile\(0\.95, sum by \(method, le\).*kind=\"explain\"",
        "request rate": r"rate\(ecco_requests_total",
        "error ratio": r"outcome=\"server_error\".*/ sum\(rate\(ecco_requests_total",
        "tokens explained": r"rate\(ecco_explained_tokens_total",
        "in-flight": r"ecco_requests_in_flight",
        "per-stage latency": r"ecco_stage_duration_seconds_sum.*/.*ecco_stage_duration_seconds_count",
        "TorchServe queue time": r"rate\(ts_queue_latency_microseconds.*/.*ts_inference_requests_total",
    }[question]
    assert any(re.search(needs, query.template) for query in dashboard_queries()), question


def test_grafana_provisioning_names_the_datasource_prometheus():
    provisioning = MONITORING / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert sources["apiVersion"] == 1
    assert [(s["name"], s["type"]) for s in sources["datasources"]] == [("Prometheus", "prometheus")]
    dashboards = yaml.safe_load((provisioning / "dashboards" / "ecco-serve.yml").read_text())
    provider = dashboards["providers"][0]
    assert provider["type"] == "file" and Path(provider["options"]["path"]).is_absolute()
    assert DASHBOARD.name == "ecco-serve.json"
