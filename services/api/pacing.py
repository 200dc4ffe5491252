"""The pace and size of a request body: a client that stalls or trickles is cut, with a 408;
a body over the limit is refused, with a 413.

Watched here rather than in the server's protocol because only time spent *waiting in
receive()* is the client's fault: while the app writes to disk, uvicorn stops reading the
socket and the client cannot send. Each window of `window` seconds of such waiting must bring at
least `max(1, min_rate * window)` bytes; a window that does not ends the request with 408
`body_too_slow` and `Connection: close`. The upload endpoint then discards its staged file
(nothing was acknowledged, so nothing is kept).

Every body but a segment push (whose route streams it to disk under its own, far larger limit)
is at most `max_bytes`: FastAPI reads a route's JSON or form body *before* its dependencies
run, the bearer check included, so without this anyone could make the server hold a body of
any size in memory. A declared `Content-Length` over it is answered before a byte is read; a
chunked body is cut where it passes the limit.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import error_response

logger = logging.getLogger(__name__)


class BodyTooSlow(HTTPException):
    """Raised from `receive()`; an HTTPException so FastAPI's body parsing lets it through."""

    code = "body_too_slow"

    def __init__(self, received: int, window: float, needed: int) -> None:
        super().__init__(
            408,
            f"the request body stalled: {received} bytes in {window:g} s of waiting, "
            f"at least {needed} needed; send it again",
        )


class BodyTooLarge(HTTPException):
    """Raised from `receive()` when a body passes the limit (see BodyTooSlow for why)."""

    code = "too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the {limit}-byte limit")


def _streams_its_own_body(scope: Scope) -> bool:
    """A segment push: its route streams the body to the spool and caps it itself."""
    return scope["method"] == "PUT" and scope["path"].startswith("/api/v1/ingest/")


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length" and value.isdigit():
            return int(value)
    return None


class _PacedReceive:
    def __init__(
        self, receive: Receive, window: float, min_rate: float, max_bytes: int | None = None
    ) -> None:
        self._receive = receive
        self.max_bytes = max_bytes
        self.total = 0
        self.window = window
        self.needed = max(1, int(min_rate * window))
        self.waited = 0.0
        self.received = 0
        self.body_complete = False
        self.cut = False

    async def __call__(self) -> Message:
        if self.body_complete:
            # Past the body (e.g. a streaming response listening for a disconnect): not paced.
            return await self._receive()
        while True:
            started = time.monotonic()
            message: Message | None
            try:
                async with asyncio.timeout(self.window - self.waited):
                    message = await self._receive()
            except TimeoutError:
                message = None
                self.waited = self.window
            else:
                self.waited += time.monotonic() - started
                if message["type"] == "http.request":
                    self.received += len(message.get("body", b""))
                    self.total += len(message.get("body", b""))
                    if self.max_bytes is not None and self.total > self.max_bytes:
                        raise BodyTooLarge(self.max_bytes)
                    self.body_complete = not message.get("more_body", False)
                else:
                    self.body_complete = True
            if self.waited >= self.window and not self.body_complete:
                if self.received < self.needed:
                    self.cut = True
                    raise BodyTooSlow(self.received, self.window, self.needed)
                self.waited, self.received = 0.0, 0
            if message is not None:
                return message


class BodyPacing:
    """ASGI middleware applying `_PacedReceive` to every HTTP request."""

    def __init__(
        self, app: ASGIApp, *, window: float, min_rate: float, max_bytes: int | None = None
    ) -> None:
        self.app = app
        self.window = window
        self.min_rate = min_rate
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = None if _streams_its_own_body(scope) else self.max_bytes
        declared = _declared_length(scope)
        if max_bytes is not None and declared is not None and declared > max_bytes:
            # Not a byte of it is read; the server drains what is in flight for a while only.
            refusal = error_response(
                413,
                "too_large",
                f"Content-Length {declared} is over the {max_bytes}-byte limit for this route",
            )
            await refusal(scope, receive, send)
            return
        paced = _PacedReceive(receive, self.window, self.min_rate, max_bytes)

        async def send_closing(message: Message) -> None:
            # A cut client may still be sending: the connection must not be reused.
            if message["type"] == "http.response.start" and paced.cut:
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, paced, send_closing)
        if paced.cut:
            client = scope.get("client")
            logger.info(
                "cut %s %s from %s: the body stalled (under %d bytes in %g s of waiting)",
                scope["method"],
                scope["path"],
                f"{client[0]}:{client[1]}" if client else "?",
                paced.needed,
                self.window,
            )
