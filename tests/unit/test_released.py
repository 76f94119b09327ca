"""released.py: the released files are found through the package, whatever the working folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from product_classifier.inference.errors import ModelLoadError
from product_classifier.inference.model_card import check_model_files, load_model_card
from product_classifier.released import RELEASE_DIR, served_files
from product_classifier.serving.settings import load_settings


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("PRODUCT_CLASSIFIER_"):
            monkeypatch.delenv(key)


def test_the_defaults_do_not_depend_on_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.model_path.is_file() and settings.card_path.is_file()
    assert RELEASE_DIR.resolve() == (Path(__file__).parents[2] / "artifacts").resolve()


def test_the_cascade_loads_the_cards_first_stage_too() -> None:
    card = load_model_card(RELEASE_DIR / "model_card.json")
    first = RELEASE_DIR / card["cascade"]["first"]["file"]
    assert first in served_files(load_settings(model_variant="cascade"))
    assert first not in served_files(load_settings(model_variant="int8"))


def test_a_missing_released_file_says_where_it_looked() -> None:
    with pytest.raises(ModelLoadError) as err:
        check_model_files(RELEASE_DIR / "absent.onnx")
    message = str(err.value)
    assert message.startswith("model file not found")
    assert f"looked for in {RELEASE_DIR}" in message and "PRODUCT_CLASSIFIER_MODEL_PATH" in message


def test_a_missing_explicit_file_is_named_plainly(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"^model file not found: .*absent\.onnx$"):
        check_model_files(tmp_path / "absent.onnx")
