"""Execution-provider choice: TensorRT -> CUDA -> CPU, whatever the onnxruntime build has.

The test machine has a CPU-only onnxruntime, so GPU builds are simulated by patching what the
predictor believes is available; onnxruntime itself then really refuses the GPU providers, which
is the "listed but cannot initialise" case (e.g. CUDA libraries missing on the host).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from product_classifier.inference import predictor as predictor_module
from product_classifier.inference.contract_model import build_contract_model
from product_classifier.inference.predictor import (
    CPU_PROVIDER,
    PREFERRED_PROVIDERS,
    OnnxPredictor,
    PredictorOptions,
    _session_options,
    resolve_providers,
)
from product_classifier.serving.settings import load_settings

TRT, CUDA = "TensorrtExecutionProvider", "CUDAExecutionProvider"
LOGGER = "product_classifier.inference.predictor"


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return build_contract_model(tmp_path / "model.onnx", seed=1)


def _pretend_available(monkeypatch: pytest.MonkeyPatch, names: list[str]) -> None:
    monkeypatch.setattr(predictor_module.ort, "get_available_providers", lambda: list(names))


@pytest.fixture
def session_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the providers handed to onnxruntime; the real session still gets built."""
    calls: list[list[str]] = []
    real = ort.InferenceSession

    def spy(path: str, sess_options: Any = None, providers: Any = None, **kw: Any) -> Any:
        calls.append(list(providers))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # onnxruntime warns about the simulated providers
            return real(path, sess_options=sess_options, providers=providers, **kw)

    monkeypatch.setattr(predictor_module.ort, "InferenceSession", spy)
    return calls


def test_preference_order_is_tensorrt_cuda_cpu() -> None:
    assert PREFERRED_PROVIDERS == (TRT, CUDA, CPU_PROVIDER)


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        ([CPU_PROVIDER, CUDA, TRT], [TRT, CUDA, CPU_PROVIDER]),  # build order does not matter
        ([CUDA, CPU_PROVIDER], [CUDA, CPU_PROVIDER]),
        ([TRT, CPU_PROVIDER], [TRT, CPU_PROVIDER]),
        ([CPU_PROVIDER], [CPU_PROVIDER]),
        (["AzureExecutionProvider", CPU_PROVIDER], [CPU_PROVIDER]),
    ],
)
def test_automatic_choice_takes_the_best_available(
    monkeypatch: pytest.MonkeyPatch, available: list[str], expected: list[str]
) -> None:
    _pretend_available(monkeypatch, available)
    assert resolve_providers(None) == expected


def test_explicit_request_keeps_its_order_drops_duplicates_and_ends_with_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _pretend_available(monkeypatch, [TRT, CUDA, CPU_PROVIDER])
    assert resolve_providers([CUDA, TRT, CUDA]) == [CUDA, TRT, CPU_PROVIDER]
    assert resolve_providers([CPU_PROVIDER]) == [CPU_PROVIDER]  # CPU-only stays CPU-only


def test_missing_explicit_providers_warn_and_fall_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _pretend_available(monkeypatch, [CPU_PROVIDER])
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert resolve_providers([TRT, CUDA]) == [CPU_PROVIDER]
    warnings_ = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_) == 1 and TRT in warnings_[0] and CUDA in warnings_[0]


def test_predictor_hands_the_full_chain_to_onnxruntime_and_runs_on_what_works(
    monkeypatch: pytest.MonkeyPatch,
    model_path: Path,
    session_calls: list[list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime build really has CUDA")
    _pretend_available(monkeypatch, [TRT, CUDA, CPU_PROVIDER])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        predictor = OnnxPredictor(model_path)
    assert session_calls == [[TRT, CUDA, CPU_PROVIDER]]
    # onnxruntime could not initialise the GPU providers: CPU serves, and it is logged.
    assert predictor.providers == (CPU_PROVIDER,)
    assert any("could not initialise" in r.getMessage() for r in caplog.records)
    logits = predictor.predict_logits(np.zeros((2, 1, 28, 28), dtype=np.float32))
    assert logits.shape == (2, 10)
    assert predictor.runtime_info()["providers"] == [CPU_PROVIDER]


def test_cpu_only_request_never_tries_gpu_providers(
    monkeypatch: pytest.MonkeyPatch, model_path: Path, session_calls: list[list[str]]
) -> None:
    _pretend_available(monkeypatch, [TRT, CUDA, CPU_PROVIDER])
    OnnxPredictor(model_path, PredictorOptions(providers=(CPU_PROVIDER,)))
    assert session_calls == [[CPU_PROVIDER]]


def test_settings_aliases_reach_the_predictor_as_provider_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRODUCT_CLASSIFIER_PROVIDERS", "trt, cuda, cpu")
    settings = load_settings()
    assert settings.providers == [TRT, CUDA, CPU_PROVIDER]
    _pretend_available(monkeypatch, [CUDA, CPU_PROVIDER])
    assert resolve_providers(settings.providers) == [CUDA, CPU_PROVIDER]


def test_session_defaults_chosen_by_measurement() -> None:
    """Defaults from docs/benchmarks.md: one intra-op thread, sequential, no spinning."""
    options = PredictorOptions()
    assert (options.intra_op_threads, options.inter_op_threads) == (1, 1)
    assert options.execution_mode == "sequential" and options.graph_optimization == "all"
    so = _session_options(options)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    spinning = _session_options(PredictorOptions(allow_spinning=True))
    assert spinning.get_session_config_entry("session.intra_op.allow_spinning") == "1"
