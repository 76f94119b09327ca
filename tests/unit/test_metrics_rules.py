"""Alert rules, their promtool tests and the runbook stay in step (no binaries needed).

promtool itself runs in tests/integration/test_promtool.py; PromQL names are checked against a
live /metrics in tests/integration/test_grafana_dashboard.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = REPO_ROOT / "monitoring" / "prometheus" / "rules"
TESTS_DIR = REPO_ROOT / "monitoring" / "prometheus" / "tests"
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"


def _rules(kind: str) -> list[dict[str, Any]]:
    out = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            out += [rule for rule in group["rules"] if kind in rule]
    return out


ALERTS = {rule["alert"]: rule for rule in _rules("alert")}
RECORDS = {rule["record"]: rule for rule in _rules("record")}


def _tested_alerts() -> tuple[set[str], set[str]]:
    """Alert names with a firing case and with a quiet case in the promtool tests."""
    firing, quiet = set(), set()
    for path in TESTS_DIR.glob("*.yaml"):
        spec = yaml.safe_load(path.read_text())
        for case in spec["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    return firing, quiet


def test_the_alerts_the_sla_asks_for_exist() -> None:
    expected = {
        "ProductClassifierInstanceDown",
        "ProductClassifierNotReady",
        "ProductClassifierLatencyP95High",
        "ProductClassifierLatencyMeanHigh",
        "ProductClassifierErrorBudgetBurnFast",
        "ProductClassifierErrorBudgetBurnSlow",
        "ProductClassifierCPUHigh",
        "ProductClassifierMemoryHigh",
        "ProductClassifierCategoryShift",
        "ProductClassifierNeedsReviewSpike",
    }
    assert expected <= set(ALERTS)


@pytest.mark.parametrize(
    ("alert", "threshold"),
    [
        ("ProductClassifierLatencyP95High", "job:http_request_duration_seconds:p95_5m > 0.3"),
        ("ProductClassifierLatencyMeanHigh", "job:http_request_duration_seconds:mean5m > 0.2"),
        ("ProductClassifierCPUHigh", "instance:service_cpu_utilization:ratio_rate5m > 0.7"),
        ("ProductClassifierMemoryHigh", "> 2 * 1024 * 1024 * 1024"),
        ("ProductClassifierErrorBudgetBurnFast", "ratio_rate1h > (14.4 * 0.01)"),
        ("ProductClassifierErrorBudgetBurnSlow", "ratio_rate3d > (1 * 0.01)"),
    ],
)
def test_sla_thresholds(alert: str, threshold: str) -> None:
    assert threshold in ALERTS[alert]["expr"]


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_is_complete(name: str) -> None:
    rule = ALERTS[name]
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
    assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{name.lower()}"


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_has_a_runbook_section(name: str) -> None:
    headings = re.findall(r"^## (\S+)\s*$", RUNBOOK.read_text(), flags=re.M)
    assert name in headings
    section = RUNBOOK.read_text().split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
    assert "**Meaning.**" in section and "**Do.**" in section


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_has_a_firing_and_a_quiet_promtool_case(name: str) -> None:
    firing, quiet = _tested_alerts()
    assert name in firing
    assert name in quiet


def test_alerts_use_only_defined_recording_rules() -> None:
    for name, rule in ALERTS.items():
        for used in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", rule["expr"]):
            assert used in RECORDS, f"{name} uses undefined {used}"


def test_recording_rules_select_the_service_job() -> None:
    for name, rule in RECORDS.items():
        selectors = re.findall(r"\{[^}]*\}", rule["expr"])
        assert selectors, name
        assert all('job="product-classifier"' in s for s in selectors), name


def test_promtool_tests_evaluate_recording_rules_before_alerts() -> None:
    """Without group_eval_order promtool evaluates groups in random order, and an alert could
    read the previous step's recorded value (or none): flaky tests."""
    groups = []
    for path in sorted(RULES_DIR.glob("*.yml"), key=lambda p: "alerts" in p.name):
        groups += [group["name"] for group in yaml.safe_load(path.read_text())["groups"]]
    assert len(groups) == len(set(groups)), "group names must be unique across files"
    for path in TESTS_DIR.glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["group_eval_order"] == groups, path.name
