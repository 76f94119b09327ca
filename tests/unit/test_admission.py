"""InFlightLimitMiddleware: /v1 requests beyond max_in_flight get a JSON 503 at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from product_classifier.serving.admission import InFlightLimitMiddleware


def scope(path: str) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "headers": [], "state": {}}


async def call(app: Any, path: str) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope(path), receive, send)
    return sent


def test_requests_beyond_the_limit_get_503_with_retry_after_until_one_finishes() -> None:
    release = asyncio.Event()
    entered: list[str] = []

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        entered.append(scope["path"])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> None:
        app = InFlightLimitMiddleware(slow_app, max_in_flight=2, retry_after_s=3)
        held = [asyncio.ensure_future(call(app, "/v1/predict")) for _ in range(2)]
        while len(entered) < 2:
            await asyncio.sleep(0)
        refused = await call(app, "/v1/predict/batch")
        assert refused[0]["status"] == 503
        headers = dict(refused[0]["headers"])
        assert headers[b"retry-after"] == b"3"
        assert json.loads(refused[1]["body"])["error"]["code"] == "overloaded"
        # Probes are never refused (they reach the app even at the limit).
        probe = asyncio.ensure_future(call(app, "/ready"))
        while len(entered) < 3:
            await asyncio.sleep(0)
        release.set()
        for done in await asyncio.gather(*held, probe):
            assert done[0]["status"] == 200
        assert app.in_flight == 0 and app.refused == 1
        # Below the limit again: admitted.
        assert (await call(app, "/v1/predict"))[0]["status"] == 200

    asyncio.run(asyncio.wait_for(scenario(), timeout=10))
