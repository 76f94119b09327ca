"""The validation sweeps' own logic (scripts/preprocessing_sweep.py, int8_calibration_sweep.py):
a setting is patched in and out cleanly, and a gain must beat its paired noise to count."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from product_classifier import preprocessing as pp
from product_classifier.evaluation.metrics import paired_difference

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sweep() -> ModuleType:
    return _script("preprocessing_sweep")


def _photo() -> np.ndarray:
    """A dark item on a light page, larger than 28x28 (so every constant is used)."""
    gray = np.full((300, 260), 245, np.uint8)
    gray[60:240, 70:200] = 40
    gray[100:200, 120:150] = 120
    return gray


def test_the_current_setting_is_what_preprocessing_does(sweep: ModuleType) -> None:
    base = sweep.current()
    assert base["sharpen_amount"] == pp._SHARPEN_AMOUNT
    with sweep.patched(base) as config:
        patched = pp.canonicalize(_photo(), config)
    assert np.array_equal(patched, pp.canonicalize(_photo()))


def test_a_setting_is_undone_after_its_block(sweep: ModuleType) -> None:
    base = sweep.current()
    with sweep.patched({**base, "sharpen_amount": 0.0, "work_scale": 1}) as config:
        unsharpened = pp.canonicalize(_photo(), config)
        assert pp._WORK_SCALE == 1
    assert base["sharpen_amount"] == pp._SHARPEN_AMOUNT and base["work_scale"] == pp._WORK_SCALE
    assert not np.array_equal(unsharpened, pp.canonicalize(_photo()))


def test_paired_difference_counts_only_disagreements() -> None:
    a = np.array([True] * 95 + [False] * 5)
    b = np.array([True] * 90 + [False] * 10)
    diff = paired_difference(a, b)
    assert diff["wins"] == 5 and diff["losses"] == 0
    assert diff["delta_pp"] == pytest.approx(5.0)
    assert 0 < diff["se_pp"] < diff["delta_pp"]
    assert paired_difference(a, a)["se_pp"] == 0.0


def test_int8_rule_keeps_the_released_setting_within_noise() -> None:
    int8 = _script("int8_calibration_sweep")
    row = {"vs_fp32_pp": 0.0, "mean_abs_logit_error": 0.05}
    released = {**row, "agreement": 0.995, "disagrees_with_fp32_at": list(range(30))}
    close = {**row, "agreement": 0.9955, "disagrees_with_fp32_at": list(range(27))}
    far = {**row, "agreement": 0.999, "disagrees_with_fp32_at": list(range(6))}
    keep = int8.decide({int8.RELEASED: released, "other": close}, 6000)
    assert keep["most_faithful"] == "other" and keep["decision"].startswith("keep")
    change = int8.decide({int8.RELEASED: released, "other": far}, 6000)
    assert change["decision"] == "change to other"
    # Outside the accuracy gate a setting cannot win, however faithful.
    gated = int8.decide({int8.RELEASED: released, "other": {**far, "vs_fp32_pp": -0.5}}, 6000)
    assert gated["most_faithful"] == int8.RELEASED
