"""The monitoring config passes Prometheus' and Alertmanager's own checkers and unit tests.

Needs ``promtool`` (and ``amtool`` for the Alertmanager config): Debian packages
``prometheus`` and ``prometheus-alertmanager``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yaml"))

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)")
    return path


def _run(*cmd: str | Path, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_there_is_something_to_check() -> None:
    assert len(RULE_FILES) >= 2 and len(TEST_FILES) >= 3


def test_rules_are_valid() -> None:
    result = _run(_tool("promtool"), "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = _run(_tool("promtool"), "test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES)


def test_rule_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The promtool tests are not vacuous: a p95 alert at 400 ms instead of 300 ms fails them."""
    promtool = _tool("promtool")
    rules = tmp_path / "rules"
    tests = tmp_path / "tests"
    shutil.copytree(PROMETHEUS_DIR / "rules", rules)
    shutil.copytree(PROMETHEUS_DIR / "tests", tests)
    alerts = rules / "product-classifier.alerts.yml"
    text = alerts.read_text()
    assert text.count("job:http_request_duration_seconds:p95_5m > 0.3") == 1
    alerts.write_text(text.replace("p95_5m > 0.3", "p95_5m > 0.4"))
    result = _run(promtool, "test", "rules", "sla_test.yaml", cwd=tests)
    assert result.returncode != 0
    assert "ProductClassifierLatencyP95High" in result.stdout + result.stderr


def test_prometheus_config_is_valid() -> None:
    # Also checks that rule_files resolves to the rules, relative to the config file.
    result = _run(_tool("promtool"), "check", "config", PROMETHEUS_DIR / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout


def test_alertmanager_config_is_valid() -> None:
    result = _run(_tool("amtool"), "check-config", MONITORING / "alertmanager" / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
