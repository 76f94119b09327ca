"""Checks a running product-classifier container from the host (called by docker/test.sh).

Not collected by pytest (no ``test_`` prefix): it needs a container, which ``make docker-test``
starts. Each sub-command exits non-zero with one line per failure.

    python tests/docker/container_smoke.py predict --url http://127.0.0.1:PORT
    python tests/docker/container_smoke.py logs --file container.log
    python tests/docker/container_smoke.py metrics --url http://127.0.0.1:PORT
    python tests/docker/container_smoke.py wait-ready --url URL --since-ns NS
    python tests/docker/container_smoke.py prometheus --url http://127.0.0.1:PROM_PORT
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# Real test images, spread over the 10k test set; enough for a meaningful accuracy floor
# (the released model has 95.5%: 64 images at >= 85% fail by chance with p < 1e-3).
N_IMAGES = 64
MIN_ACCURACY = 0.85
LOG_KEYS = ("ts", "level", "msg")


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _multipart(files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """(field, filename, data) parts -> (body, content type); stdlib only, like a real client."""
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for field, name, data in files:
        body.write(f"--{boundary}\r\n".encode())
        body.write(
            f'Content-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n".encode()
        )
        body.write(data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def _post(url: str, files: list[tuple[str, str, bytes]]) -> dict[str, Any]:
    body, ctype = _multipart(files)
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        result: dict[str, Any] = json.load(resp)
        return result


def _served_model(url: str, artifacts: Path) -> Path:
    """The file in ``artifacts`` whose sha256 the container reports (/v1/model) serving."""
    from product_classifier.inference.model_card import sha256_file

    sha = _get_json(f"{url}/v1/model")["runtime"]["sha256"]
    for path in sorted(artifacts.glob("*.onnx")):
        if sha256_file(path) == sha:
            return path
    raise SystemExit(f"FAIL predict: the container serves sha256 {sha}, not in {artifacts}")


def check_predictions(url: str, artifacts: Path) -> list[str]:
    """Container answers == host-side onnxruntime on the same files and PNGs; accuracy holds."""
    # Imported here: `wait-ready` must start polling at once.
    import numpy as np

    from product_classifier.constants import CLASS_NAMES
    from product_classifier.data.fashion_mnist import load_fashion_mnist
    from product_classifier.inference.model_card import load_verified_model
    from product_classifier.inference.review import review_policy
    from product_classifier.preprocessing import preprocess_bytes

    images, labels = load_fashion_mnist("test")
    idx = np.linspace(0, len(images) - 1, N_IMAGES).astype(int)
    pngs = [_png(images[i]) for i in idx]
    model = _served_model(url, artifacts)
    # The same cascade the container serves by default (its first stage comes from the card).
    served_version = _get_json(f"{url}/v1/model")["runtime"]["model_version"]
    cascade = served_version.endswith("+cascade")
    verified = load_verified_model(model, cascade=cascade)
    predictor = verified.predictor
    assert predictor.model_version == served_version, (predictor.model_version, served_version)
    batch = np.concatenate([preprocess_bytes(p) for p in pngs])
    # The service reports probabilities through the card's review policy (its temperature).
    host_proba = review_policy(verified.card).calibrate(predictor.predict_proba(batch))
    host_top1 = host_proba.argmax(axis=1)

    failures: list[str] = []
    singles = [
        _post(f"{url}/v1/predict", [("file", f"{i}.png", pngs[k])]) for k, i in enumerate(idx[:8])
    ]
    batch_resp = _post(
        f"{url}/v1/predict/batch",
        [("files", f"{i}.png", p) for i, p in zip(idx, pngs, strict=True)],
    )
    results = batch_resp.get("results", [])
    if len(results) != N_IMAGES:
        return [f"batch: {len(results)} results for {N_IMAGES} files: {batch_resp}"]
    for k, res in enumerate(singles):
        if res.get("class_id") != results[k].get("class_id"):
            failures.append(f"image {idx[k]}: /v1/predict {res} != batch {results[k]}")
    got = np.array([r.get("class_id", -1) for r in results])
    for k, r in enumerate(results):
        if got[k] < 0 or r.get("category") != CLASS_NAMES[got[k]]:
            failures.append(f"image {idx[k]}: bad result {r}")
        elif abs(r["confidence"] - float(host_proba[k, got[k]])) > 1e-3:
            failures.append(
                f"image {idx[k]}: confidence {r['confidence']} != host {host_proba[k, got[k]]}"
            )
    mismatch = int((got != host_top1).sum())
    if mismatch:
        failures.append(f"{mismatch}/{N_IMAGES} container predictions differ from the host's")
    accuracy = float((got == labels[idx]).mean())
    if accuracy < MIN_ACCURACY:
        failures.append(f"accuracy {accuracy:.3f} < {MIN_ACCURACY} on {N_IMAGES} test images")
    print(
        json.dumps(
            {
                "model": model.name,
                "images": N_IMAGES,
                "accuracy": accuracy,
                "host_parity_mismatches": mismatch,
                "model_version": batch_resp.get("model_version"),
            }
        )
    )
    return failures


def check_logs(path: Path) -> list[str]:
    """Every line the container wrote is a JSON object with the structured-log keys."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        return [f"{path}: the container wrote no log lines"]
    failures = []
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            failures.append(f"log line {n} is not JSON: {line[:200]}")
            continue
        missing = [k for k in LOG_KEYS if not isinstance(record, dict) or k not in record]
        if missing:
            failures.append(f"log line {n} lacks {missing}: {line[:200]}")
    print(json.dumps({"log_lines": len(lines), "non_json": len(failures)}))
    return failures[:10]


def check_metrics(url: str) -> list[str]:
    """/metrics speaks the Prometheus text format and counted the predictions."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        ctype = resp.headers.get("Content-Type", "")
        text = resp.read().decode()
    failures = []
    if not ctype.startswith("text/plain"):
        failures.append(f"/metrics Content-Type is {ctype!r}, not the Prometheus text format")
    if "# TYPE " not in text:
        failures.append("/metrics has no '# TYPE' lines")
    counted = [
        line
        for line in text.splitlines()
        if line.startswith("http_requests_total") and "/v1/predict" in line
    ]
    if not counted:
        failures.append("/metrics did not count the /v1/predict requests (http_requests_total)")
    return failures


def wait_ready(url: str, since_ns: int, timeout_s: float) -> list[str]:
    """Poll /ready every 20 ms; print seconds from ``since_ns`` (taken before `docker run`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=1) as resp:
                if resp.status == 200:
                    print(f"{(time.time_ns() - since_ns) / 1e9:.3f}")
                    return []
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.02)
    return [f"{url}/ready did not answer 200 within {timeout_s} s"]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def check_prometheus(url: str, job: str, timeout_s: float) -> list[str]:
    """Prometheus loaded the rules, found Alertmanager and scraped ``job`` successfully."""
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            targets = _get_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
            rules = _get_json(f"{url}/api/v1/rules")["data"]["groups"]
            ams = _get_json(f"{url}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError) as exc:
            state = {"error": str(exc)}
            time.sleep(1)
            continue
        health = [t["health"] for t in targets if t["labels"].get("job") == job]
        state = {"targets": health, "rule_groups": len(rules), "alertmanagers": len(ams)}
        if health and all(h == "up" for h in health) and rules and ams:
            print(json.dumps(state))
            return []
        time.sleep(1)
    return [f"after {timeout_s} s: {state} (want job {job!r} up, rules and an alertmanager)"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict")
    p.add_argument("--url", required=True)
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    lg = sub.add_parser("logs")
    lg.add_argument("--file", type=Path, required=True)
    m = sub.add_parser("metrics")
    m.add_argument("--url", required=True)
    w = sub.add_parser("wait-ready")
    w.add_argument("--url", required=True)
    w.add_argument("--since-ns", type=int, required=True)
    w.add_argument("--timeout", type=float, default=60.0)
    pr = sub.add_parser("prometheus")
    pr.add_argument("--url", required=True)
    pr.add_argument("--job", default="product-classifier")
    pr.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    if args.command == "predict":
        failures = check_predictions(args.url.rstrip("/"), args.artifacts)
    elif args.command == "logs":
        failures = check_logs(args.file)
    elif args.command == "wait-ready":
        failures = wait_ready(args.url.rstrip("/"), args.since_ns, args.timeout)
    elif args.command == "prometheus":
        failures = check_prometheus(args.url.rstrip("/"), args.job, args.timeout)
    else:
        failures = check_metrics(args.url.rstrip("/"))
    for failure in failures:
        print(f"FAIL {args.command}: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
