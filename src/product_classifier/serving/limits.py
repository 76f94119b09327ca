"""A deadline for receiving a request body, so slow clients cannot hold the service.

A slowloris-style client trickles its upload a byte at a time; every such request holds a
connection, a multipart parser and, once the route runs, a spooled file. uvicorn has no body
timeout of its own, so this pure-ASGI middleware gives the whole body ``timeout_s`` seconds
from the first read: past that the app gets a 408 (JSON, like every error) and the connection
is closed. Other clients are unaffected meanwhile: waiting for bytes costs the event loop
nothing. Requests whose body nobody reads (GET) are never timed.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from product_classifier.serving.errors import ApiError


class BodyTimeoutError(ApiError):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            408,
            "request_timeout",
            f"the request body did not arrive within {timeout_s:g} s",
            {"Connection": "close"},
        )


class BodyTimeoutMiddleware:
    def __init__(self, app: ASGIApp, *, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout_s <= 0:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        complete = False

        async def timed_receive() -> Message:
            nonlocal deadline, complete
            if complete:  # later reads wait for a disconnect, which may take forever
                return await receive()
            if deadline is None:
                deadline = loop.time() + self.timeout_s
            try:
                # timeout_at arms a timer around the await; wait_for would also spawn a task
                # per read (measured ~2% of a small request's CPU).
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeoutError(self.timeout_s) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed_receive, send)
