"""Your own catalog, end to end, through the real commands a user types.

The folder is real: icon and emoji pictures of six categories Fashion-MNIST never saw (hat,
watch, glasses, mug, umbrella, socks), rebuilt byte for byte from pinned public packages by
``scripts/picture_sets/build_catalog.py``. Its ``train/`` part is what the user trains on (one
sub-folder per category, split for them); its ``test/`` part comes from OTHER packages, other
designers, and is only scored.

    product-classifier train --data DIR --run-dir RUN
    product-classifier evaluate --model RUN/best.pt
    product-classifier export RUN/best.pt --out-dir OUT
    product-classifier quantize --model OUT/model.onnx --out OUT/model.int8.onnx
    PRODUCT_CLASSIFIER_MODEL_PATH=OUT/model.onnx product-classifier serve
    product-classifier evaluate --model OUT/model.onnx --data HELD_OUT

Then the HTTP API must answer with the folder's category names, exactly as the ONNX file does
offline. The browser test (test_web_ui.py) shows them on the page.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from live_server import LiveServer

from product_classifier.data.dataset import load_eval_folder
from product_classifier.inference.predictor import OnnxPredictor
from product_classifier.preprocessing import InputSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CATEGORIES = ("glasses", "hat", "mug", "socks", "umbrella", "watch")
# Six categories: chance is 1/6. The bar for held-out pictures from other sources.
HELD_OUT_BAR = 0.70


def test_training_reports_the_folder_its_split_and_its_checks(catalog_release) -> None:
    run = catalog_release.run_dir
    manifest = json.loads((run / "data_manifest.json").read_text())
    assert manifest["class_names"] == list(CATEGORIES)
    assert manifest["input_spec"] == {"size": 64, "channels": 3, "canonicalization": "letterbox"}
    files = manifest["sources"][0]["files"]
    assert {f["split"] for f in files} == {"train", "val", "test"}
    assert len({f["sha256"] for f in files}) == len(files)  # no picture twice
    assert "best val accuracy" in catalog_release.logs["train"]


def test_evaluate_reports_per_class_metrics_and_the_confusion_matrix(catalog_release) -> None:
    # `evaluate RUN/best.pt` and the report `export` writes beside the model.
    for report in (catalog_release.run_dir.parent / "eval", catalog_release.out_dir / "report"):
        metrics = json.loads((report / "metrics.json").read_text())
        assert [row["name"] for row in metrics["per_class"]] == list(CATEGORIES)
        assert len(metrics["confusion_matrix"]) == 6
        assert (report / "confusion_matrix.png").stat().st_size > 1000
    out = catalog_release.logs["evaluate"]
    assert "precision" in out and "watch" in out


def test_the_exported_file_carries_spec_categories_and_a_card(catalog_release) -> None:
    model = catalog_release.out_dir / "model.onnx"
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert json.loads(meta["class_names"]) == list(CATEGORIES)
    assert InputSpec.from_metadata(meta) == InputSpec(64, 3, "letterbox")
    card = json.loads((catalog_release.out_dir / "model_card.json").read_text())
    assert card["contract"]["class_names"] == list(CATEGORIES)
    assert card["contract"]["input"]["shape"] == ["N", 3, 64, 64]
    assert card["data"]["manifest"]["sha256"]
    assert card["variants"]["int8"]["file"] == "model.int8.onnx"  # quantize recorded it
    assert "catalog" in card["variants"]["int8"]["quantization"]["calibration_data"]


def test_held_out_pictures_from_other_sources_score_well_above_chance(catalog_release) -> None:
    metrics = json.loads((catalog_release.out_dir / "held-out" / "metrics.json").read_text())
    assert metrics["n"] >= 100
    assert metrics["accuracy"] >= HELD_OUT_BAR, catalog_release.logs["held_out"]


def test_the_service_answers_with_the_folders_categories(
    catalog_release, catalog_server: LiveServer
) -> None:
    client = catalog_server.client()
    listed = client.get("/v1/categories").json()
    assert [c["category"] for c in listed["categories"]] == list(CATEGORIES)
    held_out = catalog_release.folder / "test"
    paths = sorted(held_out.rglob("*.*"))[::7]
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    response = client.post("/v1/predict/batch", files=files)
    assert response.status_code == 200, response.text
    served = [r["category"] for r in response.json()["results"]]
    assert set(served) <= set(CATEGORIES)
    # Exactly what the ONNX file says offline, through the one preprocessing module.
    model = OnnxPredictor(catalog_release.out_dir / "model.onnx")
    images, _, _ = load_eval_folder(held_out, model.spec, model.class_names, progress=False)
    offline_paths = sorted(held_out.rglob("*.*"))
    from product_classifier.preprocessing import to_model_input

    probs = model.predict_proba(to_model_input(images, model.spec))
    by_path = dict(zip(offline_paths, probs.argmax(axis=1), strict=True))
    assert served == [CATEGORIES[int(by_path[p])] for p in paths]
    one = client.post("/v1/predict", files={"file": (paths[0].name, paths[0].read_bytes())})
    assert one.status_code == 200 and one.json()["category"] in CATEGORIES
    info = client.get("/v1/model").json()
    assert info["runtime"]["input_spec"]["size"] == 64
    metrics = client.get("/metrics").text
    assert 'predictions_total{category="umbrella"}' in metrics


def test_the_bulk_cli_answers_with_the_folders_categories(catalog_release, tmp_path) -> None:
    import csv
    import subprocess
    import sys

    from live_server import REPO_ROOT, clean_env

    out = tmp_path / "predictions.csv"
    held_out = catalog_release.folder / "test" / "umbrella"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "product_classifier.cli.main",
            "predict",
            str(held_out),
            "--model",
            str(catalog_release.out_dir / "model.onnx"),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=clean_env(),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == len(list(held_out.iterdir()))
    assert {r["category"] for r in rows} <= set(CATEGORIES)
    assert sum(r["category"] == "umbrella" for r in rows) >= len(rows) // 2


def test_the_int8_model_agrees_with_fp32_on_held_out_pictures(catalog_release) -> None:
    out = catalog_release.out_dir
    fp32, int8 = OnnxPredictor(out / "model.onnx"), OnnxPredictor(out / "model.int8.onnx")
    images, _, _ = load_eval_folder(
        catalog_release.folder / "test", fp32.spec, fp32.class_names, progress=False
    )
    from product_classifier.preprocessing import to_model_input

    x = to_model_input(images, fp32.spec)
    agreement = float(np.mean(fp32.predict_proba(x).argmax(1) == int8.predict_proba(x).argmax(1)))
    assert agreement >= 0.95


def test_a_catalog_model_is_refused_by_the_fashion_mnist_cascade(tmp_path: Path) -> None:
    """The cascade's two stages must share one input spec (a mixed pair would mis-shape)."""
    from product_classifier.inference.cascade import CascadePredictor
    from product_classifier.inference.contract_model import build_contract_model

    catalog = build_contract_model(
        tmp_path / "c.onnx", class_names=CATEGORIES, spec=InputSpec(64, 3, "letterbox")
    )
    other = build_contract_model(
        tmp_path / "d.onnx", class_names=CATEGORIES, spec=InputSpec(32, 3, "letterbox")
    )
    with pytest.raises(ValueError, match="different inputs"):
        CascadePredictor(OnnxPredictor(catalog), OnnxPredictor(other), 0.8)


def test_http_client_sees_the_same_category_list_as_the_card(catalog_release, catalog_server):
    card = json.loads((catalog_release.out_dir / "model_card.json").read_text())
    listed = httpx.get(f"{catalog_server.base_url}/v1/categories", timeout=10).json()
    assert [c["category"] for c in listed["categories"]] == card["contract"]["class_names"]
