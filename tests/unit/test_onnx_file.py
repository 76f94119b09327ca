"""The CLI's ONNX check, without onnxruntime: real models pass, broken files are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from product_classifier.inference.contract_model import build_contract_model
from product_classifier.inference.onnx_file import onnx_framing_problem


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_contract_model(tmp_path_factory.mktemp("onnx") / "model.onnx").read_bytes()


def test_a_real_model_passes(model_bytes: bytes, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(model_bytes)
    assert onnx_framing_problem(path) is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (lambda model: b"", "empty"),
        (lambda model: model[:2000], "truncated"),
        (lambda model: model[: len(model) - 1], "truncated"),
        (lambda model: b"this is not an ONNX protobuf \x00\xff" * 100, "not an ONNX protobuf"),
        (lambda model: b'{"model": "json"}', "not an ONNX protobuf"),
        (lambda model: b"\x08\x07", "no graph"),  # an ir_version and nothing else
    ],
    ids=["empty", "truncated", "last byte cut", "text", "json", "no graph"],
)
def test_broken_files_are_refused_with_a_reason(
    model_bytes: bytes, tmp_path: Path, content: object, expected: str
) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content(model_bytes))  # type: ignore[operator]
    problem = onnx_framing_problem(path)
    assert problem is not None and expected in problem
