"""`python -m benchmarks inference --smoke`: real subprocesses, real models, real files.

The figures of a smoke run are meaningless; these tests check the machinery: every runtime
measured in its own process (or skipped with a reason), the JSON and Markdown written, the
hand-written parts of the Markdown kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from live_server import tiny_checkpoint
from typer.testing import CliRunner

from benchmarks.__main__ import app
from benchmarks.inference import _median_tree
from benchmarks.inference_report import (
    begin_marker,
    cpu_info,
    end_marker,
    write_markdown,
)
from product_classifier.inference.contract_model import build_contract_model

REPO_ROOT = Path(__file__).resolve().parents[2]
FP32 = REPO_ROOT / "artifacts" / "model.onnx"
INT8 = REPO_ROOT / "artifacts" / "model.int8.onnx"


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["inference", *args])
    return result.exit_code, result.output


@pytest.mark.integration
@pytest.mark.slow
def test_smoke_run_measures_every_runtime_and_writes_reports(tmp_path: Path) -> None:
    if not (FP32.is_file() and INT8.is_file()):
        pytest.skip("the released FP32/INT8 models are missing")
    docs, report_json = tmp_path / "benchmarks.md", tmp_path / "inference.json"
    docs.write_text("# Benchmarks\n\nHand-written analysis that must survive.\n")
    missing_ckpt = tmp_path / "absent.pt"
    code, output = _invoke(
        "--smoke",
        "--out", str(docs),
        "--json", str(report_json),
        "--fp32", str(FP32),
        "--int8", str(INT8),
        "--checkpoint", str(missing_ckpt),
    )  # fmt: skip
    assert code == 0, output
    report = json.loads(report_json.read_text())
    assert report["config"]["smoke"] is True
    by_key = {rt["key"]: rt for rt in report["runtimes"]}
    assert "not found" in by_key["torch"]["skipped"]  # absent checkpoint: a note, no failure
    for key in ("onnx-fp32", "onnx-int8"):
        cell = by_key[key]["cells"]["1"]
        assert cell["latency_batch1"]["p50_ms"] > 0
        assert cell["load_s"] > 0 and cell["peak_rss_mib"] > cell["rss_start_mib"] > 0
        assert all(t["images_per_s"] > 0 for t in cell["throughput"].values())
    assert by_key["onnx-int8"]["cells"]["1"]["size_bytes"] == INT8.stat().st_size
    assert any("INT8 size" in line for line in report["targets"])
    assert report["system"]["cpu"]["flags"].keys() >= {"AVX2", "AVX-512F", "AVX-512 VNNI"}

    text = docs.read_text()
    assert "Hand-written analysis that must survive." in text
    assert begin_marker("runtimes") in text and end_marker("runtimes") in text
    assert "SMOKE RUN" in text and "ONNX Runtime INT8" in text and "skipped" in text


@pytest.mark.integration
@pytest.mark.slow
def test_smoke_run_includes_pytorch_when_a_checkpoint_exists(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")  # the trained one is git-ignored
    report_json = tmp_path / "r.json"
    code, output = _invoke(
        "--smoke", "--out", str(tmp_path / "b.md"), "--json", str(report_json),
        "--fp32", str(FP32), "--int8", str(tmp_path / "none.onnx"),
        "--checkpoint", str(checkpoint),
    )  # fmt: skip
    assert code == 0, output
    by_key = {rt["key"]: rt for rt in json.loads(report_json.read_text())["runtimes"]}
    torch_cell = by_key["torch"]["cells"]["1"]
    assert torch_cell["latency_batch1"]["p50_ms"] > 0
    assert torch_cell["checkpoint_bytes"] == checkpoint.stat().st_size
    assert "skipped" in by_key["onnx-int8"]


@pytest.mark.integration
@pytest.mark.slow
def test_smoke_session_sweep_on_a_contract_model(tmp_path: Path) -> None:
    model = build_contract_model(tmp_path / "m.onnx")
    docs, report_json = tmp_path / "b.md", tmp_path / "s.json"
    code, output = _invoke(
        "--smoke", "--session-sweep", "--out", str(docs), "--json", str(report_json),
        "--fp32", str(model), "--int8", str(tmp_path / "none.onnx"),
    )  # fmt: skip
    assert code == 0, output
    rows = json.loads(report_json.read_text())["rows"]
    settings = [row["setting"] for row in rows]
    assert any("spinning on" in s for s in settings)
    assert any("offline-optimised" in s for s in settings)
    assert all(row["cell"]["latency_batch1"]["p50_ms"] > 0 for row in rows)
    assert begin_marker("session settings") in docs.read_text()


def test_missing_fp32_model_is_a_clear_error(tmp_path: Path) -> None:
    code, output = _invoke("--smoke", "--fp32", str(tmp_path / "absent.onnx"))
    assert code == 2 and "not found" in output


# -- pure helpers (fast) -----------------------------------------------------------------------


def test_markdown_blocks_are_replaced_in_place(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    write_markdown(doc, {"a": f"{begin_marker('a')}\nv1\n{end_marker('a')}\n"})
    doc.write_text(doc.read_text() + "\nNotes after.\n")
    write_markdown(doc, {"a": f"{begin_marker('a')}\nv2\n{end_marker('a')}\n"})
    write_markdown(doc, {"b": f"{begin_marker('b')}\nother\n{end_marker('b')}\n"})
    text = doc.read_text()
    assert "v2" in text and "v1" not in text and text.count(begin_marker("a")) == 1
    assert text.index("v2") < text.index("Notes after.") < text.index("other")


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    info = cpu_info(
        "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 fma avx512f "
        "avx512_vnni\n\nprocessor\t: 1\nmodel name\t: other\n"
    )
    assert info["model"] == "Test CPU 9000"
    assert info["flags"]["AVX2"] and info["flags"]["AVX-512 VNNI"]
    assert not info["flags"]["AMX-INT8"] and not info["flags"]["AVX-VNNI"]


def test_rounds_are_merged_by_median() -> None:
    rounds = [
        {"a": 1.0, "b": {"c": 10}, "name": "x", "flag": True},
        {"a": 3.0, "b": {"c": 30}, "name": "y", "flag": False},
        {"a": 2.0, "b": {"c": 20}, "name": "z", "flag": False},
    ]
    assert _median_tree(rounds) == {"a": 2.0, "b": {"c": 20}, "name": "x", "flag": True}
