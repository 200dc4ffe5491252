"""`examvault serve`'s server limits that need no running server: log lines a client can
cause are rate-limited, the connection cap fits the open-file limit, and the protocol's
deadlines and cap on transports of its own (tests/api/test_hostile_clients.py: real sockets)."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from services.api.server import (
    ACCEPT_FAILURE,
    INVALID_REQUEST,
    RESERVED_DESCRIPTORS,
    EdgeLimits,
    EdgeProtocol,
    RateLimitedLines,
    edge_limits,
    edge_protocol,
    install_log_limits,
)
from services.settings import SettingsError, load_settings
from tests.processes import ROOT


@pytest.fixture
def limited_logs() -> Iterator[None]:
    install_log_limits()
    yield
    for name in ("asyncio", "uvicorn.error"):
        source = logging.getLogger(name)
        for limiter in [f for f in source.filters if isinstance(f, RateLimitedLines)]:
            source.removeFilter(limiter)


def test_a_flood_of_accept_failures_is_one_line_with_a_count(
    limited_logs: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            # What asyncio's accept loop reports for every connection it cannot take (EMFILE).
            for _ in range(2000):
                loop.call_exception_handler(
                    {"message": ACCEPT_FAILURE, "exception": OSError(24, "Too many open files")}
                )
            first = [r for r in caplog.records if r.name == "asyncio"]
            limiter = next(
                f for f in logging.getLogger("asyncio").filters if isinstance(f, RateLimitedLines)
            )
            monkeypatch.setattr(limiter, "interval", 0.05)
            time.sleep(0.06)
            loop.call_exception_handler(
                {"message": ACCEPT_FAILURE, "exception": OSError(24, "Too many open files")}
            )
    finally:
        loop.close()
    lines = [r for r in caplog.records if r.name == "asyncio"]
    assert len(first) == 1 and len(lines) == 2
    assert first[0].exc_info is None and "\n" not in first[0].getMessage()
    assert "Too many open files" in first[0].getMessage()
    assert "1999 more like it suppressed" in lines[1].getMessage()


def test_malformed_request_warnings_are_rate_limited(
    limited_logs: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        for _ in range(500):
            logging.getLogger("uvicorn.error").warning(INVALID_REQUEST)
        logging.getLogger("uvicorn.error").warning("something else")
    said = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
    assert len(said) == 2 and said[1] == "something else"


@pytest.mark.parametrize("descriptors", [300, 400, 1024, 4096, 20000, 1_048_576])
def test_the_connection_cap_and_backlog_fit_the_open_file_limit(descriptors: int) -> None:
    limits = edge_limits(load_settings(http_max_connections=1000), descriptors)
    assert 1 <= limits.max_connections <= 1000 and limits.backlog >= 1
    assert limits.max_connections + limits.backlog + RESERVED_DESCRIPTORS <= descriptors
    if descriptors >= 1000 + 2048 + RESERVED_DESCRIPTORS:
        assert (limits.max_connections, limits.backlog) == (1000, 2048)


def test_serve_raises_the_soft_open_file_limit_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    script = (
        "import resource\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))\n"
        "from services.api.server import raise_descriptor_limit\n"
        "print(raise_descriptor_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(hard), str(hard)]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("http_header_timeout_seconds", 0),
        ("http_body_timeout_seconds", -1),
        ("http_keep_alive_seconds", float("inf")),
        ("http_max_connections", 0),
        ("http_body_min_bytes_per_second", -5),
    ],
)
def test_edge_settings_that_would_let_a_client_hold_on_for_ever_are_refused(
    setting: str, value: float
) -> None:
    with pytest.raises(SettingsError, match=f"EXAMVAULT_{setting.upper()}"):
        load_settings(**{setting: value})


class _Transport(asyncio.Transport):
    """Just enough of a socket transport for the protocol: what was written, whether closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _slow_app(scope: dict, receive: object, send: object) -> None:
    await asyncio.sleep(10)  # a request in progress for the whole test


def _connections(max_connections: int) -> Callable[[], tuple[EdgeProtocol, _Transport]]:
    config = Config(_slow_app, http="h11", log_level="warning")
    config.load()
    protocol_class = edge_protocol(
        EdgeLimits(header_timeout=0.2, body_timeout=0.2, max_connections=max_connections)
    )
    state = ServerState()

    def connect() -> tuple[EdgeProtocol, _Transport]:
        protocol = protocol_class(config=config, server_state=state, app_state={})
        transport = _Transport()
        protocol.connection_made(transport)
        return protocol, transport

    return connect


def test_a_silent_connection_is_closed_at_the_header_timeout() -> None:
    async def scenario() -> tuple[bool, bool]:
        connect = _connections(10)
        _, silent = connect()
        await asyncio.sleep(0.1)
        early = silent.closed
        await asyncio.sleep(0.2)
        return early, silent.closed

    assert asyncio.run(scenario()) == (False, True)


def test_over_the_cap_the_longest_waiting_idle_connection_makes_room() -> None:
    async def scenario() -> list[bool]:
        connect = _connections(2)
        _, oldest = connect()
        busy, busy_transport = connect()
        busy.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        _, newest = connect()
        await asyncio.sleep(0.01)
        return [oldest.closed, busy_transport.closed, newest.closed]

    assert asyncio.run(scenario()) == [True, False, False]


def test_when_every_connection_is_busy_a_newcomer_gets_503_too_many_connections() -> None:
    async def scenario() -> _Transport:
        connect = _connections(2)
        for _ in range(2):
            busy, _ = connect()
            busy.data_received(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        _, refused = connect()
        return refused

    refused = asyncio.run(scenario())
    head, _, body = refused.written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and refused.closed
    assert json.loads(body)["code"] == "too_many_connections"
