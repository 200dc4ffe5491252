"""`examvault serve`'s server limits that need no running server: log lines a client can
cause are rate-limited, and the connection cap fits the open-file limit."""

from __future__ import annotations

import asyncio
import logging
import resource
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from services.api.server import (
    ACCEPT_FAILURE,
    INVALID_REQUEST,
    RESERVED_DESCRIPTORS,
    RateLimitedLines,
    edge_limits,
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
