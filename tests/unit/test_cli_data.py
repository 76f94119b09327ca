"""`product-classifier data fetch|info` through the real CLI app.

The real files are found the way the code finds them (tests/conftest.py ``fashion_mnist``:
the project's locator), never by naming a folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from product_classifier.cli.main import app
from product_classifier.data import fashion_mnist as fm


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(fm.ENV_DATA_DIR, raising=False)
    monkeypatch.delenv(fm.ENV_MIRRORS, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fm, "SYSTEM_DATA_DIR", tmp_path / "no-system-copy")
    return tmp_path


def test_fetch_prints_where_the_data_is(fashion_mnist) -> None:
    real = fashion_mnist.directory
    result = CliRunner().invoke(app, ["data", "fetch", "--data-dir", str(real), "--no-download"])
    assert result.exit_code == 0, result.output
    assert "verified" in result.stdout and str(real) in result.stdout


def test_fetch_failure_lists_places_and_exits_1(isolated: Path) -> None:
    result = CliRunner().invoke(app, ["data", "fetch", "--no-download"])
    assert result.exit_code == 1
    assert "Places tried" in result.stderr
    assert str(isolated / "data" / "fashion-mnist") in result.stderr.replace("\n", "")
    assert "apt-get install dataset-fashion-mnist" in result.stderr


def test_info_shows_counts_and_checksums(fashion_mnist) -> None:
    result = CliRunner().invoke(
        app, ["data", "info", "--data-dir", str(fashion_mnist.directory)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "│" in line]
    shirt = next(line for line in rows if " Shirt " in line)
    assert [cell.strip() for cell in shirt.split("│")[3:5]] == ["6000", "1000"]
    assert any("60000" in line and "10000" in line for line in rows)
    for spec in fm.FILES:
        assert spec.payload_sha256 in result.stdout
