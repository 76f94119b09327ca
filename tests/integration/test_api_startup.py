"""Starting and stopping real server processes: refusals, dev mode, graceful shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from live_server import REPO_ROOT, clean_env, make_contract_model

from product_classifier.inference.contract_model import write_model_card

if TYPE_CHECKING:
    from live_server import LiveServer

pytestmark = pytest.mark.integration


def test_tampered_model_is_refused_even_without_the_cli(
    server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    """Plain uvicorn (no CLI pre-flight): the lifespan itself refuses to start."""
    model = make_contract_model(tmp_path)
    write_model_card(model, sha256="ab" * 32)
    live = server_factory(model, via="uvicorn", ready=False)
    assert live.wait_exit(timeout=60) != 0
    log = live.log()
    assert "cannot start" in log and "sha256" in log


def test_cli_refuses_a_tampered_model_with_exit_code_2(tmp_path: Path) -> None:
    model = make_contract_model(tmp_path)
    model.write_bytes(model.read_bytes() + b"\0")  # card still holds the old hash
    result = subprocess.run(
        [sys.executable, "-m", "product_classifier.cli.main", "serve", "--model", str(model)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=clean_env(),
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to serve" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_env_setting_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "product_classifier.cli.main", "serve"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=clean_env({"PRODUCT_CLASSIFIER_MAX_BATCH_SIZE": "zero"}),
        timeout=60,
    )
    assert result.returncode == 2
    assert "PRODUCT_CLASSIFIER_MAX_BATCH_SIZE" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_mode_serves_an_unverified_model(
    server_factory: Callable[..., LiveServer], tmp_path: Path
) -> None:
    model = make_contract_model(tmp_path)
    write_model_card(model, sha256="cd" * 32)
    live = server_factory(model, {"PRODUCT_CLASSIFIER_VERIFY_SHA256": "false"})
    runtime = live.client().get("/v1/model").json()["runtime"]
    assert runtime["sha256_verified"] is False
    assert "verification is OFF" in live.log()


def test_env_settings_reach_the_server(
    server_factory: Callable[..., LiveServer], contract_model: Path
) -> None:
    live = server_factory(
        contract_model,
        {"PRODUCT_CLASSIFIER_MAX_BATCH_SIZE": "8", "PRODUCT_CLASSIFIER_REVIEW_THRESHOLD": "0.25"},
        via="uvicorn",
    )
    runtime = live.client().get("/v1/model").json()["runtime"]
    assert runtime["batching"]["max_batch_size"] == 8
    assert runtime["review_threshold"] == 0.25


def test_sigterm_shuts_down_cleanly(
    server_factory: Callable[..., LiveServer], contract_model: Path
) -> None:
    live = server_factory(contract_model)
    assert live.client().get("/ready").status_code == 200
    live.process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal (exit status -15) by convention.
    assert live.wait_exit(timeout=30) in (0, -signal.SIGTERM)
    log = live.log()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
