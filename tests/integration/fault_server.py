"""The real service with a fault switch, for test_faults.py: ``python fault_server.py PORT``.

It is the app ``product-classifier serve`` runs (create_app, settings from the environment,
uvicorn), plus two test-only routes that exist only in this process:

* ``POST /_faults/model?mode=ok|raise|hang|slow&seconds=S``: from now on every model call
  works, raises, blocks until the mode changes again, or sleeps S seconds first;
* ``GET /_faults/model``: the mode, and how many model calls are hanging now;
* ``POST /_faults/kill-batcher?restart_delay=S``: cancels the micro-batcher's worker task, as
  a bug in it would end it, after setting its restart delay (so /ready's 503 lasts long enough
  to be seen).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from product_classifier.serving.app import create_app


class FaultSwitch:
    def __init__(self) -> None:
        self.mode = "ok"
        self.seconds = 0.0
        self.unhang = threading.Event()
        self.hanging = 0  # model calls blocked in "hang" right now

    def set(self, mode: str, seconds: float) -> None:
        self.seconds = seconds
        self.mode = mode
        if mode == "hang":
            self.unhang.clear()
        else:
            self.unhang.set()

    def wrap(self, predict: Any) -> Any:
        def faulty(batch: np.ndarray) -> np.ndarray:
            mode = self.mode
            if mode == "raise":
                raise RuntimeError("injected model failure: secret internals")
            if mode == "hang":
                self.hanging += 1
                self.unhang.wait(120)
                self.hanging -= 1
            elif mode == "slow":
                time.sleep(self.seconds)
            return predict(batch)

        return faulty


def build() -> FastAPI:
    app = create_app()
    switch = FaultSwitch()

    async def set_model(request: Request, mode: str, seconds: float = 0.0) -> JSONResponse:
        batcher = request.app.state.service.batcher
        if not hasattr(batcher, "_fault_wrapped"):
            batcher._predict_fn = switch.wrap(batcher._predict_fn)
            batcher._fault_wrapped = True
        switch.set(mode, seconds)
        return JSONResponse({"mode": mode})

    async def model_state() -> JSONResponse:
        return JSONResponse({"mode": switch.mode, "hanging": switch.hanging})

    async def kill_batcher(request: Request, restart_delay: float = 0.1) -> JSONResponse:
        batcher = request.app.state.service.batcher
        batcher.restart_delay_s = restart_delay
        batcher._worker.cancel()
        return JSONResponse({"killed": True})

    app.add_api_route("/_faults/model", set_model, methods=["POST"])
    app.add_api_route("/_faults/model", model_state, methods=["GET"])
    app.add_api_route("/_faults/kill-batcher", kill_batcher, methods=["POST"])
    return app


if __name__ == "__main__":
    uvicorn.run(build(), host="127.0.0.1", port=int(sys.argv[1]), log_level="info")
