"""Does a new release keep the served default fast? Same run, same load, two model folders.

    python scripts/release_throughput.py --before DIR --after DIR [--seconds 15] [--rounds 2]

Serves each folder's default (``product-classifier serve`` with its defaults: the cascade when
the card has one) in turn, alternating over ``--rounds`` so that machine noise hits both, and
drives it with hey (64 keep-alive connections) on two payloads: a Fashion-MNIST-style 28x28
PNG and a 600x600 catalog-style JPEG, whose preprocessing routes it through the real-picture
path. Reports req/s per folder and the after/before ratio: the figure that carries over to the
same-run peers of ``make loadtest`` (``docs/performance.md``). The result goes to
``docs/evidence/release-throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "evidence" / "release-throughput.json"
sys.path.insert(0, str(ROOT))  # the harness (benchmarks/) is in the repository, not the package


def payloads(folder: Path) -> dict[str, tuple[Path, str]]:
    """The load test's own bodies (benchmarks/load/payloads.py): a test image as a 28x28 PNG
    and as a 600x600 catalog JPEG, each a complete multipart upload."""
    from benchmarks.load.payloads import (
        CONTENT_TYPE,
        Part,
        catalog_jpeg,
        multipart_body,
        png_28,
        sample_test_images,
    )

    image = sample_test_images(1)[0]
    out = {}
    for name, filename, kind, data in (
        ("28x28 PNG", "item.png", "image/png", png_28(image)),
        ("600x600 JPEG", "photo.jpg", "image/jpeg", catalog_jpeg(image)),
    ):
        body = folder / f"{filename}.multipart"
        body.write_bytes(multipart_body([Part("file", filename, kind, data)]))
        out[name] = (body, CONTENT_TYPE)
    return out


def measure(model_dir: Path, bodies: dict, seconds: float, log: Path) -> dict[str, float]:
    from benchmarks.load.hey import run_hey
    from benchmarks.server import free_port, start_server

    port = free_port()
    cmd = [sys.executable, "-m", "product_classifier.cli.main", "serve", "--port", str(port)]
    env = {"PRODUCT_CLASSIFIER_MODEL_PATH": str(model_dir / "model.int8.onnx")}
    server = start_server(model_dir.name, cmd, port=port, log_path=log, env=env)
    try:
        out = {}
        for name, (body, content_type) in bodies.items():
            url = f"{server.base_url}/v1/predict"
            run_hey(url, body, content_type, seconds=2, connections=64)  # warm
            stats = run_hey(url, body, content_type, seconds=seconds, connections=64)["stats"]
            if stats["error_rate"] > 0:
                raise RuntimeError(f"{model_dir}: {stats['errors']} errors on {name}")
            out[name] = stats["rps"]
        return out
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = ROOT / "reports" / "release-throughput"
    work.mkdir(parents=True, exist_ok=True)
    bodies = payloads(work)
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for r in range(args.rounds):
        for label in ("before", "after") if r % 2 == 0 else ("after", "before"):
            folder = getattr(args, label)
            runs[label].append(measure(folder, bodies, args.seconds, work / f"{label}{r}.log"))
            print(label, runs[label][-1], flush=True)
    median = {
        label: {name: statistics.median(run[name] for run in rs) for name in bodies}
        for label, rs in runs.items()
    }
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "connections": 64,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "median_rps": median,
        "ratio_after_to_before": {
            name: median["after"][name] / median["before"][name] for name in bodies
        },
        "runs": runs,
    }
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["median_rps"]), json.dumps(report["ratio_after_to_before"]))


if __name__ == "__main__":
    main()
