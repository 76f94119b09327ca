"""The load-test tooling: `python -m benchmarks load --smoke` end to end, its parsers and
samplers on real processes, the peers it is configured with, and the batch endpoint's
configurable file limit.

No timing is asserted: the smoke run's figures depend on whoever else uses the machine. What is
checked is that every scenario ran against real servers, got answers without errors, and that
the report and its numbers are where they should be. The smoke run measures the service and
the naive FastAPI + ONNX Runtime peer (the project's own venv); BentoML and LitServe need
`make peers` and run in `make loadtest` only, which a unit test below pins.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from live_server import REPO_ROOT, LiveServer, png_bytes, tiny_checkpoint

from benchmarks.load.hey import hey_command, parse_summary
from benchmarks.load.monitor import TreeMonitor
from benchmarks.load.payloads import (
    BOUNDARY,
    build_pool,
    catalog_jpeg,
    sample_test_images,
)
from benchmarks.load.peers import ALL_PEERS, peers
from benchmarks.load.report import CHECKS, METRICS, soak_growth
from benchmarks.load.runner import PEER_PLAN, LoadOptions
from benchmarks.load.stats import Record, summarize
from product_classifier.preprocessing import preprocess_bytes

# The service's default: the INT8 model behind the cascade's first stage.
MODEL = REPO_ROOT / "artifacts" / "model.int8.onnx"
HEY_SCENARIOS = {name for name in PEER_PLAN if name != "warmup"}
SERVICE_ONLY = {"batch", "mix", "ramp_png", "soak_png"}


def test_the_full_run_measures_every_peer() -> None:
    """`make loadtest` compares against all four peers; each has a venv or runs in ours, and
    the two that need their own venv have pinned requirements without torch."""
    assert LoadOptions().peers == ALL_PEERS
    assert set(ALL_PEERS) == {"naive-1", "naive", "bentoml", "litserve"}
    configured = peers(cores=2)
    assert configured["naive-1"].workers == 1 and configured["naive"].workers == 2
    assert configured["bentoml"].workers == configured["litserve"].workers == 2
    for key in ("bentoml", "litserve"):
        pins = (REPO_ROOT / "benchmarks" / "peers" / f"requirements-{key}.txt").read_text()
        lines = [line for line in pins.splitlines() if line and not line.startswith("#")]
        assert lines and all("==" in line for line in lines), key
        assert any(line.startswith(f"{key}==") for line in lines), key
        assert not any(line.startswith(("torch", "nvidia-cu")) for line in lines), key
        assert configured[key].venv == key
    # The smoke run's peer needs no extra venv.
    assert LoadOptions.smoke_preset().peers == ("naive-1",)
    assert configured["naive-1"].venv is None


def test_a_steady_rate_is_hey_q_per_connection(tmp_path: Path) -> None:
    cmd = hey_command("http://x/v1/predict", tmp_path / "b", "t", 10, 10, 10.0)
    assert cmd[cmd.index("-c") + 1] == "10" and cmd[cmd.index("-q") + 1] == "10"
    assert "-q" not in hey_command("http://x/v1/predict", tmp_path / "b", "t", 10, 64)


@pytest.mark.slow
@pytest.mark.integration
def test_smoke_run_measures_every_scenario_and_writes_the_report(tmp_path: Path) -> None:
    if shutil.which("hey") is None:
        pytest.fail("hey is not installed (apt-get install -y hey): the load test needs it")
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    docs = tmp_path / "docs" / "performance.md"
    cmd = [sys.executable, "-m", "benchmarks", "load", "--smoke"]
    cmd += ["--model", str(MODEL), "--baseline-checkpoint", str(checkpoint)]
    cmd += ["--out-dir", str(tmp_path / "out"), "--docs", str(docs)]
    cmd += ["--evidence", str(tmp_path / "docs" / "evidence" / "loadtest.json")]
    cmd += ["--img-dir", str(tmp_path / "docs" / "img")]
    done = subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((tmp_path / "out" / "latest.json").read_text())
    assert results["smoke"] is True
    assert len(results["loadavg_start"]) == 3 and len(results["loadavg_end"]) == 3
    assert {row["batch"] for row in results["inference_only"]} >= {1}
    assert all(row["images_per_s"] > 0 for row in results["inference_only"])
    assert [p["peer"] for p in results["peers"]] == ["naive-1"]

    servers = {
        "tuned": results["tuned"],
        "baseline": results["baseline"],
        "http_only": results["http_only"],
        "naive-1": results["peers"][0],
    }
    for label, server in servers.items():
        assert server["cold_start_s"] and all(c > 0 for c in server["cold_start_s"])
        assert server["peak_rss_mb"] > 10, label  # a Python process with numpy, at least
        expected = {
            "tuned": HEY_SCENARIOS | SERVICE_ONLY,
            "http_only": HEY_SCENARIOS | {"batch"},
        }.get(label, HEY_SCENARIOS)
        assert expected <= set(server["scenarios"]), (label, sorted(server["scenarios"]))
        for name, scenario in server["scenarios"].items():
            stats = scenario["stats"]
            assert stats["requests"] > 0, (label, name)
            # Light load on healthy servers: every request must succeed.
            assert stats["errors"] == 0, (label, name, stats["status_counts"])
            # hey leaves out a percentile line when a short run has too few samples for it.
            order = [stats[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms") if stats[k]]
            assert order == sorted(order) and len(order) >= 2, (label, name, stats)
            assert scenario["resources"]["cpu_percent_machine"] > 0, (label, name)
            assert scenario["resources"]["peak_rss_mb"] > 10, (label, name)
    # One connection really is one request at a time; the steady rate is hey -q.
    tuned = results["tuned"]["scenarios"]
    assert " -c 1 " in tuned["seq_png"]["command"] and " -q " in tuned["rate_png"]["command"]
    assert [s["users"] for s in tuned["ramp_png"]["steps"]] == [1, 8]
    # The cascade: both stages probed, its worst case (every request escalated) measured.
    assert results["tuned"]["variant"] == "cascade"
    assert results["cascade"]["first"] == "model.student.int8.onnx"
    probed = {Path(row["model"]).name for row in results["inference_only"]}
    # ...and the pictures' expert, which every real picture also goes through.
    assert probed == {"model.int8.onnx", "model.student.int8.onnx", "model.pictures.int8.onnx"}
    # The figures name the files they belong to.
    assert set(results["served_files"]) == probed
    assert all(len(digest) == 64 for digest in results["served_files"].values())
    assert tuned["hey_png_hard"]["cascade"]["escalated"] > 0
    # The batch scenario counts images, not requests: 8 files per request in smoke mode.
    batch = tuned["batch"]["stats"]
    assert batch["images_per_s"] == pytest.approx(8 * batch["rps"])
    assert "png" in tuned["mix"]["stats"]["by_kind"]
    soak = tuned["soak_png"]
    assert soak["rss_series"] and soak["buckets"]
    assert soak_growth(soak) is not None

    text = docs.read_text()
    for heading in ("## Against its peers (same run)", "## Targets", "## Where the time goes"):
        assert heading in text
    assert "naive FastAPI + ONNX Runtime, 1 worker" in text
    assert "as a ratio to each peer" in text and "**The cascade**" in text
    for name in [check.name for check in CHECKS] + [metric.title for metric in METRICS]:
        assert name in text, name
    assert "Smoke run" in text
    plot = tmp_path / "docs" / "img" / "soak-rss.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "img/soak-rss.png" in text and "evidence/loadtest.json" in text
    # The committed JSON is the run's, without hey's raw text.
    evidence = json.loads((tmp_path / "docs" / "evidence" / "loadtest.json").read_text())
    assert evidence["started"] == results["started"]
    assert "raw" not in evidence["tuned"]["scenarios"]["hey_png"]


def test_payloads_are_real_test_images_that_preprocess_back() -> None:
    images = sample_test_images(4, seed=1)
    assert images.shape == (4, 28, 28) and images.dtype == np.uint8
    pool = build_pool(png_count=2, jpeg_count=1, batch_count=1, batch_files=3)
    assert len(pool.png) == 2 and len(pool.jpeg) == 1 and len(pool.batch) == 1
    assert pool.batch[0].count(f"--{BOUNDARY}\r\n".encode()) == 3
    # The catalog photo is dark on white at 600x600 and canonicalises back to a 28x28 item.
    jpeg = catalog_jpeg(images[0])
    import io

    from PIL import Image

    photo = Image.open(io.BytesIO(jpeg))
    assert photo.size == (600, 600) and photo.mode == "RGB"
    corner = np.asarray(photo.convert("L"))[:20, :20]
    assert corner.min() > 240  # white page
    x = preprocess_bytes(jpeg)
    assert x.shape == (1, 1, 28, 28) and x.max() > 0.5


def test_hey_summary_is_parsed_including_errors() -> None:
    text = """
Summary:
  Total:\t20.0104 secs
  Slowest:\t0.3097 secs
  Fastest:\t0.0013 secs
  Average:\t0.0476 secs
  Requests/sec:\t1339.2953

Latency distribution:
  10% in 0.0207 secs
  50% in 0.0401 secs
  95% in 0.0876 secs
  99% in 0.1677 secs

Status code distribution:
  [200]\t26700 responses
  [503]\t10 responses

Error distribution:
  [90]\tPost "http://127.0.0.1:8000/v1/predict": EOF
"""
    stats = parse_summary(text)
    assert stats["rps"] == pytest.approx(1339.2953)
    assert stats["mean_ms"] == pytest.approx(47.6)
    assert stats["p50_ms"] == pytest.approx(40.1)
    assert stats["p95_ms"] == pytest.approx(87.6)
    assert stats["p99_ms"] == pytest.approx(167.7)
    assert stats["requests"] == 26800
    assert stats["errors"] == 100
    assert stats["status_counts"] == {"200": 26700, "503": 10, "0": 90}
    assert stats["images_per_s"] == pytest.approx(26700 / 20.0104)


def test_summary_percentiles_and_error_rate() -> None:
    records = [
        Record(end=float(i), latency_ms=float(i), status=200, kind="png", ok=True, images=1)
        for i in range(1, 101)
    ]
    records.append(Record(end=1.0, latency_ms=1.0, status=503, kind="png", ok=False, images=1))
    stats = summarize(records, 10.0)
    assert stats["requests"] == 101 and stats["errors"] == 1
    assert stats["rps"] == pytest.approx(10.1)
    assert stats["images_per_s"] == pytest.approx(10.0)
    assert stats["p50_ms"] == pytest.approx(50.0) and stats["max_ms"] == 100.0
    assert stats["status_counts"] == {"200": 100, "503": 1}


def test_tree_monitor_sums_children_cpu_and_memory(tmp_path: Path) -> None:
    """A parent that starts a child which allocates ~200 MB and spins: both are counted."""
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import time\\nb = bytearray(200 * 2**20)\\nend = time.time() + 3\\n"
        "while time.time() < end: pass'])\n"
        "child.wait()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        monitor = TreeMonitor(proc.pid, interval_s=0.1).start()
        t0 = time.time()
        proc.wait(timeout=30)
        t1 = time.time()
        monitor.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
    window = monitor.window(t0, t1)
    assert window.processes == 2
    assert window.peak_rss_mb > 200
    assert window.cpu_percent_machine > 0


def test_batch_file_limit_is_configurable(
    server_factory: Callable[..., LiveServer], contract_model: Path
) -> None:
    live = server_factory(contract_model, {"PRODUCT_CLASSIFIER_MAX_BATCH_FILES": "3"})
    images = [np.full((28, 28), 40 * i, np.uint8) for i in range(4)]
    files = [("files", (f"{i}.png", png_bytes(img), "image/png")) for i, img in enumerate(images)]
    client = live.client()
    too_many = client.post("/v1/predict/batch", files=files)
    assert too_many.status_code == 413
    assert too_many.json()["error"]["code"] == "too_many_files"
    ok = client.post("/v1/predict/batch", files=files[:3])
    assert ok.status_code == 200, ok.text
    assert [r["filename"] for r in ok.json()["results"]] == ["0.png", "1.png", "2.png"]
