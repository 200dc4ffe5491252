"""`examvault serve`'s HTTP server: uvicorn with deadlines a hostile client cannot outwait.

uvicorn bounds the idle time between requests (`timeout_keep_alive`) but not the time to send a
request head, nor a fresh connection that never sends a byte, nor a client still trickling the
body of a request already answered; and its `limit_concurrency` answers 503 only once a request
arrives, so idle sockets still pile up until file descriptors run out. `EdgeProtocol` adds:

- a head deadline: a request head must be complete within `header_timeout` of the moment the
  connection started waiting for it (accept, or the previous response), else the socket closes;
- a linger deadline: a body still arriving after its request was answered (401, 413) is
  drained for at most `body_timeout`, then the socket closes;
- a connection cap: over it, the connections that have waited longest with no request in
  progress are closed to make room; when every connection is busy, the newcomer gets a JSON
  503 `too_many_connections`;
- malformed requests and over-long heads answer JSON (400 `bad_http_request`, 431
  `headers_too_large`) instead of uvicorn's plain text, without a log line each.

The pace of a body the app is reading is watched in the app itself (pacing.py), because only
there is a stall the client's fault rather than the app's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.api.errors import MESSAGES_ZH
from services.settings import Settings

logger = logging.getLogger(__name__)

# File descriptors serve keeps for itself beyond the connection cap: database pool, blob files,
# the spool watcher, log files, the listening socket.
RESERVED_DESCRIPTORS = 256
# A log line a hostile client can cause at will is written at most once per this many seconds.
LOG_INTERVAL_SECONDS = 10.0
DEFAULT_BACKLOG = 2048  # uvicorn's
# The longest request head (request line and headers) accepted: h11's own default.
MAX_HEAD_BYTES = 16 * 1024


@dataclass
class EdgeLimits:
    header_timeout: float
    body_timeout: float
    max_connections: int
    backlog: int = 2048
    max_head_bytes: int = MAX_HEAD_BYTES


@dataclass
class EdgeState:
    """Shared by one server's connections: who is waiting for a request head, oldest first."""

    limits: EdgeLimits
    waiting: OrderedDict[EdgeProtocol, None] = field(default_factory=OrderedDict)
    enforcing: asyncio.TimerHandle | None = None


def _raw_json_response(status: int, reason: bytes, body: dict[str, Any]) -> bytes:
    """A whole HTTP/1.1 response, for the moments no request cycle exists to send one."""
    payload = json.dumps(body, ensure_ascii=False).encode()
    head = (
        f"HTTP/1.1 {status} {reason.decode()}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n"
        "connection: close\r\n"
    )
    if status == 503:
        head += "retry-after: 5\r\n"
    return head.encode() + b"\r\n" + payload


def _error_body(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message, "message_zh": MESSAGES_ZH.get(code, message)}


class EdgeProtocol(H11Protocol):
    """uvicorn's h11 protocol with the deadlines and the cap above (one instance per socket)."""

    edge: EdgeState  # set on the subclass `edge_protocol` makes for one server

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._linger_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        over_cap = len(self.connections) > self.edge.limits.max_connections
        if over_cap and not self.edge.waiting:
            # Every connection has a request in progress: no room can be made.
            self.connections.discard(self)
            transport.write(
                _raw_json_response(
                    503,
                    b"Service Unavailable",
                    _error_body(
                        "too_many_connections",
                        "the server holds as many connections as it may; retry shortly",
                    ),
                )
            )
            transport.close()
            return
        self._pace()
        if over_cap and self.edge.enforcing is None:
            # Not at once: a timer runs after the next poll of the sockets has read what the
            # newest connections sent, so a client whose request is already there (/healthz)
            # is busy, not waiting, by then and the silent ones go first.
            self.edge.enforcing = self.loop.call_later(0, self._enforce_cap)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self._cancel_linger()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._pace()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._pace()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own answer is plain text and logs a warning per request, which a client can
        # repeat at will; this is the service's JSON error shape, and a debug line.
        too_long = len(self.conn.trailing_data[0]) > self.edge.limits.max_head_bytes
        if too_long:
            status, reason, body = (
                431,
                b"Request Header Fields Too Large",
                _error_body(
                    "headers_too_large",
                    f"the request head is over {self.edge.limits.max_head_bytes} bytes",
                ),
            )
        else:
            status, reason, body = (
                400,
                b"Bad Request",
                _error_body("bad_http_request", "the request is not valid HTTP/1.1"),
            )
        logger.debug("%s from %s: %s", status, self.client, msg)
        self._stop_waiting()
        if not self.transport.is_closing():
            self.transport.write(_raw_json_response(status, reason, body))
            self.transport.close()

    # The deadlines.

    def _pace(self) -> None:
        """Arm or clear the deadlines for what the connection is waiting for now."""
        if self.transport is None or self.transport.is_closing():
            self._stop_waiting()
            self._cancel_linger()
            return
        theirs = self.conn.their_state
        if theirs is h11.IDLE:
            # Between requests: the next head is due (after an idle keep-alive, uvicorn's own
            # shorter timer usually closes the socket first).
            self._cancel_linger()
            if self._head_deadline is None:
                self._head_deadline = self.loop.call_later(
                    self.edge.limits.header_timeout, self._head_overdue
                )
            self.edge.waiting[self] = None
        elif theirs is h11.SEND_BODY and self.cycle is not None and self.cycle.response_complete:
            # Answered before the body was read: drain what is in flight, for a while only.
            self._stop_waiting()
            self.edge.waiting[self] = None
            if self._linger_deadline is None:
                self._linger_deadline = self.loop.call_later(
                    self.edge.limits.body_timeout, self._linger_over
                )
        else:
            # A request is in progress; the app paces its body (pacing.py).
            self._stop_waiting()
            self._cancel_linger()

    def _stop_waiting(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        self.edge.waiting.pop(self, None)

    def _cancel_linger(self) -> None:
        if self._linger_deadline is not None:
            self._linger_deadline.cancel()
            self._linger_deadline = None

    def _head_overdue(self) -> None:
        self._head_deadline = None
        logger.debug("closing %s: no complete request head within the header timeout", self.client)
        self._close()

    def _linger_over(self) -> None:
        self._linger_deadline = None
        self._close()

    def _close(self) -> None:
        self._stop_waiting()
        self._cancel_linger()
        self.connections.discard(self)
        if not self.transport.is_closing():
            self.transport.close()

    def _enforce_cap(self) -> None:
        """Close the connections that have waited longest without a request in progress until
        the count is back under the cap."""
        self.edge.enforcing = None
        while len(self.connections) > self.edge.limits.max_connections and self.edge.waiting:
            oldest, _ = self.edge.waiting.popitem(last=False)
            if oldest.transport is None or oldest.transport.is_closing():
                continue
            oldest._close()


def edge_protocol(limits: EdgeLimits) -> type[EdgeProtocol]:
    """An `EdgeProtocol` class bound to one server's shared state, for uvicorn's `http=`."""
    return type("EdgeProtocol", (EdgeProtocol,), {"edge": EdgeState(limits)})


class RateLimitedLines(logging.Filter):
    """Lets a log line whose message starts with one of `prefixes` through at most once per
    `interval` seconds, as one line (no traceback) that says how many were suppressed.

    asyncio logs "socket.accept() out of system resource" with a traceback for every pending
    connection it cannot accept, up to the backlog each second: 835,000 lines in 25 s.
    """

    def __init__(self, prefixes: tuple[str, ...], interval: float = LOG_INTERVAL_SECONDS) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        prefix = next((p for p in self.prefixes if message.startswith(p)), None)
        if prefix is None:
            return True
        now = time.monotonic()
        last = self._last.get(prefix)
        if last is not None and now - last < self.interval:
            self._suppressed[prefix] = self._suppressed.get(prefix, 0) + 1
            return False
        suppressed = self._suppressed.pop(prefix, 0)
        self._last[prefix] = now
        cause = record.exc_info[1] if record.exc_info else None
        record.msg = "%s%s (%d more like it suppressed; at most one line per %.0f s)"
        record.args = (prefix, f": {cause}" if cause else "", suppressed, self.interval)
        record.exc_info = None
        record.exc_text = None
        return True


ACCEPT_FAILURE = "socket.accept() out of system resource"
INVALID_REQUEST = "Invalid HTTP request received."


def install_log_limits() -> None:
    """Rate-limit the lines any client can cause: asyncio's accept failure, uvicorn's warning
    for each malformed request (answered in JSON by `EdgeProtocol` all the same)."""
    for name, prefix in (("asyncio", ACCEPT_FAILURE), ("uvicorn.error", INVALID_REQUEST)):
        source = logging.getLogger(name)
        if not any(isinstance(f, RateLimitedLines) for f in source.filters):
            source.addFilter(RateLimitedLines((prefix,)))


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return soft


def edge_limits(settings: Settings, descriptors: int) -> EdgeLimits:
    """The limits for this process, fitted to its open-file limit.

    asyncio accepts a whole listen backlog of pending connections before the protocol sees any
    of them (and so before the cap can close one): the cap *plus* the backlog must fit the
    open-file limit with `RESERVED_DESCRIPTORS` to spare. The backlog stays large (uvicorn's
    2048) where it fits, because a full one drops a newcomer's SYN and costs it a second.
    """
    cap = settings.http_max_connections
    room = max(descriptors - RESERVED_DESCRIPTORS, 2)
    backlog = min(DEFAULT_BACKLOG, max(room - cap, room // 2))
    if cap > room - backlog:
        logger.warning(
            "EXAMVAULT_HTTP_MAX_CONNECTIONS=%d does not fit the open-file limit %d: using %d",
            cap,
            descriptors,
            room - backlog,
        )
        cap = room - backlog
    return EdgeLimits(
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        max_connections=cap,
        backlog=backlog,
    )


def server_config(app: Any, settings: Settings, *, host: str, port: int) -> Config:
    limits = edge_limits(settings, raise_descriptor_limit())
    return Config(
        app,
        host=host,
        port=port,
        http=edge_protocol(limits),
        timeout_keep_alive=settings.http_keep_alive_seconds,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=limits.max_head_bytes,
        backlog=limits.backlog,
        log_level="info",
        access_log=False,
    )


def run(app: Any, settings: Settings, *, host: str, port: int) -> None:
    """Serve `app` until SIGINT/SIGTERM, with the edge's limits."""
    import uvicorn

    install_log_limits()
    config = server_config(app, settings, host=host, port=port)
    logger.info(
        "HTTP limits: %d connections, head within %.0f s, body pace %d B/s per %.0f s, "
        "keep-alive %.0f s",
        config.http.edge.limits.max_connections,  # type: ignore[union-attr]
        settings.http_header_timeout_seconds,
        settings.http_body_min_bytes_per_second,
        settings.http_body_timeout_seconds,
        settings.http_keep_alive_seconds,
    )
    uvicorn.Server(config).run()
