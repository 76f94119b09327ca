"""Bulk prediction (inference/bulk.py and `product-classifier predict`) with a local model.

The model is the tiny contract model (random weights, real ONNX contract), so the expected
classes are recomputed here with a plain onnxruntime session on the raw pixels / 255.
The remote backend is exercised against httpx.MockTransport; the real service is covered by
tests/integration/test_cli_predict.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from typer.testing import CliRunner

from product_classifier.cli.main import app
from product_classifier.constants import CLASS_NAMES, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME
from product_classifier.inference import bulk
from product_classifier.inference.contract_model import build_contract_model, write_model_card
from product_classifier.inference.review import DEFAULT_REVIEW_THRESHOLD
from product_classifier.preprocessing import to_model_input


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = build_contract_model(tmp_path_factory.mktemp("model") / "model.onnx", seed=3)
    write_model_card(path)
    return path


@pytest.fixture(scope="module")
def backend(model: Path) -> bulk.LocalBackend:
    return bulk.LocalBackend(model)


def pixels(seed: int) -> np.ndarray:
    """A 28x28 'item': bright blob on a dark background, different per seed."""
    rng = np.random.default_rng(seed)
    img = np.zeros((28, 28), dtype=np.uint8)
    top, left = rng.integers(2, 10, size=2)
    img[top : top + 14, left : left + 12] = rng.integers(60, 255, size=(14, 12))
    return img


def save_png(path: Path, seed: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = pixels(seed)
    Image.fromarray(img).save(path)
    return img


def offline_probs(model: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: to_model_input(images)})[0]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# -- collect_inputs ----------------------------------------------------------------------------


def test_collect_files_folders_globs_in_order_once(tmp_path: Path) -> None:
    for rel in ("a/2.png", "a/1.JPG", "a/deep/3.webp", "a/notes.txt", "a/.hidden/4.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "a" / "._5.png").write_bytes(b"x")  # macOS resource fork: skipped in folders
    (tmp_path / "b.gif").write_bytes(b"x")
    (tmp_path / "c.txt").write_bytes(b"x")

    items = bulk.collect_inputs(
        [
            tmp_path / "b.gif",
            tmp_path / "a",
            str(tmp_path / "a" / "**" / "*.png"),  # 2.png again: not repeated
            tmp_path / "c.txt",  # named explicitly: read (and reported) even if not an image
            tmp_path / "missing.png",
            str(tmp_path / "nothing-*.jpg"),
        ]
    )
    rel = [Path(i.path).relative_to(tmp_path).as_posix() if i.error is None else i for i in items]
    assert rel[:5] == ["b.gif", "a/1.JPG", "a/2.png", "a/deep/3.webp", "c.txt"]
    assert [i.error[0] for i in items[5:] if i.error] == ["not_found", "not_found"]
    assert len(items) == 7


def test_collect_empty_folder_gives_nothing(tmp_path: Path) -> None:
    assert bulk.collect_inputs([tmp_path]) == []


# -- run_bulk with the local model -------------------------------------------------------------


def test_local_predictions_equal_offline_onnxruntime(
    model: Path, backend: bulk.LocalBackend, tmp_path: Path
) -> None:
    images = np.stack([save_png(tmp_path / f"{i:02d}.png", seed=i) for i in range(23)])
    items = bulk.collect_inputs([tmp_path])
    report = bulk.run_bulk(items, backend, batch_size=5)

    probs = offline_probs(model, images)
    assert [Path(r.path).name for r in report.rows] == [f"{i:02d}.png" for i in range(23)]
    assert report.failed == 0 and report.model_version == "test-0"
    for row, p in zip(report.rows, probs, strict=True):
        assert row.ok and row.class_id == int(p.argmax())
        assert row.category == CLASS_NAMES[row.class_id]
        assert row.confidence == pytest.approx(float(p.max()), abs=1e-5)
        assert row.needs_review == (p.max() < DEFAULT_REVIEW_THRESHOLD)  # no review section
        assert [e.class_id for e in row.top_k] == list(np.argsort(-p, kind="stable")[:3])
        assert row.top_k[0].probability >= row.top_k[1].probability >= row.top_k[2].probability


def test_bad_files_become_error_rows_and_do_not_stop_the_run(
    backend: bulk.LocalBackend, tmp_path: Path
) -> None:
    save_png(tmp_path / "1-good.png", 1)
    (tmp_path / "2-text.png").write_text("not an image")
    buf = io.BytesIO()
    Image.fromarray(pixels(2)).save(buf, "PNG")
    (tmp_path / "3-truncated.png").write_bytes(buf.getvalue()[:60])
    (tmp_path / "4-empty.png").write_bytes(b"")
    save_png(tmp_path / "5-good.png", 5)
    (tmp_path / "6-big.png").write_bytes(b"\x89PNG" + b"0" * 5000)
    (tmp_path / "7-damaged.jpg").write_bytes(b"\xff\xd8\xff\xe0 then garbage")
    items = [
        *bulk.collect_inputs([tmp_path]),
        bulk.InputItem(str(tmp_path)),  # a folder read as a file: OSError
        *bulk.collect_inputs([tmp_path / "gone.png"]),
    ]
    report = bulk.run_bulk(items, backend, batch_size=2, max_file_bytes=4096)
    codes = {Path(r.path).name: r.error_code for r in report.rows}
    assert codes == {
        "1-good.png": None,
        "2-text.png": "unsupported_media_type",
        "3-truncated.png": "corrupt_image",
        "4-empty.png": "empty_file",
        "5-good.png": None,
        "6-big.png": "file_too_large",
        "7-damaged.jpg": "corrupt_image",  # starts like a JPEG: damaged, as the API says
        tmp_path.name: "unreadable_file",
        "gone.png": "not_found",
    }
    assert report.summary() == {
        "images": 9,
        "classified": 2,
        "needs_review": report.needs_review,
        "failed": 7,
    }
    assert all(r.error_message for r in report.rows if not r.ok)


class CountingBackend:
    """Wraps a backend and records the batches it is given."""

    def __init__(self, inner: bulk.LocalBackend) -> None:
        self.inner = inner
        self.source = inner.source
        self.batches: list[list[str]] = []

    @property
    def model_version(self) -> str:
        return self.inner.model_version

    def classify(self, batch: Sequence[tuple[str, bytes]]) -> list[bulk.BulkRow]:
        self.batches.append([path for path, _ in batch])
        return self.inner.classify(batch)


def test_work_is_batched_by_count_and_bytes(backend: bulk.LocalBackend, tmp_path: Path) -> None:
    for i in range(7):
        save_png(tmp_path / f"{i}.png", i)
    items = bulk.collect_inputs([tmp_path])
    counting = CountingBackend(backend)
    progress: list[int] = []
    report = bulk.run_bulk(items, counting, batch_size=3, on_progress=progress.append)
    assert [len(b) for b in counting.batches] == [3, 3, 1]
    assert sum(progress) == 7 and len(report.rows) == 7

    size = max((tmp_path / f"{i}.png").stat().st_size for i in range(7))
    counting = CountingBackend(backend)
    bulk.run_bulk(items, counting, batch_size=100, max_batch_bytes=2 * size)
    assert max(len(b) for b in counting.batches) <= 2
    assert sum(len(b) for b in counting.batches) == 7


def test_run_bulk_rejects_a_zero_batch(backend: bulk.LocalBackend) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        bulk.run_bulk([], backend, batch_size=0)


def test_a_broken_model_is_a_bulk_error(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(bulk.BulkError, match="cannot load the model"):
        bulk.LocalBackend(tmp_path / "model.onnx")


# -- output ------------------------------------------------------------------------------------


def sample_report() -> bulk.BulkReport:
    top = (
        bulk.TopEntry("Shirt", 6, 0.55),
        bulk.TopEntry("T-shirt/top", 0, 0.40),
        bulk.TopEntry("Coat", 4, 0.05),
    )
    return bulk.BulkReport(
        rows=[
            bulk.BulkRow("a, b.png", "Shirt", 6, 0.55, True, top, review_reason="low_confidence"),
            bulk.BulkRow.failure("=cmd.png", "corrupt_image", "cut short"),
        ],
        model_version="v1",
        source="model.onnx",
    )


def test_csv_has_one_row_per_image_and_is_spreadsheet_safe() -> None:
    out = io.StringIO()
    bulk.write_csv(sample_report(), out)
    records = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(records[0]) == list(bulk.CSV_COLUMNS)
    assert records[0]["path"] == "a, b.png" and records[0]["needs_review"] == "true"
    assert records[0]["review_reason"] == "low_confidence" and records[1]["review_reason"] == ""
    assert (records[0]["top1"], records[0]["top2"], records[0]["top3"]) == (
        "Shirt",
        "T-shirt/top",
        "Coat",
    )
    assert float(records[0]["top2_probability"]) == pytest.approx(0.40)
    assert records[1]["path"] == "'=cmd.png"  # not a formula when opened in a spreadsheet
    assert records[1]["error_code"] == "corrupt_image" and records[1]["category"] == ""


def test_json_holds_summary_and_results() -> None:
    out = io.StringIO()
    bulk.write_json(sample_report(), out)
    document = json.loads(out.getvalue())
    assert document["summary"] == {"images": 2, "classified": 1, "needs_review": 1, "failed": 1}
    assert document["results"][0]["top_k"][1] == {
        "category": "T-shirt/top",
        "class_id": 0,
        "probability": 0.40,
    }
    assert document["results"][1] == {
        "path": "=cmd.png",
        "error": {"code": "corrupt_image", "message": "cut short"},
    }


def test_writer_for_needs_csv_or_json() -> None:
    assert bulk.writer_for(Path("r.CSV")) is bulk.write_csv
    assert bulk.writer_for(Path("r.json")) is bulk.write_json
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        bulk.writer_for(Path("r.xlsx"))


# -- remote backend against a fake transport ---------------------------------------------------


def fake_service(calls: list[str], *, busy_first: bool) -> httpx.MockTransport:
    state = {"busy": busy_first}

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/ready":
            return httpx.Response(200, json={"status": "ready", "model_version": "srv-1"})
        if state["busy"] and request.url.path == "/v1/predict/batch":
            state["busy"] = False
            return httpx.Response(
                503,
                headers={"Retry-After": "0"},
                json={"error": {"code": "overloaded", "message": "queue full"}},
            )
        n = request.content.count(b'name="files"')
        entry = {"category": "Bag", "class_id": 8, "probability": 0.9}
        results = [
            {
                "filename": f"{i}.png",
                "category": "Bag",
                "class_id": 8,
                "confidence": 0.9,
                "needs_review": False,
                "top_k": [entry, {**entry, "class_id": 0, "category": "T-shirt/top"}],
            }
            for i in range(n - 1)
        ]
        results.append({"filename": "x", "error": {"code": "corrupt_image", "message": "bad"}})
        return httpx.Response(200, json={"results": results, "model_version": "srv-1"})

    return httpx.MockTransport(handler)


def test_remote_backend_retries_when_overloaded(tmp_path: Path) -> None:
    for i in range(3):
        save_png(tmp_path / f"{i}.png", i)
    calls: list[str] = []
    client = httpx.Client(transport=fake_service(calls, busy_first=True), base_url="http://t")
    remote = bulk.RemoteBackend("http://t", client=client)
    report = bulk.run_bulk(bulk.collect_inputs([tmp_path]), remote, batch_size=3)
    # /v1/categories: the up-front API-key check; then the batch, refused once, resent.
    assert calls == ["/ready", "/v1/categories", "/v1/predict/batch", "/v1/predict/batch"]
    assert [r.category for r in report.rows] == ["Bag", "Bag", None]
    assert report.rows[2].error_code == "corrupt_image"
    assert report.model_version == "srv-1"


def test_remote_backend_unreachable_is_a_bulk_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(refuse), base_url="http://t")
    with pytest.raises(bulk.BulkError, match="cannot reach the service"):
        bulk.RemoteBackend("http://t", client=client)


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_writes_csv_and_exits_0_when_all_ok(model: Path, tmp_path: Path) -> None:
    for i in range(4):
        save_png(tmp_path / "photos" / f"{i}.png", i)
    out = tmp_path / "out" / "results.csv"
    result = CliRunner().invoke(
        app,
        ["predict", str(tmp_path / "photos"), "--model", str(model), "-o", str(out), "-b", "3"],
    )
    assert result.exit_code == 0, result.output
    records = list(csv.DictReader(out.open()))
    assert len(records) == 4 and all(r["category"] in CLASS_NAMES for r in records)
    assert "4 images: 4 classified" in result.output


def test_cli_exits_1_when_a_file_fails_and_still_writes_json(model: Path, tmp_path: Path) -> None:
    save_png(tmp_path / "photos" / "ok.png", 0)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    out = tmp_path / "results.json"
    result = CliRunner().invoke(
        app, ["predict", str(tmp_path / "photos"), "--model", str(model), "-o", str(out)]
    )
    assert result.exit_code == 1, result.output
    document = json.loads(out.read_text())
    assert document["summary"]["failed"] == 1 and document["summary"]["classified"] == 1
    assert "broken.jpg" in result.output


def test_cli_prints_csv_on_stdout_without_output(model: Path, tmp_path: Path) -> None:
    save_png(tmp_path / "a.png", 0)
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "a.png"), "--model", str(model)])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == ",".join(bulk.CSV_COLUMNS)
    assert len(result.stdout.splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{empty}"], "no image files found"),
        (["{img}", "-o", "{tmp}/r.xlsx"], ".csv or .json"),
        (["{img}", "--model", "{tmp}/none.onnx"], "cannot load the model"),
        (["{img}", "--url", "http://127.0.0.1:9"], "cannot reach the service"),
    ],
)
def test_cli_exits_2_when_nothing_can_run(
    model: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    save_png(tmp_path / "img.png", 0)
    values = {"empty": tmp_path / "empty", "img": tmp_path / "img.png", "tmp": tmp_path}
    argv = ["predict", *(a.format(**values) for a in args)]
    if "--model" not in argv:
        argv += ["--model", str(model)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_local_mode_serves_the_same_default_model_as_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --model and no settings: the bulk CLI loads what `serve` loads (the cascade in
    front of the released INT8 model), so both answer the same for the same picture."""
    for key in [k for k in os.environ if k.startswith("PRODUCT_CLASSIFIER_")]:
        monkeypatch.delenv(key)
    save_png(tmp_path / "photos" / "0.png", 0)
    out = tmp_path / "results.json"
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "photos"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    # Both stages, each with its file's hash, as the service names them.
    assert document["model_version"].endswith("+cascade")
    assert "+int8@" in document["model_version"]
    assert len(document["results"]) == 1
