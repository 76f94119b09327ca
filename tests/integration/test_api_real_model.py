"""The released model through HTTP must answer exactly like offline onnxruntime.

500 real Fashion-MNIST test images are sent as 28x28 PNGs, one per request (concurrently, so
the micro-batcher mixes them) and again through the batch endpoint. Every predicted class must
equal the offline argmax over the same raw bytes / 255. Skipped only when the released
artifacts/model.onnx does not exist yet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import pytest
from live_server import REPO_ROOT, png_bytes

from product_classifier.constants import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME
from product_classifier.data.fashion_mnist import load_fashion_mnist
from product_classifier.preprocessing import to_model_input

if TYPE_CHECKING:
    from live_server import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RELEASED_MODEL = REPO_ROOT / "artifacts" / "model.onnx"
N_IMAGES = 500
BATCH_FILES = 50


@pytest.fixture(scope="module")
def released_model() -> Path:
    if not RELEASED_MODEL.is_file():
        pytest.skip(
            f"{RELEASED_MODEL.relative_to(REPO_ROOT)} does not exist yet: train and export the "
            "model first (this test checks the released model end to end)"
        )
    return RELEASED_MODEL


@pytest.fixture(scope="module")
def sample(fashion_mnist) -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_fashion_mnist("test", data_dir=fashion_mnist.directory)
    return np.ascontiguousarray(images[:N_IMAGES]), labels[:N_IMAGES]


def offline_predictions(model: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: to_model_input(images)})[0]
    return np.asarray(logits).argmax(axis=1)


def test_http_predictions_equal_offline_onnxruntime(
    released_model: Path,
    sample: tuple[np.ndarray, np.ndarray],
    server_factory: Callable[..., LiveServer],
) -> None:
    images, labels = sample
    expected = offline_predictions(released_model, images)
    pngs = [png_bytes(img) for img in images]
    live = server_factory(released_model)

    local = threading.local()

    def predict_one(i: int) -> int:
        if not hasattr(local, "client"):
            local.client = live.client()  # one keep-alive connection per thread
        r = local.client.post("/v1/predict", files={"file": (f"{i}.png", pngs[i], "image/png")})
        assert r.status_code == 200, r.text
        return int(r.json()["class_id"])

    with ThreadPoolExecutor(8) as pool:
        single = np.array(list(pool.map(predict_one, range(N_IMAGES))))

    batched: list[int] = []
    client = live.client()
    for start in range(0, N_IMAGES, BATCH_FILES):
        files = [
            ("files", (f"{i}.png", pngs[i], "image/png")) for i in range(start, start + BATCH_FILES)
        ]
        r = client.post("/v1/predict/batch", files=files)
        assert r.status_code == 200, r.text
        batched += [int(item["class_id"]) for item in r.json()["results"]]

    single_mismatch = np.flatnonzero(single != expected).tolist()
    batch_mismatch = np.flatnonzero(np.array(batched) != expected).tolist()
    assert not single_mismatch, f"/v1/predict differs from offline at {single_mismatch[:20]}"
    assert not batch_mismatch, f"/v1/predict/batch differs from offline at {batch_mismatch[:20]}"
    # Sanity check of the released model itself (a wrong label order would sink this).
    accuracy = float((expected == labels).mean())
    assert accuracy >= 0.80, f"released model accuracy on {N_IMAGES} test images: {accuracy:.3f}"
