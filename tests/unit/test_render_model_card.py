"""scripts/render_model_card.py: the Markdown model card follows artifacts/model_card.json."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
CARD = ROOT / "artifacts" / "model_card.json"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_model_card", ROOT / "scripts" / "render_model_card.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD.read_text())


def test_every_number_comes_from_the_card(script: ModuleType, card: dict) -> None:
    text = script.render(card)
    assert card["model_version"] in text and card["sha256"] in text
    for row in card["metrics"]["test"]["per_class"]:
        assert f"| {row['class_id']} | {row['name']} | {row['precision']:.4f} |" in text
    changed = copy.deepcopy(card)
    changed["metrics"]["test"]["accuracy"] = 0.1234
    changed["metrics"]["test"]["per_class"][6]["recall"] = 0.5
    other = script.render(changed)
    assert "**12.34%**" in other and "**12.34%**" not in text
    assert "| 6 | Shirt |" in other and "**no**" in other  # below the 0.85 bar


def test_committed_markdown_is_up_to_date(script: ModuleType) -> None:
    assert script.main(["--check"]) == 0, (
        "docs/model_card.md is stale: run .venv/bin/python scripts/render_model_card.py"
    )


def test_check_fails_on_a_stale_file(script: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "card.md"
    stale.write_text("# old\n")
    assert script.main(["--check", "--out", str(stale)]) == 1
    assert script.main(["--out", str(stale)]) == 0
    assert script.main(["--check", "--out", str(stale)]) == 0
