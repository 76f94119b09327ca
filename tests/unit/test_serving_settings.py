"""ServeSettings: env vars, defaults and clear startup errors; the serve CLI's exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from product_classifier.cli.main import app as cli_app
from product_classifier.released import RELEASE_DIR
from product_classifier.serving.settings import ServeSettings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("PRODUCT_CLASSIFIER_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = load_settings()
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 8000, 0)  # 0: one per core
    # The released files through the package (released.py), whatever the working directory.
    assert s.model_path == RELEASE_DIR / "model.int8.onnx"  # INT8 behind the cascade's student
    assert s.model_path.is_absolute() and s.model_path.is_file()
    assert s.card_path == RELEASE_DIR / "model_card.json"
    assert s.verify_sha256 is True
    assert s.review_threshold is None  # the model card's review policy (inference/review.py)
    assert s.max_upload_bytes == 10 * 1024 * 1024
    assert s.max_pixels == 4096 * 4096  # a 16 MP photo (docs/security.md)
    assert s.max_batch_files == 64
    assert (s.max_batch_size, s.max_wait_ms, s.queue_size) == (32, 0.0, 1024)
    assert (s.inference_timeout_s, s.max_in_flight) == (10.0, 128)
    assert s.intra_op_threads == 1
    assert s.providers == [] and s.cors_origins == []


def test_env_vars_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCT_CLASSIFIER_PORT", "9001")
    monkeypatch.setenv("PRODUCT_CLASSIFIER_MODEL_PATH", "/models/m.onnx")
    monkeypatch.setenv("PRODUCT_CLASSIFIER_VERIFY_SHA256", "false")
    monkeypatch.setenv("PRODUCT_CLASSIFIER_PROVIDERS", "cuda, CPUExecutionProvider")
    monkeypatch.setenv("PRODUCT_CLASSIFIER_CORS_ORIGINS", '["https://shop.example"]')
    monkeypatch.setenv("PRODUCT_CLASSIFIER_LOG_LEVEL", "WARNING")
    s = load_settings()
    assert s.port == 9001
    assert s.card_path == Path("/models/model_card.json")  # follows the model
    assert s.verify_sha256 is False
    assert s.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert s.cors_origins == ["https://shop.example"]
    assert s.log_level == "warning"


def test_overrides_beat_env_and_none_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCT_CLASSIFIER_PORT", "9001")
    assert load_settings(port=9002).port == 9002
    assert load_settings(port=None).port == 9001


def test_explicit_card_path_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCT_CLASSIFIER_MODEL_CARD_PATH", "/cards/c.json")
    assert load_settings().card_path == Path("/cards/c.json")


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("PORT", "70000", "PRODUCT_CLASSIFIER_PORT (port)='70000': Input should be less"),
        ("PORT", "http", "PRODUCT_CLASSIFIER_PORT"),
        ("REVIEW_THRESHOLD", "1.5", "PRODUCT_CLASSIFIER_REVIEW_THRESHOLD"),
        ("MAX_UPLOAD_BYTES", "0", "PRODUCT_CLASSIFIER_MAX_UPLOAD_BYTES"),
        ("PROVIDERS", "cuda,quantum", "unknown onnxruntime provider(s) ['quantum']"),
        ("PROVIDERS", "[broken", "PRODUCT_CLASSIFIER_PROVIDERS"),
        ("LOG_LEVEL", "loud", "PRODUCT_CLASSIFIER_LOG_LEVEL"),
        ("VERIFY_SHA256", "maybe", "PRODUCT_CLASSIFIER_VERIFY_SHA256"),
        ("QUEUE_SIZE", "8", "PRODUCT_CLASSIFIER_QUEUE_SIZE=8 must be >= "),
        ("INFERENCE_TIMEOUT_S", "0", "PRODUCT_CLASSIFIER_INFERENCE_TIMEOUT_S (inference_timeout"),
        ("MAX_IN_FLIGHT", "0", "PRODUCT_CLASSIFIER_MAX_IN_FLIGHT (max_in_flight)='0'"),
    ],
)
def test_invalid_values_name_the_variable_and_reason(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(f"PRODUCT_CLASSIFIER_{env}", value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("invalid service settings: ")
    assert expected in message
    assert "\n" not in message  # one paragraph for the operator


def test_several_problems_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCT_CLASSIFIER_PORT", "0")
    monkeypatch.setenv("PRODUCT_CLASSIFIER_WORKERS", "-1")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "PRODUCT_CLASSIFIER_PORT" in str(info.value)
    assert "PRODUCT_CLASSIFIER_WORKERS" in str(info.value)


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(SettingsError, match="'prot' is not a setting"):
        load_settings(prot=1)


def test_unrelated_prefixed_env_vars_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other stages use the same prefix (e.g. the data directory); serving must not choke on it.
    monkeypatch.setenv("PRODUCT_CLASSIFIER_DATA_DIR", "/data")
    assert isinstance(load_settings(), ServeSettings)


# -- CLI ------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_bad_setting_exits_2_with_one_paragraph(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCT_CLASSIFIER_REVIEW_THRESHOLD", "2")
    result = runner.invoke(cli_app, ["serve", "--port", "99999"])
    assert result.exit_code == 2
    assert "PRODUCT_CLASSIFIER_PORT" in result.output
    assert "PRODUCT_CLASSIFIER_REVIEW_THRESHOLD" in result.output
    assert "Traceback" not in result.output


def test_cli_missing_model_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(cli_app, ["serve", "--model", str(tmp_path / "none.onnx")])
    assert result.exit_code == 2
    assert "model file not found" in result.output
    assert "Traceback" not in result.output


def test_cli_sha256_mismatch_exits_2_with_a_hint(tmp_path: Path) -> None:
    from product_classifier.inference.contract_model import build_contract_model, write_model_card

    model = build_contract_model(tmp_path / "model.onnx")
    write_model_card(model, sha256="f" * 64)
    result = runner.invoke(cli_app, ["serve", "--model", str(model)])
    assert result.exit_code == 2
    assert "sha256" in result.output
    assert "PRODUCT_CLASSIFIER_VERIFY_SHA256=false" in result.output
