"""The Grafana dashboard and provisioning: structure, SLA lines, and honest PromQL.

Every metric a dashboard panel or a Prometheus rule names must be one the running service really
exports (scraped here from a live /metrics) or a recording rule defined in the rule files; a typo
would otherwise show an empty panel or an alert that can never fire. Syntax is checked with
``promtool`` when it is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from live_server import LiveServer, png_bytes
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[2]
GRAFANA = REPO_ROOT / "monitoring" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "product-classifier.json"
RULES_DIR = REPO_ROOT / "monitoring" / "prometheus" / "rules"
# Grafana's template variables, replaced by something Prometheus accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
# Series Prometheus makes itself.
PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE"}

pytestmark = pytest.mark.integration

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on"}
_KEYWORDS |= {"ignoring", "group_left", "group_right"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", flags=re.IGNORECASE
)
_NUMBER = re.compile(r"(?<![\w:.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (functions, keywords, labels, durations dropped)."""
    text = _STRING.sub(" ", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, subqueries
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        name = match.group()
        if rest.startswith("(") or name.lower() in _KEYWORDS or name.startswith("$"):
            continue  # a function or an aggregation, a keyword, a Grafana variable
        names.add(name)
    return names


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (le, route) (rate(http_request_duration_seconds_bucket{job="x", route=~"/v1/.+"}'
        "[$__rate_interval])) / on (instance) group_left max by (instance) (service_cpu_cores)"
        " > 2 * 1e9 and job:http_requests:rate5m offset 5m"
    )
    assert metric_names(expr) == {
        "http_request_duration_seconds_bucket",
        "service_cpu_cores",
        "job:http_requests:rate5m",
    }
    assert metric_names('histogram_quantile(0.95, sum(rate(a_bucket{l="by (x)"}[5m])))') == {
        "a_bucket"
    }


def load_dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # collapsed rows hold their panels
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in panels(load_dashboard())
        for target in panel.get("targets", [])
    ]


def rule_exprs() -> list[tuple[str, str]]:
    out = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [(rule.get("record") or rule["alert"], rule["expr"]) for rule in group["rules"]]
    return out


def recorded_names() -> set[str]:
    return {name for name, _ in rule_exprs() if ":" in name}


# -- structure ------------------------------------------------------------------------------------


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "product-classifier" and dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    all_panels = panels(dashboard)
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in all_panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"])


def test_datasource_is_the_provisioned_one() -> None:
    provisioning = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (datasource,) = provisioning["datasources"]
    assert datasource["type"] == "prometheus"
    for panel in panels(load_dashboard()):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"]


def test_dashboard_provider_points_at_a_folder() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "product-classifier.yml").read_text()
    )["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


def test_latency_panel_draws_both_sla_lines() -> None:
    (panel,) = [p for p in panels(load_dashboard()) if p["title"].startswith("API latency vs SLA")]
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert {step["value"] for step in defaults["thresholds"]["steps"]} >= {0.2, 0.3}
    assert defaults["unit"] == "s"
    names = set().union(*(metric_names(t["expr"]) for t in panel["targets"]))
    assert {
        "job:http_request_duration_seconds:p95_5m",
        "job:http_request_duration_seconds:mean5m",
    } <= names


def test_dashboard_covers_red_resources_and_predictions() -> None:
    names = set().union(*(metric_names(expr) for _, expr in dashboard_exprs()))
    for needed in (
        "http_requests_total",  # rate and errors
        "job:http_request_errors:ratio_rate5m",
        "http_request_duration_seconds_bucket",  # duration
        "instance:service_cpu_utilization:ratio_rate5m",
        "instance:process_resident_memory_bytes:sum",
        "job_category:predictions:rate5m",
        "prediction_confidence_bucket",
        "job:needs_review:ratio_rate15m",
        "model_info",
    ):
        assert needed in names, needed


# -- PromQL against the real service --------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(server: LiveServer) -> set[str]:
    """Sample names on a live /metrics after some traffic (histogram _bucket/_sum/_count too)."""
    client = server.client()
    png = png_bytes(np.full((28, 28), 128, dtype=np.uint8))
    assert client.post("/v1/predict", files={"file": ("a.png", png)}).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        sample.name
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_service_exports_what_the_runbook_promises(exported: set[str]) -> None:
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "inference_duration_seconds_bucket",
        "inference_batch_size_bucket",
        "predictions_total",
        "prediction_confidence_bucket",
        "needs_review_total",
        "model_info",
        "service_ready",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "service_cpu_cores",
    ):
        assert name in exported


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_promql_names_only_real_metrics(source: str, exported: set[str]) -> None:
    exprs = dashboard_exprs() if source == "dashboard" else rule_exprs()
    known = exported | recorded_names() | PROMETHEUS_OWN
    unknown = {f"{where}: {name}" for where, expr in exprs for name in metric_names(expr) - known}
    assert not unknown, sorted(unknown)


def test_dashboard_promql_is_valid(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    rules = []
    for i, (_, expr) in enumerate(dashboard_exprs()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:panel:expr{i}", "expr": expr})
    path = tmp_path / "dashboard.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
