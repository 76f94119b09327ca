"""The README must match the released model card and the code it documents."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from product_classifier.cli.main import app

README = Path("README.md").read_text()
CARD = json.loads(Path("artifacts/model_card.json").read_text())


def _section(name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->(.*?)<!-- {name}:end -->", README, re.S)
    assert match, f"README lacks the {name} markers"
    return match.group(1)


def test_results_table_matches_the_model_card():
    table = _section("results-table")
    test = CARD["metrics"]["test"]
    assert f"{test['accuracy'] * 100:.2f}%" in table
    assert f"{test['macro_f1']:.4f}" in table
    assert f"{test['min_precision']:.3f}" in table
    assert f"{test['min_recall']:.3f}" in table
    assert f"{CARD['parameters']:,}" in table
    int8 = CARD["variants"]["int8"]["metrics"]["test"]
    int8_row = next(line for line in table.splitlines() if "INT8" in line)
    assert f"{int8['accuracy'] * 100:.2f}%" in int8_row
    assert f"{int8['macro_f1']:.4f}" in int8_row
    assert f"{int8['min_precision']:.3f}" in int8_row
    assert f"{int8['min_recall']:.3f}" in int8_row
    cascade = CARD["cascade"]
    cascade_test = cascade["metrics"]["test"]
    cascade_row = next(line for line in table.splitlines() if "cascade" in line)
    assert f"{cascade_test['accuracy'] * 100:.2f}%" in cascade_row
    assert f"{cascade_test['macro_f1']:.4f}" in cascade_row
    assert f"{cascade_test['min_precision']:.3f}" in cascade_row
    assert f"{cascade_test['min_recall']:.3f}" in cascade_row
    assert f"{100 * cascade['escalated_fraction']['test']:.1f}%" in cascade_row
    assert f"{cascade['first']['parameters']:,}" in cascade_row


def test_per_class_table_matches_the_model_card():
    rows = {
        cells[0]: [float(c) for c in cells[1:]]
        for line in _section("per-class-table").strip().splitlines()[2:]
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    for entry in CARD["metrics"]["test"]["per_class"]:
        precision, recall, f1 = rows[entry["name"]]
        assert precision == pytest.approx(entry["precision"], abs=5e-4)
        assert recall == pytest.approx(entry["recall"], abs=5e-4)
        assert f1 == pytest.approx(entry["f1"], abs=5e-4)


def test_every_make_target_in_the_readme_exists():
    makefile = Path("Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.M))
    mentioned = set(re.findall(r"make ([a-z][a-z0-9-]*)", README))
    assert mentioned, "README shows no make commands"
    assert mentioned <= targets, f"README mentions missing targets: {mentioned - targets}"


def test_every_cli_command_in_the_readme_exists():
    runner = CliRunner()
    commands = set(re.findall(r"product-classifier ([a-z][a-z-]*(?: [a-z][a-z-]*)?)", README))
    assert commands
    for command in sorted(commands):
        words = command.split()
        result = runner.invoke(app, [*words, "--help"])
        if result.exit_code != 0 and len(words) == 2:
            result = runner.invoke(app, [words[0], "--help"])
        assert result.exit_code == 0, f"`product-classifier {command}` is not a command"


def _render_script() -> Any:
    """scripts/render_model_card.py as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "render_model_card", Path("scripts/render_model_card.py")
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_real_pictures_table_matches_the_model_card():
    """The README's real-picture figures are the card's (scripts/render_model_card.py)."""
    script = _render_script()
    assert _section("real-pictures-table") == script.readme_real_pictures(CARD)
    assert "real_pictures" in CARD, "the released card has no real-picture figures"


def test_every_generated_readme_table_is_the_cards():
    """Each generated README section is what scripts/render_model_card.py renders now."""
    script = _render_script()
    assert set(script.README_SECTIONS) >= {"results-table", "per-class-table"}
    for name, build in script.README_SECTIONS.items():
        assert _section(name) == build(CARD), f"{name}: run scripts/render_model_card.py"
