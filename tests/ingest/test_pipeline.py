"""The pipeline on real files: one file in, evidence (row + blob + ledger entry) or quarantine."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from services.context import Services
from services.demo import footage as synthetic
from services.ingest.pipeline import Arrival, Outcome
from storage.models import LedgerEntry, QuarantineRecord, Room, Segment, Sitting
from tests.conftest import CAMERA_FRONT, ROOM, VideoFactory

START_NAME = "20261124T090000+0800.mp4"
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
ARRIVED = START + timedelta(minutes=10)


def _spool(
    services: Services, source: Path, name: str = START_NAME, camera: str = CAMERA_FRONT
) -> Arrival:
    folder = services.settings.resolved_spool_dir / camera
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(source.read_bytes())
    return Arrival(
        path=path, camera_code=camera, file_name=name, source="spool", received_at=ARRIVED
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_good_file_becomes_row_blob_and_ledger_entry(
    registered: Services, make_video: VideoFactory
) -> None:
    video = make_video("good.mp4", seconds=4)
    arrival = _spool(registered, video)
    result = registered.pipeline.ingest(arrival)

    assert result.outcome is Outcome.STORED
    segment = result.segment
    assert segment is not None
    assert segment.starts_at == START
    assert segment.ends_at - segment.starts_at == timedelta(seconds=segment.duration_seconds)
    assert segment.duration_seconds == pytest.approx(4.0, abs=0.11)
    assert segment.sha256 == _sha(video)
    assert segment.declared_start == "20261124T090000+0800"
    assert segment.video_codec == "h264" and (segment.width, segment.height) == (320, 240)
    assert b"".join(registered.store.read(segment.blob_key)) == video.read_bytes()
    assert not arrival.path.exists()
    with registered.db.read() as session:
        entry = session.scalar(select(LedgerEntry).where(LedgerEntry.action == "segment.ingested"))
        assert entry is not None and entry.subject_id == str(segment.id)
        assert json.loads(entry.details)["sha256"] == segment.sha256


def test_expiry_is_three_calendar_years_after_the_sitting_it_covers(
    registered: Services, make_video: VideoFactory
) -> None:
    with registered.db.write() as session:
        room_id = session.scalar(select(Room.id).where(Room.code == ROOM))
        session.add(
            Sitting(
                code="S1",
                room_id=room_id,
                kind="theory",
                occupation="电工",
                level="四级",
                starts_at=START - timedelta(minutes=30),
                ends_at=START + timedelta(hours=1),
            )
        )
    result = registered.pipeline.ingest(_spool(registered, make_video("a.mp4")))
    assert result.segment is not None
    # Sitting ends 10:00 local on 24 Nov 2026 -> end of 24 Nov 2029 local = 16:00 UTC.
    assert result.segment.expires_at == datetime(2029, 11, 24, 16, tzinfo=UTC)


def test_same_bytes_again_is_a_duplicate_not_a_second_row(
    registered: Services, make_video: VideoFactory
) -> None:
    video = make_video("a.mp4")
    first = registered.pipeline.ingest(_spool(registered, video))
    again = _spool(registered, video)
    second = registered.pipeline.ingest(again)
    assert second.outcome is Outcome.DUPLICATE
    assert second.segment is not None and first.segment is not None
    assert second.segment.id == first.segment.id
    assert not again.path.exists()
    with registered.db.read() as session:
        assert len(session.scalars(select(Segment)).all()) == 1


def test_different_bytes_at_the_same_start_conflict_and_are_quarantined(
    registered: Services, make_video: VideoFactory
) -> None:
    registered.pipeline.ingest(_spool(registered, make_video("a.mp4", seed=1)))
    other = make_video("b.mp4", seed=2)
    result = registered.pipeline.ingest(_spool(registered, other))
    assert result.outcome is Outcome.CONFLICT
    with registered.db.read() as session:
        record = session.get(QuarantineRecord, result.quarantine_id)
        assert record is not None and record.reason_code == "conflict"
        assert record.sha256 == _sha(other)
        assert len(session.scalars(select(Segment)).all()) == 1
    kept = registered.quarantine.root / record.stored_path
    assert kept.read_bytes() == other.read_bytes()


BadInput = Callable[[Path, VideoFactory], Path]


def _empty(folder: Path, _make: VideoFactory) -> Path:
    path = folder / "empty.mp4"
    path.write_bytes(b"")
    return path


def _text(folder: Path, _make: VideoFactory) -> Path:
    path = folder / "notes.mp4"
    path.write_text("这不是视频 / not a video\n" * 20, encoding="utf-8")
    return path


def _random(folder: Path, _make: VideoFactory) -> Path:
    path = folder / "noise.mp4"
    path.write_bytes(bytes((i * 7919) % 251 for i in range(50_000)))
    return path


def _truncated(folder: Path, make: VideoFactory) -> Path:
    return synthetic.write_truncated_mp4(folder / "cut.mp4", make("whole.mp4"))


def _audio_only(folder: Path, _make: VideoFactory) -> Path:
    return synthetic.write_audio_only(folder / "audio.mp4", 3.0)


def _jpeg(folder: Path, _make: VideoFactory) -> Path:
    return synthetic.write_jpeg_as_video(folder / "still.mp4")


def _undecodable(folder: Path, make: VideoFactory) -> Path:
    return synthetic.write_undecodable(folder / "broken.mkv", make("src.mkv"))


@pytest.mark.parametrize(
    ("make_bad", "code"),
    [
        (_empty, "empty_file"),
        (_text, "not_a_video"),
        (_random, "not_a_video"),
        (_truncated, "not_a_video"),
        (_audio_only, "no_video_stream"),
        (_jpeg, "image_not_recording"),
        (_undecodable, "undecodable"),
    ],
)
def test_unusable_files_are_quarantined_with_their_reason(
    registered: Services, make_video: VideoFactory, tmp_path: Path, make_bad: BadInput, code: str
) -> None:
    bad = make_bad(tmp_path, make_video)
    arrival = _spool(registered, bad)
    result = registered.pipeline.ingest(arrival)

    assert result.outcome is Outcome.REJECTED
    assert result.code == code
    assert not arrival.path.exists()
    with registered.db.read() as session:
        record = session.get(QuarantineRecord, result.quarantine_id)
        assert record is not None
        assert session.scalars(select(Segment)).all() == []
        entry = session.scalar(select(LedgerEntry).where(LedgerEntry.action == "segment.rejected"))
        assert entry is not None and entry.subject_id == str(record.id)
    kept = registered.quarantine.root / record.stored_path
    assert kept.read_bytes() == bad.read_bytes()
    reason = json.loads(kept.with_name(kept.name + ".json").read_text(encoding="utf-8"))
    assert reason["code"] == code and reason["sha256"] == record.sha256
    assert record.claimed_start == START


def test_absurd_duration_is_refused(registered: Services, make_video: VideoFactory) -> None:
    registered.settings.max_segment_seconds = 2.0
    result = registered.pipeline.ingest(_spool(registered, make_video("long.mp4", seconds=4)))
    assert (result.outcome, result.code) == (Outcome.REJECTED, "absurd_duration")


@pytest.mark.parametrize(
    ("name", "camera", "code"),
    [
        ("cam-export.mp4", CAMERA_FRONT, "unparseable_start"),
        ("19700101T000000Z.mp4", CAMERA_FRONT, "clock_reset"),
        (START_NAME, "NOT-A-CAMERA", "unknown_camera"),
    ],
)
def test_unplaceable_files_are_quarantined(
    registered: Services, make_video: VideoFactory, name: str, camera: str, code: str
) -> None:
    arrival = _spool(registered, make_video("ok.mp4"), name=name, camera=camera)
    result = registered.pipeline.ingest(arrival)
    assert (result.outcome, result.code) == (Outcome.REJECTED, code)
    assert not arrival.path.exists()
    with registered.db.read() as session:
        record = session.get(QuarantineRecord, result.quarantine_id)
        assert record is not None and record.camera_code == camera


def test_end_later_than_arrival_is_flagged_clock_ahead(
    registered: Services, make_video: VideoFactory
) -> None:
    arrival = _spool(registered, make_video("a.mp4"))
    early = Arrival(
        path=arrival.path,
        camera_code=arrival.camera_code,
        file_name=arrival.file_name,
        source="spool",
        received_at=START - timedelta(hours=1),
    )
    result = registered.pipeline.ingest(early)
    assert result.segment is not None
    assert result.segment.clock_flags == ["clock_ahead"]


def test_name_without_offset_is_read_in_the_configured_zone_and_flagged(
    registered: Services, make_video: VideoFactory
) -> None:
    result = registered.pipeline.ingest(
        _spool(registered, make_video("a.mkv", fmt="matroska"), name="20261124T090000.mkv")
    )
    assert result.segment is not None
    assert result.segment.starts_at == START
    assert "zone_assumed" in result.segment.clock_flags


def test_a_file_held_by_another_worker_is_skipped(
    registered: Services, make_video: VideoFactory
) -> None:
    import fcntl

    arrival = _spool(registered, make_video("a.mp4"))
    with arrival.path.open("rb") as other_worker:
        fcntl.flock(other_worker.fileno(), fcntl.LOCK_EX)
        result = registered.pipeline.ingest(arrival)
    assert result.outcome is Outcome.SKIPPED
    assert arrival.path.exists()


def test_a_rejected_arrival_that_comes_back_keeps_its_one_quarantine_record(
    registered: Services, tmp_path: Path
) -> None:
    # What a kill after the quarantine record's commit, before the arrival's removal, leaves:
    # the same file, same name, same arrival time, ingested again by the next run.
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a recording")
    first = registered.pipeline.ingest(_spool(registered, bad))
    again = registered.pipeline.ingest(_spool(registered, bad))

    assert first.outcome is again.outcome is Outcome.REJECTED
    assert again.quarantine_id == first.quarantine_id
    with registered.db.read() as session:
        assert len(session.scalars(select(QuarantineRecord)).all()) == 1
        rejected = session.scalars(
            select(LedgerEntry).where(LedgerEntry.action == "segment.rejected")
        ).all()
        assert len(rejected) == 1


def test_the_same_bad_file_arriving_again_later_is_a_second_record(
    registered: Services, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a recording")
    first = registered.pipeline.ingest(_spool(registered, bad))
    later = dataclasses.replace(_spool(registered, bad), received_at=ARRIVED + timedelta(hours=1))

    assert registered.pipeline.ingest(later).quarantine_id != first.quarantine_id
