"""The PromQL of monitoring/: the Grafana dashboard's queries with its variables filled in, and promtool.

Used by tests/monitoring (``promtool check rules`` on a rules file generated from the dashboard) and
by the end-to-end test (every dashboard query must return data from a real Prometheus).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "ecco-serve.json"
RULE_FILES = (MONITORING / "rules" / "ecco_recording.yml", MONITORING / "rules" / "ecco_alerts.yml")
#: Grafana's built-in variables, as a query with a 5-minute window would expand them
BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


@dataclass(frozen=True)
class DashboardQuery:
    """One PromQL expression of the dashboard: a panel target or a template variable's query."""

    where: str  # "panel 3 'Request rate ...' A" / "variable method"
    record: str  # a recording-rule name for it: dashboard:panel_3_A
    template: str  # as written in the dashboard
    expr: str  # with every variable filled in

    def __str__(self) -> str:
        return f"{self.where}: {self.expr}"


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """What each template variable expands to when "All" is selected (its ``allValue``)."""
    values = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "datasource":
            values[variable["name"]] = "Prometheus"
        else:
            values[variable["name"]] = variable.get("allValue") or ".*"
    return values


def expand(template: str, values: dict[str, str]) -> str:
    """``template`` with ``$name``, ``${name}``, ``${name:fmt}`` and ``[[name]]`` replaced; unknown: KeyError."""

    def one(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"unknown dashboard variable ${name} in {template!r}")
        return values[name]

    return _VARIABLE.sub(one, template)


def _label_values_selector(query: str) -> str | None:
    """The series selector of a ``label_values(selector, label)`` variable query (None: no selector)."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, flags=re.S)
    return match.group(1) if match else None


def dashboard_queries(path: Path = DASHBOARD, *, rate_interval: str = "5m") -> list[DashboardQuery]:
    """Every PromQL expression of the dashboard (panel targets and variable queries), expanded."""
    dashboard = load_dashboard(path)
    values = {**BUILTINS, "__rate_interval": rate_interval, **_variable_values(dashboard)}
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            where = f"panel {panel['id']} {panel['title']!r} {target['refId']}"
            record = f"dashboard:panel_{panel['id']}_{target['refId']}"
            queries.append(DashboardQuery(where, record, target["expr"], expand(target["expr"], values)))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        selector = _label_values_selector(query)
        if selector is not None:
            where = f"variable {variable['name']}"
            queries.append(
                DashboardQuery(where, f"dashboard:variable_{variable['name']}", query, expand(selector, values))
            )
    return queries


def rules_document(queries: list[DashboardQuery]) -> dict[str, Any]:
    """A Prometheus rules file recording every query (for ``promtool check rules``)."""
    rules = [{"record": query.record, "expr": query.expr} for query in queries]
    return {"groups": [{"name": "ecco-serve-dashboard", "rules": rules}]}


def promtool() -> str:
    """The promtool binary; fails with the install hint if it is missing."""
    found = shutil.which("promtool")
    if found is None:
        raise AssertionError("promtool is not installed: run `make monitoring-deps` (Debian's prometheus package)")
    return found


def run_promtool(*args: str | Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False)
