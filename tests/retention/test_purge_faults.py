"""The purge under faults (issue 11, hole 16): a store outage stops a run quickly and says why
(a circuit breaker, not the client's ~6 s of retries for every key), the scheduled purge does
not hammer a store that is down, and a run asked to stop (SIGTERM) is closed and summed up
truthfully. Afterwards nothing is lost, nothing is tombstoned twice, and the ledger verifies.

The store is moto's S3 server, stopped for the outage and started again (tests/s3outage.py)."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.context import Services
from services.registry import import_registry
from services.retention import purge as purge_module
from services.retention.purge import (
    BATCH,
    STOPPED,
    STORE_FAILURES,
    PurgeScheduler,
    execute_purge,
)
from services.settings import Settings
from storage import ledger
from storage.blobs import BlobStoreError
from storage.db import Database
from storage.models import LedgerEntry, PurgeRun, Segment, Tombstone
from storage.stores import init_blob_store
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY
from tests.processes import examvault_env, run_cli, spawn, wait_until
from tests.reliability import Reliability
from tests.retention.test_purge import SLOT, SegmentSpec, make_segments
from tests.retention.test_purge_crash import _seed
from tests.s3outage import SwitchableS3
from tests.s3server import ACCESS_KEY, SECRET_KEY

T0 = datetime(2022, 3, 1, 1, tzinfo=UTC)
# Two batches: a SIGTERM after the first tombstones lands with work done and work left.
SEGMENTS = 2 * BATCH


@pytest.fixture
def s3_down_services(settings: Settings, switchable_s3: SwitchableS3) -> Iterator[Services]:
    settings.storage_url = (
        f"s3://ev-{uuid.uuid4().hex[:12]}?endpoint={switchable_s3.endpoint}&secure=false"
    )
    settings.s3_access_key, settings.s3_secret_key = ACCESS_KEY, SECRET_KEY
    init_blob_store(settings.storage_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    built = Services.from_settings(settings)
    built.db.run_write(lambda session: import_registry(session, json.dumps(REGISTRY), actor="t"))
    yield built
    built.close()


def _expired(services: Services, count: int, scratch: Path) -> list[int]:
    expired = datetime.now(UTC) - timedelta(days=1)
    specs = [
        SegmentSpec((CAMERA_FRONT, CAMERA_BACK)[n % 2], T0 + n * SLOT, T0 + (n + 1) * SLOT, expired)
        for n in range(count)
    ]
    return [made.id for made in make_segments(services, specs, scratch)]


def _one_failing_call(services: Services) -> float:
    """What one store call costs while the store is down (the client's own retries)."""
    started = time.monotonic()
    with pytest.raises(BlobStoreError):
        services.store.stat("probe/outage")
    return time.monotonic() - started


def _purge_facts(db: Database) -> tuple[Counter[int], Counter[str], list[int]]:
    with db.read() as session:
        tombstones = Counter(session.scalars(select(Tombstone.segment_id)))
        entries = Counter(
            session.scalars(
                select(LedgerEntry.subject_id).where(LedgerEntry.action == "segment.purged")
            )
        )
        unpurged = list(session.scalars(select(Segment.id).where(Segment.purged_at.is_(None))))
    return tombstones, entries, unpurged


def _readable_with_hash(services: Services, segment_ids: list[int]) -> int:
    """How many of these segments' blobs are readable and hash to the recorded sha256."""
    readable = 0
    with services.db.read() as session:
        rows = session.execute(
            select(Segment.blob_key, Segment.sha256).where(Segment.id.in_(segment_ids))
        ).all()
    for key, sha256 in rows:
        digest = hashlib.sha256()
        for chunk in services.store.read(key):
            digest.update(chunk)
        readable += digest.hexdigest() == sha256
    return readable


def test_purge_stops_after_a_few_store_failures_and_a_rerun_finishes(
    s3_down_services: Services,
    switchable_s3: SwitchableS3,
    tmp_path: Path,
    reliability: Reliability,
) -> None:
    services = s3_down_services
    segments = _expired(services, 8, tmp_path / "blobs")
    switchable_s3.down()
    per_call = _one_failing_call(services)

    started = time.monotonic()
    result = execute_purge(services.db, services.store, services.settings, actor="test")
    took = time.monotonic() - started

    # Stopped by the breaker: a few failing calls, not one (or two) per key.
    assert took < (STORE_FAILURES + 1) * per_call, (took, per_call)
    assert result.status == STOPPED, result
    assert "blob store failed 3 times in a row" in (result.stop_reason or "")
    assert "Connection refused" in (result.stop_reason or ""), result.stop_reason
    # Nothing tombstoned while the store was down: no blob is left behind for later.
    assert (result.purged, result.remaining, result.blobs_left) == (0, len(segments), 0)
    with services.db.read() as session:
        run = session.get_one(PurgeRun, result.run_id)
    assert run.status == STOPPED and run.finished_at is not None
    assert run.stop_reason == result.stop_reason

    switchable_s3.up()
    lost = len(segments) - _readable_with_hash(services, segments)
    assert lost == 0
    again = execute_purge(services.db, services.store, services.settings, actor="test")
    assert (again.status, again.purged, again.remaining, again.blobs_left) == (
        "completed",
        len(segments),
        0,
        0,
    )
    tombstones, entries, unpurged = _purge_facts(services.db)
    assert unpurged == [] and set(tombstones) == set(segments)
    assert set(tombstones.values()) == {1} and set(entries.values()) == {1}
    assert not [key for key in services.store.keys(prefix="") if "/purge-test/" in key]
    with services.db.read() as session:
        assert ledger.verify(session).ok
    reliability.record(
        "faults",
        "object store down (connection refused) during a purge",
        tries=1,
        acknowledged=len(segments),
        lost=lost,
        answers={
            f"stopped after {STORE_FAILURES} failures in {took:.0f} s "
            f"({per_call:.1f} s per failing call)": 1,
            "segments tombstoned during the outage": result.purged,
            "purged exactly once by the rerun": again.purged,
        },
    )


def test_purge_keeps_what_it_did_when_the_store_fails_mid_run(
    s3_down_services: Services,
    switchable_s3: SwitchableS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reliability: Reliability,
) -> None:
    """The store goes down after the first deletions: what was deleted is recorded, the run
    stops, the untouched segments are still readable with their hash, the rerun finishes."""
    services = s3_down_services
    segments = _expired(services, 6, tmp_path / "blobs")
    store = services.store
    original = store.delete
    calls = 0

    def delete_then_fail(key: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            switchable_s3.down()
        original(key)

    monkeypatch.setattr(store, "delete", delete_then_fail)
    result = execute_purge(services.db, store, services.settings, actor="test")
    assert result.status == STOPPED and result.purged == len(segments)
    # Two deleted and recorded; the other four stay tombstoned, for the next run.
    assert (result.bytes > 0, result.blobs_left) == (True, len(segments) - 2)
    with services.db.read() as session:
        pending = session.scalar(select(func.count()).where(Tombstone.blob_deleted_at.is_(None)))
    assert pending == len(segments) - 2

    switchable_s3.up()
    # Tombstoned blobs not yet deleted are still readable, bytes unchanged.
    with services.db.read() as session:
        left = list(
            session.scalars(select(Tombstone.segment_id).where(Tombstone.blob_deleted_at.is_(None)))
        )
    lost = len(left) - _readable_with_hash(services, left)
    again = execute_purge(services.db, store, services.settings, actor="test")
    assert again.status == "completed" and again.finished_leftovers == len(segments) - 2
    tombstones, entries, _ = _purge_facts(services.db)
    assert set(tombstones.values()) == {1} and set(entries.values()) == {1}
    assert len(tombstones) == len(segments)
    reliability.record(
        "faults",
        "object store down in the middle of a purge's deletions",
        tries=1,
        acknowledged=len(segments),
        lost=lost,
        answers={
            "blobs deleted before the outage": len(segments) - pending,
            "left tombstoned, finished by the rerun": again.finished_leftovers,
        },
    )


def test_scheduled_purge_does_not_hammer_a_store_that_is_down(
    s3_down_services: Services,
    switchable_s3: SwitchableS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reliability: Reliability,
) -> None:
    services = s3_down_services
    segments = _expired(services, 6, tmp_path / "blobs")
    services.settings.purge_schedule = "03:00"
    scheduler = PurgeScheduler(services.db, services.store, services.settings)
    scheduler.run_once()  # start-up: plans the next daily run
    switchable_s3.down()
    per_call = _one_failing_call(services)

    scheduler._due = datetime.now(UTC) - timedelta(seconds=1)  # the daily run is due
    started = time.monotonic()
    pause = scheduler.run_once()
    took = time.monotonic() - started
    assert took < (STORE_FAILURES + 1) * per_call, (took, per_call)
    assert scheduler.last_result is not None and scheduler.last_result.status == STOPPED
    # Tried again in minutes (not in a tight loop, not only tomorrow), then less and less often.
    assert PurgeScheduler.RETRY_FIRST.total_seconds() - 5 <= pause
    assert pause <= PurgeScheduler.RETRY_FIRST.total_seconds()
    assert scheduler.run_once() > PurgeScheduler.RETRY_FIRST.total_seconds() - 10  # not due
    # A second stopped run waits twice as long (the outage is not re-measured here).
    stopped_again = scheduler.last_result
    monkeypatch.setattr(purge_module, "execute_purge", lambda *_a, **_k: stopped_again)
    scheduler._due = datetime.now(UTC)
    second_pause = scheduler.run_once()
    assert second_pause > pause * 1.9
    monkeypatch.undo()

    switchable_s3.up()
    lost = len(segments) - _readable_with_hash(services, segments)
    assert lost == 0
    scheduler._due = datetime.now(UTC)
    scheduler.run_once()
    assert scheduler.last_result is not None and scheduler.last_result.status == "completed"
    assert scheduler.last_result.purged == len(segments)
    with services.db.read() as session:
        runs = session.scalars(select(PurgeRun.status).order_by(PurgeRun.started_at)).all()
    assert runs == [STOPPED, "completed"]
    reliability.record(
        "faults",
        "object store down at the scheduled purge",
        tries=2,
        acknowledged=len(segments),
        lost=lost,
        answers={
            f"scheduled run stopped in {took:.0f} s, retried in {pause / 60:.0f} min": 1,
            "purged once the store was back": scheduler.last_result.purged,
        },
    )


def test_sigterm_stops_a_purge_with_a_true_summary(
    tmp_path: Path, database_url: str, reliability: Reliability
) -> None:
    """A run asked to stop ends between two blobs, closes its record and prints what it did
    and what remains; the one after it finishes the work, each segment tombstoned once."""
    data_dir = tmp_path / "var"
    keys = _seed(data_dir, database_url, SEGMENTS)
    env = examvault_env(data_dir, database_url)
    db = Database(database_url)
    try:
        purge = spawn(env, "retention", "purge", "--execute", log=tmp_path / "purge.log")

        def tombstoned() -> int:
            with db.read() as session:
                return int(session.scalar(select(func.count()).select_from(Tombstone)) or 0)

        wait_until(lambda: tombstoned() > 0 or purge.poll() is not None, interval=0.01)
        purge.send_signal(signal.SIGTERM)
        assert purge.wait(timeout=60) == 1
        output = (tmp_path / "purge.log").read_text()
        with db.read() as session:
            run = session.scalars(select(PurgeRun)).one()
            done = int(session.scalar(select(func.count()).select_from(Tombstone)) or 0)
            pending = int(
                session.scalar(select(func.count()).where(Tombstone.blob_deleted_at.is_(None))) or 0
            )
            untouched = int(
                session.scalar(select(func.count()).where(Segment.purged_at.is_(None))) or 0
            )
            untouched_ids = list(
                session.scalars(select(Segment.id).where(Segment.purged_at.is_(None)))
            )
        lost = untouched - sum(
            1 for segment_id in untouched_ids if (data_dir / "objects" / keys[segment_id]).exists()
        )
        assert lost == 0
        assert run.status == "interrupted" and run.finished_at is not None
        assert run.purged == done and 0 < done < SEGMENTS
        assert "purge run INTERRUPTED before it was done" in output, output
        assert "asked to stop" in output
        assert f"done: {done} of {SEGMENTS} planned segment(s) tombstoned" in output, output
        match = re.search(r"remaining: (\d+) expired segment\(s\) not reached", output)
        assert match and int(match.group(1)) == untouched, output
        assert f"{pending} blob(s) of tombstoned segments still stored" in output, output

        final = run_cli(env, "retention", "purge", "--execute")
        assert final.returncode == 0, final.stderr
        assert f"{pending} blob(s) of earlier runs finished" in final.stdout, final.stdout
        assert f"done: {untouched} of {untouched} planned" in final.stdout, final.stdout
        verified = run_cli(env, "ledger", "verify")
        assert verified.returncode == 0, verified.stderr
        with db.read() as session:
            per_segment = Counter(session.scalars(select(Tombstone.segment_id)))
        assert len(per_segment) == SEGMENTS and set(per_segment.values()) == {1}
        reliability.record(
            "crashes",
            "SIGTERM mid-purge: summary, then a rerun",
            tries=1,
            acknowledged=SEGMENTS,
            lost=lost,
            answers={"tombstoned before the stop": done, "exit status 1": 1},
        )
    finally:
        db.dispose()
