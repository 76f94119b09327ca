"""cli/common.py: how a command ends on a failure the user can fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from product_classifier.cli.common import exit_on
from product_classifier.cli.main import app


class ChoiceError(ValueError):
    pass


def one_command_app(error: Exception) -> typer.Typer:
    tiny = typer.Typer()

    @tiny.command()
    def run() -> None:
        with exit_on(ChoiceError, OSError):
            raise error
        typer.echo("not reached")

    return tiny


@pytest.mark.parametrize(
    "error", [ChoiceError("the dev folder has no Shirt pictures"), FileNotFoundError("card.json")]
)
def test_a_listed_error_ends_the_command_with_its_message_and_exit_code_1(
    error: Exception,
) -> None:
    result = CliRunner().invoke(one_command_app(error), [])
    assert result.exit_code == 1
    assert result.stderr == f"error: {error}\n"
    assert "Traceback" not in result.output and "not reached" not in result.output


def test_any_other_error_still_raises() -> None:
    result = CliRunner().invoke(one_command_app(KeyError("bug")), [])
    assert isinstance(result.exception, KeyError)


def test_registering_a_release_whose_file_does_not_match_its_card_is_refused(
    tmp_path: Path,
) -> None:
    """Through the real CLI: a card whose sha256 is not the file's ends the command with exit
    code 1 and says both digests (before MLflow is touched)."""
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not the released file")
    (tmp_path / "model_card.json").write_text(json.dumps({"sha256": "0" * 64}))
    result = CliRunner().invoke(
        app,
        [
            "search",
            "register",
            "--model",
            str(model),
            "--tracking-uri",
            f"sqlite:///{tmp_path}/m.db",
        ],
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: {model} has SHA-256 ")
    assert "0" * 64 in result.stderr.replace("\n", "")
    assert not (tmp_path / "m.db").exists()
