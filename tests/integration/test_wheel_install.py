"""The package as a user gets it: build the wheel, install it into a fresh venv, serve.

``pip install 'product-classifier[serve]'`` and then ``product-classifier serve`` from an empty
folder, with no setting at all, must serve the released default model (the cascade). The
wheel is built from a copy of the sources (so the checkout gets no build/ folder), installed
(not editable) from a local wheelhouse of the pinned serving requirements with ``--no-index``:
only what pyproject declares gets installed, so a missing dependency fails here. The
wheelhouse is downloaded once and kept under .cache/wheelhouse/, keyed by the lock.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_server import REPO_ROOT, png_bytes

from benchmarks.server import ServerProcess, free_port
from product_classifier.data.fashion_mnist import load_fashion_mnist
from product_classifier.inference.model_card import load_model_card, load_verified_model
from product_classifier.preprocessing import to_model_input
from product_classifier.released import RELEASE_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOCK = REPO_ROOT / "requirements" / "serve.txt"
N_IMAGES = 32
PIP_TIMEOUT_S = 300


def _pip(*args: str | Path) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"


def _wheelhouse() -> Path:
    """Wheels of every pinned serving requirement (and their dependencies), downloaded once."""
    key = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:12]
    folder = REPO_ROOT / ".cache" / "wheelhouse" / f"wheel-test-serve-{key}"
    if not (folder / ".complete").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        _pip("download", "--only-binary=:all:", "-q", "-d", folder, "-r", LOCK)
        (folder / ".complete").touch()
    return folder


def _build_wheel(tmp: Path) -> Path:
    """The wheel, built from a copy of what the package is made of (links kept as links)."""
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(
        REPO_ROOT / "src",
        source / "src",
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    shutil.copytree(REPO_ROOT / "artifacts", source / "artifacts")
    dist = tmp / "dist"
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, source)
    (wheel,) = dist.glob("product_classifier-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel + [serve] installed offline; returns its bin/."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(tmp)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    _pip(
        "--python",
        python,
        "install",
        "-q",
        "--no-index",
        "--find-links",
        _wheelhouse(),
        "-c",
        LOCK,
        f"{wheel}[serve]",
    )
    return venv / "bin"


def _clean_env(home: Path, bin_dir: Path) -> dict[str, str]:
    """No PRODUCT_CLASSIFIER_* setting, no PYTHONPATH, no virtualenv of ours: a new shell."""
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def test_the_wheel_carries_every_released_file(installed: Path, tmp_path: Path) -> None:
    code = "import product_classifier.released as r; print(r.RELEASE_DIR)"
    done = subprocess.run(
        [installed / "python", "-c", code],
        capture_output=True,
        text=True,
        env=_clean_env(tmp_path, installed),
        cwd=tmp_path,
        check=True,
    )
    packaged = Path(done.stdout.strip())
    assert packaged.is_relative_to(installed.parent), f"not the installed wheel: {packaged}"
    for name in (
        "model.int8.onnx",
        "model.student.int8.onnx",
        "model.pictures.int8.onnx",
        "model.onnx",
        "model_card.json",
    ):
        copy = packaged / name
        assert copy.is_file() and not copy.is_symlink(), f"{copy} missing from the wheel"
        assert copy.read_bytes() == (RELEASE_DIR / name).read_bytes(), f"{name} differs"


def test_serve_from_an_empty_folder_with_no_settings(
    installed: Path, tmp_path: Path, fashion_mnist
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [installed / "product-classifier", "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=empty,
            env=_clean_env(tmp_path, installed),
        )
    server = ServerProcess("wheel", process, port, log_path, started)
    try:
        server.wait_ready(120.0)
        assert os.listdir(empty) == [], "serving wrote into the working directory"
        images = load_fashion_mnist("train", data_dir=fashion_mnist.directory)[0][:N_IMAGES]
        images = np.ascontiguousarray(images)
        # The answer the released cascade gives in this process, from the checkout's files.
        model = load_verified_model(RELEASE_DIR / "model.int8.onnx", cascade=True)
        expected = model.predictor.predict_proba(to_model_input(images)).argmax(axis=1)
        with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
            served = client.get("/v1/model").json()
            card = load_model_card(RELEASE_DIR / "model_card.json")
            assert card["variants"]["int8"]["sha256"] in str(served), served
            assert card["cascade"]["first"]["sha256"] in str(served), served
            answers = []
            for i, image in enumerate(images):
                r = client.post("/v1/predict", files={"file": (f"{i}.png", png_bytes(image))})
                assert r.status_code == 200, r.text
                answers.append(int(r.json()["class_id"]))
        assert answers == expected.tolist()
    finally:
        server.stop()
