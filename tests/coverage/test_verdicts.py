"""Stored verdicts: the sweep gives ended sittings their verdict; rejected files explain gaps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from services.context import Services
from services.coverage.reports import coverage_report
from services.coverage.schedule import parse_json
from services.coverage.verdicts import sweep_pending
from services.ingest.pipeline import Arrival, Outcome
from services.settings import Settings
from storage.models import Camera, LedgerEntry, Segment, Sitting
from tests.conftest import CAMERA_FRONT, ROOM

START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def _schedule(services: Services, start: datetime, minutes: int = 10) -> None:
    notes: list[str] = []
    rows = parse_json(
        {
            "sittings": [
                {
                    "sitting_code": "V-1",
                    "room_code": ROOM,
                    "kind": "theory",
                    "occupation": "电工",
                    "level": "四级",
                    "starts_at": start.isoformat(),
                    "ends_at": (start + timedelta(minutes=minutes)).isoformat(),
                }
            ]
        },
        services.settings.zone,
        notes,
    )
    services.db.run_write(
        lambda session: services.import_schedule(session, rows, actor="test", zone_assumed=notes)
    )


def _status(services: Services) -> str:
    with services.db.read() as session:
        sitting = session.scalar(select(Sitting).where(Sitting.code == "V-1"))
        assert sitting is not None
        return sitting.coverage_status


def test_the_sweep_ends_pending_once_the_grace_period_is_over(registered: Services) -> None:
    start = datetime.now(UTC) + timedelta(minutes=5)
    _schedule(registered, start)
    assert _status(registered) == "pending"
    end = start + timedelta(minutes=10)
    assert sweep_pending(registered.db, registered.settings, now=end + timedelta(hours=1)) == 0
    assert _status(registered) == "pending"  # ended, incomplete, still inside the grace
    assert sweep_pending(registered.db, registered.settings, now=end + timedelta(hours=25)) == 1
    assert _status(registered) == "missing"
    with registered.db.read() as session:
        entry = session.scalar(
            select(LedgerEntry)
            .where(LedgerEntry.action == "coverage.verdict_changed")
            .order_by(LedgerEntry.seq.desc())
        )
        assert entry is not None
        assert json.loads(entry.details)["to"] == "missing" and entry.actor == "sweep"


def test_a_rejected_file_explains_its_gap(registered: Services, tmp_path: Path) -> None:
    _schedule(registered, START)
    folder = registered.settings.resolved_spool_dir / CAMERA_FRONT
    folder.mkdir(parents=True)
    bad = folder / f"{START + timedelta(minutes=2):%Y%m%dT%H%M%S}Z.mp4"
    bad.write_bytes(b"garbage that claims 09:02" * 50)
    result = registered.pipeline.ingest(
        Arrival(
            path=bad,
            camera_code=CAMERA_FRONT,
            file_name=bad.name,
            source="spool",
            received_at=START + timedelta(hours=1),
        )
    )
    assert result.outcome is Outcome.REJECTED
    with registered.db.read() as session:
        sitting = session.scalar(select(Sitting).where(Sitting.code == "V-1"))
        assert sitting is not None
        report = coverage_report(session, sitting, registered.settings)
    front = next(camera for camera in report.cameras if camera.camera == CAMERA_FRONT)
    assert [gap.cause.value for gap in front.coverage.gaps] == ["rejected"]


def _add_segment(
    services: Services, start: datetime, end: datetime, *, flags: list[str], key: str
) -> None:
    with services.db.write() as session:
        front = session.scalar(select(Camera).where(Camera.code == CAMERA_FRONT))
        assert front is not None
        session.add(
            Segment(
                camera_id=front.id,
                starts_at=start,
                ends_at=end,
                declared_start="x",
                duration_seconds=(end - start).total_seconds(),
                sha256="0" * 64,
                size_bytes=1,
                blob_key=f"T1-S1-R1-F/{key}.mp4",
                container="mp4",
                video_codec="h264",
                width=1,
                height=1,
                frame_rate=None,
                keyframe_count=1,
                has_audio=False,
                clock_flags=flags,
                source="spool",
                original_name="x",
                received_at=start,
                expires_at=end,
                purged_at=None,
            )
        )


def _causes(services: Services, settings: Settings | None = None) -> dict[str, list[str]]:
    with services.db.read() as session:
        sitting = session.scalar(select(Sitting).where(Sitting.code == "V-1"))
        assert sitting is not None
        report = coverage_report(session, sitting, settings or services.settings)
    return {
        camera.camera: [gap.cause.value for gap in camera.coverage.gaps]
        for camera in report.cameras
    }


def test_suspect_footage_inside_the_sitting_explains_its_gap(registered: Services) -> None:
    _schedule(registered, START)
    _add_segment(
        registered, START, START + timedelta(minutes=4), flags=["clock_ahead"], key="ahead"
    )
    causes = _causes(registered)
    assert causes[CAMERA_FRONT] == ["clock_suspect"]
    assert all(gaps == ["not_received"] for code, gaps in causes.items() if code != CAMERA_FRONT)


def test_a_suspect_segment_longer_than_the_reach_explains_the_gap(registered: Services) -> None:
    """Footage the report reads counts even when it starts further back than the 14 h reach
    (possible only when segments may last longer than that)."""
    _schedule(registered, START)
    _add_segment(
        registered,
        START - timedelta(hours=16),
        START + timedelta(minutes=3),
        flags=["clock_ahead"],
        key="long",
    )
    long_segments = registered.settings.model_copy(update={"max_segment_seconds": 20 * 3600.0})
    assert _causes(registered, long_segments)[CAMERA_FRONT] == ["clock_suspect"]
    # Without the longer limit the segment is not read, and it is beyond the reach.
    assert _causes(registered)[CAMERA_FRONT] == ["not_received"]


def test_a_suspect_clock_nearby_explains_the_gap(registered: Services) -> None:
    _schedule(registered, START)
    misfiled = START + timedelta(hours=8)  # local time written as UTC by the host
    _add_segment(
        registered,
        misfiled,
        misfiled + timedelta(minutes=10),
        flags=["timezone_suspect"],
        key="misfiled",
    )
    with registered.db.read() as session:
        sitting = session.scalar(select(Sitting).where(Sitting.code == "V-1"))
        assert sitting is not None
        report = coverage_report(session, sitting, registered.settings)
    causes = {
        camera.camera: [gap.cause.value for gap in camera.coverage.gaps]
        for camera in report.cameras
    }
    assert causes[CAMERA_FRONT] == ["clock_suspect"]
    assert all(
        cause == "not_received"
        for code, gaps in causes.items()
        if code != CAMERA_FRONT
        for cause in gaps
    )
