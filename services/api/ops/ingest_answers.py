"""Counts every answer to a push (`PUT /api/v1/ingest/...`) by status and error code, and times
it, whoever answered: the route, an auth dependency, an error handler or a crash.

A pure ASGI middleware: it reads only what passes by (the status line, and the body of an error
answer, which is a small JSON), so an upload's body streams through untouched.
"""

from __future__ import annotations

import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.operations.metrics import OperationsMetrics

_INGEST_PREFIX = "/api/v1/ingest/"
# Error answers are one small JSON object; anything longer is not parsed for its code.
_ERROR_BODY_LIMIT = 64 * 1024


class IngestAnswers:
    def __init__(self, app: ASGIApp, metrics: OperationsMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_INGEST_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500
        body = bytearray()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif (
                message["type"] == "http.response.body"
                and status >= 400
                and len(body) < _ERROR_BODY_LIMIT
            ):
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.http_ingest_seconds.observe(time.monotonic() - started)
            self.metrics.http_ingest_answers.labels(str(status), _code(status, body)).inc()


def _code(status: int, body: bytes | bytearray) -> str:
    if status < 400:
        return "stored" if status == 201 else "duplicate" if status == 200 else "ok"
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        code = None
    return code if isinstance(code, str) and code.isidentifier() else "unknown"
