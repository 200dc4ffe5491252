"""Health checks during a blob-store outage (issue 11, hole 12): a check that cannot read the
footage is not "done with no samples". The segment is flagged `check_failed` (coverage shows
it), retried with backoff on a schedule kept in the database (a restart does not forget it),
and `examvault health resample` (a real process) checks it again once the store is back."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from services.context import Services
from services.coverage.reports import coverage_report
from services.health.checker import CHECK_FAILED, RETRY_FIRST, HealthChecker
from services.registry import import_registry
from services.settings import Settings
from storage.models import HealthFlag, HealthSample, Segment, Sitting
from storage.stores import init_blob_store
from tests.conftest import (
    CAMERA_BACK,
    CAMERA_FRONT,
    REGISTRY,
    VideoFactory,
    import_sitting,
    ingest_file,
)
from tests.processes import examvault_env, run_cli
from tests.reliability import Reliability
from tests.s3outage import SwitchableS3
from tests.s3server import ACCESS_KEY, SECRET_KEY

SITTING = "HC-2026-001"
START = datetime(2026, 11, 24, 1, tzinfo=UTC)


@pytest.fixture
def outage() -> Iterator[SwitchableS3]:
    s3 = SwitchableS3()
    yield s3
    s3.close()


@pytest.fixture
def on_s3(settings: Settings, outage: SwitchableS3) -> Iterator[Services]:
    settings.storage_url = (
        f"s3://ev-{uuid.uuid4().hex[:12]}?endpoint={outage.endpoint}&secure=false"
    )
    settings.s3_access_key, settings.s3_secret_key = ACCESS_KEY, SECRET_KEY
    init_blob_store(settings.storage_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    built = Services.from_settings(settings)
    built.db.run_write(lambda session: import_registry(session, json.dumps(REGISTRY), actor="t"))
    yield built
    built.close()


def _state(services: Services, segment_id: int) -> tuple[Segment, list[str], int]:
    with services.db.read() as session:
        segment = session.get_one(Segment, segment_id)
        kinds = list(
            session.scalars(select(HealthFlag.kind).where(HealthFlag.segment_id == segment_id))
        )
        samples = len(
            session.scalars(
                select(HealthSample.id).where(HealthSample.segment_id == segment_id)
            ).all()
        )
    return segment, kinds, samples


def _report_kinds(services: Services) -> dict[str, list[str]]:
    with services.db.read() as session:
        sitting = session.scalars(select(Sitting).where(Sitting.code == SITTING)).one()
        report = coverage_report(session, sitting, services.settings).as_json(
            services.settings.zone
        )
    return {
        camera["camera"]: [flag["kind"] for flag in camera["health"]]
        for camera in report["cameras"]
    }


def test_a_check_the_outage_prevents_is_flagged_retried_and_resampled(
    on_s3: Services,
    outage: SwitchableS3,
    make_video: VideoFactory,
    tmp_path: Path,
    reliability: Reliability,
) -> None:
    services = on_s3
    import_sitting(services, SITTING, START, START + timedelta(seconds=8))
    front = ingest_file(
        services, CAMERA_FRONT, make_video("20261124T010000Z.mp4", seconds=4, seed=1)
    )
    back = ingest_file(services, CAMERA_BACK, make_video("20261124T010000Z.mp4", seconds=4, seed=2))

    outage.down()
    started = time.monotonic()
    tried = services.health.check_unchecked()
    took = time.monotonic() - started
    # The first unreadable segment ends the round: the other waits for the next catch-up
    # instead of costing the store client's retries too.
    assert tried == 1
    assert services.health.check_unchecked() == 1  # the second one, now
    for segment_id in (front.id, back.id):
        segment, kinds, samples = _state(services, segment_id)
        assert segment.health_checked_at is None and samples == 0, "not done: retried later"
        assert segment.health_attempts == 1 and kinds == [CHECK_FAILED]
        assert segment.health_retry_at is not None
        assert segment.health_retry_at - datetime.now(UTC) <= RETRY_FIRST
        assert "Connection refused" in (segment.health_error or "")
    # Coverage says the check could not run, for both cameras, not that the picture is fine.
    assert _report_kinds(services) == {CAMERA_BACK: [CHECK_FAILED], CAMERA_FRONT: [CHECK_FAILED]}
    # Not due yet: nothing is tried, and a restart (a new checker on the same database) keeps
    # the schedule rather than starting over.
    started_idle = time.monotonic()
    restarted = HealthChecker(services.db, services.store, services.settings)
    assert restarted.check_unchecked() == 0
    assert time.monotonic() - started_idle < 1.0

    outage.up()
    # The retry falls due (as if a minute had passed) and the catch-up checks the front one.
    with services.db.write() as session:
        session.execute(
            update(Segment)
            .where(Segment.id == front.id)
            .values(health_retry_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert restarted.check_unchecked() == 1
    segment, kinds, samples = _state(services, front.id)
    assert segment.health_checked_at is not None and samples > 0
    assert CHECK_FAILED not in kinds and segment.health_retry_at is None

    # The back one by command, at once, in a process of its own.
    settings = services.settings
    env = examvault_env(
        settings.data_dir,
        settings.resolved_database_url,
        EXAMVAULT_STORAGE_URL=settings.storage_url or "",
        EXAMVAULT_S3_ACCESS_KEY=ACCESS_KEY,
        EXAMVAULT_S3_SECRET_KEY=SECRET_KEY,
    )
    resampled = run_cli(env, "health", "resample", "--camera", CAMERA_BACK)
    assert resampled.returncode == 0, resampled.stderr
    assert "re-sampled 1 of 1 segment(s)" in resampled.stdout
    segment, kinds, samples = _state(services, back.id)
    assert segment.health_checked_at is not None and samples > 0 and CHECK_FAILED not in kinds
    assert all(CHECK_FAILED not in kinds for kinds in _report_kinds(services).values())

    intact = 0
    for made in (front, back):
        digest = hashlib.sha256()
        for chunk in services.store.read(made.blob_key):
            digest.update(chunk)
        intact += digest.hexdigest() == made.sha256
    reliability.record(
        "faults",
        "object store down during health checks",
        tries=2,
        acknowledged=2,
        lost=2 - intact,
        answers={
            f"first unreadable check gave up in {took:.0f} s, flagged check_failed": 2,
            "checked by the retry once due": 1,
            "checked by `health resample`": 1,
        },
    )
