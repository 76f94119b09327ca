"""Fixtures for the API tests: the real server in a subprocess on 127.0.0.1, real HTTP.

``server`` is one shared instance running the tiny contract model (``build_contract_model``);
``server_factory`` starts extra instances with their own settings. Nothing here is autouse,
so other integration tests in this directory are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live_server import LiveServer, launch, make_contract_model, png_bytes, wait_ready


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
