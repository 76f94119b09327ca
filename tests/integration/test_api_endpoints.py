"""Every endpoint of the real server (subprocess, real HTTP) with the tiny contract model."""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image, ImageDraw

from product_classifier.constants import CLASS_NAMES
from product_classifier.inference.contract_model import contract_model_weights
from product_classifier.inference.model_card import sha256_file
from product_classifier.preprocessing import to_model_input

if TYPE_CHECKING:
    from live_server import LiveServer

pytestmark = pytest.mark.integration

PREDICTION_KEYS = {
    "category",
    "class_id",
    "confidence",
    "top_k",
    "needs_review",
    "review_reason",
    "out_of_scope",
}


def fashion_like(seed: int) -> np.ndarray:
    """A 28x28 bright blob on black, the way Fashion-MNIST items look."""
    rng = np.random.default_rng(seed)
    img = np.zeros((28, 28), dtype=np.uint8)
    top, left = rng.integers(2, 8, size=2)
    img[top : top + 18, left : left + 14] = rng.integers(60, 255, size=(18, 14), dtype=np.uint8)
    return img


def expected_probs(model: Path, pixels: np.ndarray) -> np.ndarray:
    """What the contract model must answer, computed in numpy from its weights."""
    weight, bias = contract_model_weights(model)
    logits = to_model_input(pixels).reshape(1, -1).astype(np.float64) @ weight + bias
    z = np.exp(logits - logits.max())
    return (z / z.sum())[0]


def check_prediction(body: dict, probs: np.ndarray) -> None:
    check_scores(body, probs)
    # No review section in the contract model's card: 0.7, no out-of-scope band.
    assert body["needs_review"] is (body["confidence"] < 0.7)
    assert body["review_reason"] == ("low_confidence" if body["needs_review"] else None)
    assert body["out_of_scope"] is False


def check_scores(body: dict, probs: np.ndarray) -> None:
    order = np.argsort(-probs, kind="stable")
    assert body["class_id"] == int(order[0])
    assert body["category"] == CLASS_NAMES[body["class_id"]]
    assert body["confidence"] == pytest.approx(float(probs[order[0]]), rel=1e-4, abs=1e-6)
    assert [t["class_id"] for t in body["top_k"]] == [int(i) for i in order[:3]]
    for entry in body["top_k"]:
        assert entry["category"] == CLASS_NAMES[entry["class_id"]]
        assert entry["probability"] == pytest.approx(probs[entry["class_id"]], rel=1e-4, abs=1e-6)


def test_health_and_ready(server: LiveServer) -> None:
    client = server.client()
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model_version": "test-0"}


def test_categories_follow_the_model_metadata(server: LiveServer) -> None:
    body = server.client().get("/v1/categories").json()
    assert body["model_version"] == "test-0"
    assert [c["category"] for c in body["categories"]] == list(CLASS_NAMES)
    assert [c["class_id"] for c in body["categories"]] == list(range(10))


def test_model_info_has_card_and_runtime(server: LiveServer, contract_model: Path) -> None:
    body = server.client().get("/v1/model").json()
    assert body["model_card"]["sha256"] == sha256_file(contract_model)
    runtime = body["runtime"]
    assert runtime["sha256_verified"] is True
    assert runtime["sha256"] == sha256_file(contract_model)
    assert runtime["providers"][-1] == "CPUExecutionProvider"
    assert runtime["model_version"] == "test-0"
    assert runtime["class_names"] == list(CLASS_NAMES)
    assert runtime["batching"]["max_batch_size"] == 32


def test_openapi_docs(server: LiveServer) -> None:
    client = server.client()
    docs = client.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/predict", "/v1/predict/batch", "/v1/categories", "/v1/model"):
        assert path in paths
    schema = paths["/v1/predict"]["post"]["responses"]["200"]["content"]["application/json"]
    assert schema["schema"]["$ref"].endswith("PredictionResponse")


def test_predict_a_28x28_png(
    server: LiveServer, contract_model: Path, make_image: Callable[..., bytes]
) -> None:
    pixels = fashion_like(0)
    response = server.client().post(
        "/v1/predict", files={"file": ("item.png", make_image(pixels), "image/png")}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == PREDICTION_KEYS | {"model_version", "request_id"}
    assert len(body["top_k"]) == 3
    assert body["model_version"] == "test-0"
    assert body["request_id"] == response.headers["x-request-id"]
    check_prediction(body, expected_probs(contract_model, pixels))


def test_needs_review_follows_the_threshold(
    server: LiveServer, contract_model: Path, make_image: Callable[..., bytes]
) -> None:
    client = server.client()
    # An empty image only sees the small random bias: low confidence. A bright one: high.
    flags = []
    for pixels in (np.zeros((28, 28), np.uint8), fashion_like(1), fashion_like(2)):
        body = client.post("/v1/predict", files={"file": ("x.png", make_image(pixels))}).json()
        check_prediction(body, expected_probs(contract_model, pixels))
        flags.append(body["needs_review"])
    assert flags[0] is True
    assert False in flags[1:]


def test_request_id_is_echoed_or_generated(
    server: LiveServer, make_image: Callable[..., bytes]
) -> None:
    client = server.client()
    files = {"file": ("x.png", make_image(fashion_like(3)))}
    given = client.post("/v1/predict", files=files, headers={"X-Request-ID": "order-42.a"})
    assert given.headers["x-request-id"] == "order-42.a"
    assert given.json()["request_id"] == "order-42.a"
    generated = [client.post("/v1/predict", files=files) for _ in range(2)]
    ids = [r.headers["x-request-id"] for r in generated]
    assert ids[0] != ids[1] and all(len(i) == 32 for i in ids)
    assert client.get("/health").headers["x-request-id"]


@pytest.mark.parametrize(
    ("fmt", "mode", "kwargs"),
    [("JPEG", "RGB", {"quality": 90}), ("WEBP", "RGB", {}), ("PNG", "RGBA", {}), ("GIF", "P", {})],
)
def test_catalog_photos_in_common_formats(
    server: LiveServer, fmt: str, mode: str, kwargs: dict
) -> None:
    """A dark product on a white page, bigger than 28x28: the full preprocessing path."""
    image = Image.new("RGB", (240, 320), "white")
    ImageDraw.Draw(image).rectangle((60, 40, 180, 280), fill=(30, 40, 90))
    buf = io.BytesIO()
    image.convert(mode).save(buf, fmt, **kwargs)
    response = server.client().post(
        "/v1/predict", files={"file": (f"photo.{fmt.lower()}", buf.getvalue())}
    )
    assert response.status_code == 200, response.text
    assert set(response.json()) >= PREDICTION_KEYS


def test_batch_keeps_order_and_reports_errors_per_file(
    server: LiveServer, contract_model: Path, make_image: Callable[..., bytes]
) -> None:
    images = [fashion_like(10 + i) for i in range(3)]
    files = [
        ("files", ("a.png", make_image(images[0]), "image/png")),
        ("files", ("notes.txt", b"not an image", "text/plain")),
        ("files", ("b.png", make_image(images[1]), "image/png")),
        ("files", ("empty.png", b"", "image/png")),
        ("files", ("c.png", make_image(images[2]), "image/png")),
    ]
    response = server.client().post(
        "/v1/predict/batch", files=files, headers={"X-Request-ID": "batch-1"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "test-0" and body["request_id"] == "batch-1"
    results = body["results"]
    assert [r["filename"] for r in results] == [f[1][0] for f in files]
    assert results[1]["error"]["code"] == "unsupported_media_type"
    assert results[3]["error"]["code"] == "empty_file"
    for result, pixels in zip((results[0], results[2], results[4]), images, strict=True):
        assert set(result) == PREDICTION_KEYS | {"filename"}
        check_prediction(result, expected_probs(contract_model, pixels))


def test_concurrent_requests_are_each_answered_correctly(
    server: LiveServer, contract_model: Path, make_image: Callable[..., bytes]
) -> None:
    images = [fashion_like(100 + i) for i in range(96)]

    def send(i: int) -> dict:
        with server.client() as client:
            r = client.post("/v1/predict", files={"file": (f"{i}.png", make_image(images[i]))})
            assert r.status_code == 200, r.text
            return r.json()

    with ThreadPoolExecutor(16) as pool:
        bodies = list(pool.map(send, range(len(images))))
    for body, pixels in zip(bodies, images, strict=True):
        check_prediction(body, expected_probs(contract_model, pixels))


def test_the_card_review_policy_calibrates_and_gives_reasons(
    server_factory: Callable[..., LiveServer],
    contract_model: Path,
    make_image: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    """A card with a review section: probabilities are temperature-scaled, and the flag's
    reason follows the two thresholds, for single and batch predictions alike."""
    import json
    import shutil

    from product_classifier.inference.review import ReviewPolicy

    folder = tmp_path / "model"
    shutil.copytree(contract_model.parent, folder)
    card_path = folder / "model_card.json"
    card = json.loads(card_path.read_text())
    policy = ReviewPolicy(threshold=0.95, out_of_scope_threshold=0.5, temperature=2.0)
    card["review"] = policy.to_dict()
    card_path.write_text(json.dumps(card))
    client = server_factory(folder / "model.onnx").client()
    assert client.get("/v1/model").json()["runtime"]["review"] == policy.to_dict()
    reasons = set()
    images = [np.zeros((28, 28), np.uint8)] + [fashion_like(i) for i in range(8)]
    for pixels in images:
        body = client.post("/v1/predict", files={"file": ("x.png", make_image(pixels))}).json()
        check_scores(body, policy.calibrate(expected_probs(contract_model, pixels)[None])[0])
        assert body["review_reason"] == policy.reason(body["confidence"])
        assert body["needs_review"] is (body["review_reason"] is not None)
        assert body["out_of_scope"] is (body["review_reason"] == "out_of_scope")
        reasons.add(body["review_reason"])
    assert "out_of_scope" in reasons  # the empty image: flat probabilities
    files = [("files", (f"{i}.png", make_image(p))) for i, p in enumerate(images)]
    batch = client.post("/v1/predict/batch", files=files).json()["results"]
    assert [r["review_reason"] for r in batch] == [policy.reason(r["confidence"]) for r in batch]


def test_real_pictures_are_reviewed_with_the_pictures_policy(
    server_factory: Callable[..., LiveServer], contract_model: Path, tmp_path: Path
) -> None:
    """A 28x28 upload (the dataset's form) gets the card's main policy, a larger picture
    (which canonicalize reshapes) the pictures' one, in single and batch predictions."""
    import io
    import json
    import shutil

    from PIL import Image

    from product_classifier.inference.review import ReviewPolicy
    from product_classifier.preprocessing import canonicalize, decode_image, to_grayscale

    folder = tmp_path / "model"
    shutil.copytree(contract_model.parent, folder)
    card_path = folder / "model_card.json"
    card = json.loads(card_path.read_text())
    pictures = ReviewPolicy(threshold=0.99, out_of_scope_threshold=0.2, temperature=3.0)
    policy = ReviewPolicy(threshold=0.3, temperature=0.5, pictures=pictures)
    card["review"] = policy.to_dict()
    card_path.write_text(json.dumps(card))
    client = server_factory(folder / "model.onnx").client()
    assert client.get("/v1/model").json()["runtime"]["review"] == policy.to_dict()

    def png(pixels: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        return buf.getvalue()

    small = fashion_like(3)
    picture = 255 - np.kron(fashion_like(4), np.ones((4, 4), np.uint8))  # 112x112, on white
    uploads = [(png(small), policy, small)]
    seen = canonicalize(to_grayscale(decode_image(png(picture))))
    uploads.append((png(picture), pictures, seen))
    answers = []
    for data, expected_policy, pixels in uploads:
        body = client.post("/v1/predict", files={"file": ("x.png", data)}).json()
        probs = expected_policy.calibrate(expected_probs(contract_model, pixels)[None])[0]
        check_scores(body, probs)
        assert body["review_reason"] == expected_policy.reason(body["confidence"])
        answers.append(body)
    assert answers[0]["needs_review"] is False and answers[1]["needs_review"] is True
    files = [("files", (f"{i}.png", data)) for i, (data, _, _) in enumerate(uploads)]
    batch = client.post("/v1/predict/batch", files=files).json()["results"]
    for row, single in zip(batch, answers, strict=True):
        assert row["confidence"] == pytest.approx(single["confidence"], rel=1e-5)
        assert row["review_reason"] == single["review_reason"]
