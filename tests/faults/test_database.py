"""PostgreSQL cut under a real `examvault serve`, through a TCP proxy (tests/faults/proxy.py).

Every request needs the database from its first step (the token lookup), so during the cut
every push and every read must be answered JSON 503 `database_unavailable` with Retry-After,
never a plain 500; /healthz and /metrics keep answering; /readyz names the database; after the
database returns, nothing acknowledged is missing and the ledger verifies.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import CAMERA_FRONT, VideoFactory
from tests.faults.harness import (
    HEALTHZ_BOUND_SECONDS,
    SCRAPER,
    Answer,
    LatencyWatch,
    Pushes,
    check_outage_answer,
    ledger_verifies,
    lost_segments,
    push_until_acknowledged,
    serving,
    tally,
)
from tests.faults.proxy import FaultProxy
from tests.reliability import Reliability


@pytest.fixture
def proxied_postgres(postgres_url: str) -> Iterator[tuple[FaultProxy, str]]:
    """A proxy in front of the test's PostgreSQL schema, and the URL that goes through it."""
    url = make_url(postgres_url)
    proxy = FaultProxy(url.host or "127.0.0.1", url.port or 5432).start()
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.close()


def test_database_cut_answers_503_and_loses_nothing(
    tmp_path: Path,
    proxied_postgres: tuple[FaultProxy, str],
    make_video: VideoFactory,
    reliability: Reliability,
) -> None:
    proxy, database_url = proxied_postgres
    files = {
        f"20261124T10{number:02d}00+0800.mp4": make_video(
            f"d{number}.mp4", seconds=1, seed=number
        ).read_bytes()
        for number in range(6)
    }
    names = list(files)
    acknowledged: dict[str, Answer] = {}
    with serving(tmp_path, database_url) as server:
        server.wait_readiness(True)
        for name in names[:2]:
            acknowledged[name] = push_until_acknowledged(server, CAMERA_FRONT, name, files[name])

        health = LatencyWatch(f"{server.base_url}/healthz")
        metrics = LatencyWatch(f"{server.base_url}/metrics", interval=0.25, headers=SCRAPER)
        with health, metrics:
            proxy.cut()
            pushes = Pushes(server, CAMERA_FRONT, files, names[2:])
            unready_after, unready = server.wait_readiness(False, timeout=15)
            assert any("database" in problem for problem in unready.json()["problems"])
            during = list(pushes.join().values())
            for answer in during:
                check_outage_answer(answer, {"database_unavailable"})
            read = server.client.get(f"{server.base_url}/api/v1/sittings", headers=server.admin)
            assert (read.status_code, read.json()["code"]) == (503, "database_unavailable")
            assert read.headers["retry-after"].isdigit()
            proxy.passing()
            ready_after, _ = server.wait_readiness(True, timeout=30)
        assert health.failures == [] and metrics.failures == [], (
            health.failures[:3],
            metrics.failures[:3],
        )
        assert health.worst < HEALTHZ_BOUND_SECONDS, (
            f"/healthz took {health.worst:.2f} s during the outage"
        )

        for name in names[2:]:
            acknowledged[name] = push_until_acknowledged(server, CAMERA_FRONT, name, files[name])
        lost = lost_segments(server, acknowledged, files)
        assert lost == set()
        assert ledger_verifies(server)
        assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    reliability.record(
        "faults",
        f"database cut during HTTP ingest (/healthz worst {health.worst * 1000:.0f} ms, "
        f"unready after {unready_after:.1f} s, ready again after {ready_after:.1f} s)",
        tries=len(during),
        acknowledged=len(names) - 2,
        lost=len(lost),
        answers=tally(during),
    )
