"""`product-classifier predict` as a real process: through a live service (--url) and locally.

Real Fashion-MNIST test images are written as PNG and JPEG files into a folder tree, with a
broken file among them. Through the service and with the same model loaded locally, the
command must give the same rows, report the broken file as an error row and exit with 1; on a
clean folder it exits with 0.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from live_server import REPO_ROOT, clean_env
from PIL import Image

from product_classifier.data.fashion_mnist import load_fashion_mnist

if TYPE_CHECKING:
    from live_server import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_IMAGES = 40
API_KEY = "cli-test-key-" + "0123456789abcdef"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "product_classifier.cli.main", "predict", *args],
        cwd=REPO_ROOT,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """photos/{png,jpg/nested}/... with real test images, plus photos/jpg/broken.jpg."""
    images, _ = load_fashion_mnist("test")
    root = tmp_path_factory.mktemp("photos")
    for i in range(N_IMAGES):
        if i % 2:
            target = root / "jpg" / "nested" / f"item{i:03d}.jpg"
        else:
            target = root / "png" / f"item{i:03d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(target, quality=95)
    (root / "jpg" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF this is not a photo")
    (root / "png" / "readme.txt").write_text("not an image: ignored inside folders")
    return root


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return {row["path"]: row for row in csv.DictReader(fh)}


def test_url_and_local_give_the_same_rows_and_exit_1_for_a_broken_file(
    server: LiveServer, contract_model: Path, photo_tree: Path, tmp_path: Path
) -> None:
    remote_csv, local_csv = tmp_path / "remote.csv", tmp_path / "local.csv"
    remote = run_cli(
        str(photo_tree), "--url", server.base_url, "-o", str(remote_csv), "--batch-size", "16"
    )
    local = run_cli(str(photo_tree), "--model", str(contract_model), "-o", str(local_csv))
    assert remote.returncode == 1, remote.stderr
    assert local.returncode == 1, local.stderr

    remote_rows, local_rows = read_csv(remote_csv), read_csv(local_csv)
    assert list(remote_rows) == list(local_rows)
    assert len(remote_rows) == N_IMAGES + 1  # the .txt inside the folder is not an image
    broken = str(photo_tree / "jpg" / "broken.jpg")
    for path, r in remote_rows.items():
        lo = local_rows[path]
        if path == broken:
            assert r["error_code"] == lo["error_code"] == "corrupt_image"
            continue
        assert r["error_code"] == "" and r["category"] == lo["category"]
        assert r["class_id"] == lo["class_id"] and r["needs_review"] == lo["needs_review"]
        assert float(r["confidence"]) == pytest.approx(float(lo["confidence"]), abs=1e-5)
        assert [r[f"top{k}"] for k in (1, 2, 3)] == [lo[f"top{k}"] for k in (1, 2, 3)]
        assert r["model_version"] == lo["model_version"] == "test-0"
    assert "1 failed" in remote.stderr and "broken.jpg" in remote.stderr


def test_a_clean_glob_through_the_service_exits_0_with_json(
    server: LiveServer, photo_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results.json"
    pattern = str(photo_tree / "**" / "*.png")
    result = run_cli(pattern, "--url", server.base_url, "-o", str(out))
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert document["summary"] == {
        "images": N_IMAGES // 2,
        "classified": N_IMAGES // 2,
        "needs_review": document["summary"]["needs_review"],
        "failed": 0,
    }
    assert document["source"] == server.base_url
    assert all(len(r["top_k"]) == 3 for r in document["results"])


def test_url_with_api_keys_needs_the_key_and_never_prints_it(
    server_factory: Callable[..., LiveServer],
    contract_model: Path,
    photo_tree: Path,
    tmp_path: Path,
) -> None:
    keyed = server_factory(contract_model, {"PRODUCT_CLASSIFIER_API_KEYS": API_KEY})
    pattern = str(photo_tree / "png" / "*.png")
    out = tmp_path / "keyed.csv"

    missing = run_cli(pattern, "--url", keyed.base_url, "-o", str(out))
    assert missing.returncode == 2, missing.stderr
    assert "needs an API key" in missing.stderr and "PRODUCT_CLASSIFIER_API_KEY" in missing.stderr
    assert not out.exists()

    wrong_key = "not-the-key-" + "fedcba9876543210"
    wrong = run_cli(pattern, "--url", keyed.base_url, "--api-key", wrong_key)
    assert wrong.returncode == 2, wrong.stderr
    assert "refused the API key" in wrong.stderr
    assert wrong_key not in wrong.stderr + wrong.stdout

    by_env = run_cli(
        pattern,
        "--url",
        keyed.base_url,
        "-o",
        str(out),
        env={"PRODUCT_CLASSIFIER_API_KEY": API_KEY},
    )
    assert by_env.returncode == 0, by_env.stderr
    rows = read_csv(out)
    assert len(rows) == N_IMAGES // 2 and all(r["category"] for r in rows.values())
    by_option = run_cli(pattern, "--url", keyed.base_url, "--api-key", API_KEY)
    assert by_option.returncode == 0, by_option.stderr
    assert by_option.stdout.count("\n") == N_IMAGES // 2 + 1  # header + one row per image
    for run in (by_env, by_option):
        assert API_KEY not in run.stderr + run.stdout
    assert API_KEY not in keyed.log()
