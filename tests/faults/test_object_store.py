"""The object store cut, blackholed, or down at start, under a real `examvault serve`, through
a TCP proxy in front of moto's S3 server (tests/faults/proxy.py).

What must hold: a push is answered JSON 503 with a code and Retry-After (never a plain 500,
never a hang); /healthz and /metrics keep answering fast; /readyz says unready with the cause
within seconds and ready again after; the server starts while the store is down and catches
up; afterwards every acknowledged segment reads back with its SHA-256 and the ledger verifies.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import Segment
from storage.stores import init_blob_store
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, VideoFactory
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
from tests.s3server import ACCESS_KEY, SECRET_KEY

# What an orchestrator and a dashboard poll at once; the probe's 45 filled the thread pool.
READINESS_POLLS = 60
# `make soak` sets more: each round cuts, then blackholes, the store once more.
ROUNDS = int(os.environ.get("EXAMVAULT_SOAK_FAULT_ROUNDS", "1"))
BATCH = 4


@pytest.fixture
def store_proxy(s3_endpoint: str) -> Iterator[tuple[FaultProxy, str]]:
    """A proxy in front of moto, and a fresh locked bucket behind it: (proxy, bucket)."""
    bucket = f"ev-{uuid.uuid4().hex[:12]}"
    init_blob_store(
        f"s3://{bucket}?endpoint={s3_endpoint}&secure=false",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )
    host, port = s3_endpoint.rsplit(":", 1)
    proxy = FaultProxy(host, int(port)).start()
    yield proxy, bucket
    proxy.close()


def _store_env(proxy: FaultProxy, bucket: str) -> dict[str, str]:
    return {
        "EXAMVAULT_STORAGE_URL": f"s3://{bucket}?endpoint={proxy.endpoint}&secure=false",
        "EXAMVAULT_S3_ACCESS_KEY": ACCESS_KEY,
        "EXAMVAULT_S3_SECRET_KEY": SECRET_KEY,
    }


def _videos(make_video: VideoFactory, count: int) -> dict[str, bytes]:
    # Distinct bytes per name, so a mix-up could not hide behind equal hashes.
    return {
        f"20261124T09{number:02d}00+0800.mp4": make_video(
            f"s{number}.mp4", seconds=1, seed=number
        ).read_bytes()
        for number in range(count)
    }


def _poll_readiness_at_once(server_readyz: object, count: int) -> list[int]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: server_readyz(timeout=10).status_code, range(count)))  # type: ignore[operator]


def test_object_store_cut_and_blackholed_during_http_ingest(
    tmp_path: Path,
    store_proxy: tuple[FaultProxy, str],
    make_video: VideoFactory,
    reliability: Reliability,
) -> None:
    proxy, bucket = store_proxy
    files = _videos(make_video, 3 + 2 * BATCH * ROUNDS)
    names = list(files)
    # (fault, the names pushed while it lasts), round after round.
    faults = [
        (fault, names[first : first + BATCH])
        for round_start in range(3, len(names), 2 * BATCH)
        for fault, first in (("cut", round_start), ("blackhole", round_start + BATCH))
    ]
    database_url = f"sqlite:///{tmp_path / 'examvault.sqlite3'}"
    acknowledged: dict[str, Answer] = {}
    during: dict[str, list[Answer]] = {"cut": [], "blackhole": []}
    figures: dict[str, list[float]] = {}
    with serving(tmp_path, database_url, **_store_env(proxy, bucket)) as server:
        server.wait_readiness(True)
        for name in names[:2]:
            answer = server.push(CAMERA_FRONT, name, files[name])
            assert answer.status == 201, answer.body
            acknowledged[name] = answer

        health = LatencyWatch(f"{server.base_url}/healthz")
        metrics = LatencyWatch(f"{server.base_url}/metrics", interval=0.25, headers=SCRAPER)
        with health, metrics:
            # A slow store (0.2 s per chunk either way) is slow, not down: stored, and ready.
            proxy.slow(0.2)
            slow = server.push(CAMERA_FRONT, names[2], files[names[2]])
            assert slow.status == 201, slow.body
            acknowledged[names[2]] = slow
            assert server.readyz().status_code == 200
            proxy.passing()
            for fault, batch in faults:
                getattr(proxy, fault)()
                # Pushes from the fault's first moment: the first ones reach the store.
                pushes = Pushes(server, CAMERA_FRONT, files, batch)
                took, unready = server.wait_readiness(False, timeout=15)
                figures.setdefault(f"unready after {fault}", []).append(took)
                assert any("blob store" in problem for problem in unready.json()["problems"])
                for answer in pushes.join().values():
                    during[fault].append(answer)
                    check_outage_answer(answer, {"store_unavailable"})
                    assert answer.seconds < 15, f"a push waited {answer.seconds:.1f} s"
                polls = _poll_readiness_at_once(server.readyz, READINESS_POLLS)
                assert set(polls) == {503}, polls
                proxy.passing()
                took, _ = server.wait_readiness(True, timeout=30)
                figures.setdefault(f"ready after {fault}", []).append(took)
        assert health.failures == [], health.failures[:3]
        assert metrics.failures == [], metrics.failures[:3]
        assert health.worst < HEALTHZ_BOUND_SECONDS, (
            f"/healthz took {health.worst:.2f} s during the outage"
        )

        # The camera host pushes again what was not acknowledged; a kept upload answers 200.
        for name in names:
            if name not in acknowledged:
                acknowledged[name] = push_until_acknowledged(
                    server, CAMERA_FRONT, name, files[name]
                )
        lost = lost_segments(server, acknowledged, files)
        assert lost == set()
        assert ledger_verifies(server), (server.log.read_text())[-3000:]
        counted = server.metrics()
        assert (
            'examvault_http_ingest_answers_total{code="store_unavailable",status="503"}' in counted
        )
        assert "examvault_http_ingest_seconds_bucket" in counted

    reliability.record(
        "faults",
        f"object store slow (0.2 s per chunk): push answered in {slow.seconds:.1f} s",
        tries=1,
        acknowledged=1,
        lost=len(lost & {names[2]}),
        answers=tally([slow]),
    )
    for fault in ("cut", "blackhole"):
        pushed = {name for kind, batch in faults if kind == fault for name in batch}
        reliability.record(
            "faults",
            f"object store {fault} during HTTP ingest, {ROUNDS} round(s) "
            f"(/healthz worst {health.worst * 1000:.0f} ms, unready after at most "
            f"{max(figures[f'unready after {fault}']):.1f} s, ready again after at most "
            f"{max(figures[f'ready after {fault}']):.1f} s)",
            tries=len(during[fault]),
            acknowledged=len(pushed & set(acknowledged)),
            lost=len(lost & pushed),
            answers=tally(during[fault]),
        )


def test_serve_starts_while_the_object_store_is_unreachable_and_catches_up(
    tmp_path: Path,
    store_proxy: tuple[FaultProxy, str],
    make_video: VideoFactory,
    reliability: Reliability,
) -> None:
    proxy, bucket = store_proxy
    files = _videos(make_video, 5)
    names = list(files)
    spooled, pushed = names[:3], names[3:]
    data_dir = tmp_path / "var"
    folder = data_dir / "spool" / CAMERA_BACK
    folder.mkdir(parents=True)
    for name in spooled:
        (folder / name).write_bytes(files[name])
    proxy.cut()
    database_url = f"sqlite:///{tmp_path / 'examvault.sqlite3'}"
    with serving(tmp_path, database_url, data_dir, **_store_env(proxy, bucket)) as server:
        _, unready = server.wait_readiness(False, timeout=15)
        assert any("blob store" in problem for problem in unready.json()["problems"])
        answers = [server.push(CAMERA_FRONT, name, files[name]) for name in pushed]
        for answer in answers:
            check_outage_answer(answer, {"store_unavailable"})
        time.sleep(2)  # the worker tries the spool meanwhile; nothing may be taken
        assert sorted(path.name for path in folder.iterdir()) == sorted(spooled)

        proxy.passing()
        took, _ = server.wait_readiness(True, timeout=30)
        db = Database(database_url)
        deadline = time.monotonic() + 60
        while True:
            with db.read() as session:
                stored = {
                    segment.original_name: segment for segment in session.scalars(select(Segment))
                }
            if set(spooled) <= set(stored) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        db.dispose()
        assert set(spooled) <= set(stored), f"the spool was not caught up: {sorted(stored)}"
        assert list(folder.iterdir()) == []
        lost = 0
        for name in spooled:
            content = server.read_segment(stored[name].id)
            lost += hashlib.sha256(content).hexdigest() != hashlib.sha256(files[name]).hexdigest()
        acknowledged = {
            name: push_until_acknowledged(server, CAMERA_FRONT, name, files[name])
            for name in pushed
        }
        lost += len(lost_segments(server, acknowledged, files))
        assert lost == 0
        assert ledger_verifies(server)
    reliability.record(
        "faults",
        f"serve started with the object store down (ready {took:.1f} s after it returned)",
        tries=len(names),
        acknowledged=len(spooled) + len(acknowledged),
        lost=lost,
        answers=tally(answers),
    )
