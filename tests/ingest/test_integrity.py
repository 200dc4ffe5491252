"""Damaged footage (issue 11, hole 7): what the probe proves at ingest and the health pass on
every keyframe; damaged evidence is stored and flagged where it is, padding and garbage are not
evidence (docs/ingest.md, "What the probe proves")."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.access.tokens import create_token
from services.api.app import create_app
from services.context import Services
from services.health.sampling import DAMAGED, sample_segment_within
from services.ingest.pipeline import Arrival, IngestResult, Outcome
from services.ingest.probe import (
    TRAILING_ALLOWANCE_BYTES,
    mostly_damaged,
    probe_recording,
    trailing_allowance,
)
from storage.models import HealthFlag, LedgerEntry, QuarantineRecord
from tests.conftest import CAMERA_FRONT, VideoFactory, import_sitting
from tests.damage import flip_keyframe, keyframes

NAME = "20261124T090000+0800.mp4"
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def _ingest(services: Services, path: Path) -> IngestResult:
    folder = services.settings.resolved_spool_dir / CAMERA_FRONT
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / NAME
    target.write_bytes(path.read_bytes())
    return services.pipeline.ingest(
        Arrival(
            path=target,
            camera_code=CAMERA_FRONT,
            file_name=NAME,
            source="spool",
            received_at=START + timedelta(minutes=5),
        )
    )


def _damaged_flags(services: Services) -> list[tuple[float, float]]:
    with services.db.read() as session:
        rows = session.execute(
            select(HealthFlag.starts_at, HealthFlag.ends_at)
            .where(HealthFlag.kind == DAMAGED)
            .order_by(HealthFlag.starts_at)
        ).all()
    return [((s - START).total_seconds(), (e - START).total_seconds()) for s, e in rows]


def _middle_keyframe(path: Path) -> int:
    """The first keyframe at or past half of the file's bytes: one the probe always checks."""
    half = path.stat().st_size // 2
    return next(i for i, kf in enumerate(keyframes(path)) if kf.position >= half)


def test_trailing_allowance_grows_with_the_recording() -> None:
    assert trailing_allowance(0) == TRAILING_ALLOWANCE_BYTES
    assert trailing_allowance(100 * 1024**2) == TRAILING_ALLOWANCE_BYTES + 1024**2


@pytest.mark.parametrize(
    ("sampled", "damaged", "mostly"),
    [(9, 0, False), (9, 4, False), (9, 5, True), (1, 1, True), (2, 1, False), (0, 0, False)],
)
def test_a_recording_is_mostly_damaged_past_half_of_its_checked_keyframes(
    sampled: int, damaged: int, mostly: bool
) -> None:
    assert mostly_damaged(sampled, damaged) is mostly


def test_flipped_bytes_in_a_keyframe_are_stored_and_flagged_damaged_where_they_are(
    registered: Services, make_video: VideoFactory
) -> None:
    video = make_video("clip.mp4", seconds=10, fps=10, gop_seconds=1.0)
    target = _middle_keyframe(video)
    spoilt = keyframes(video)[target]
    flip_keyframe(video, spoilt)

    result = _ingest(registered, video)

    assert result.outcome is Outcome.STORED, result
    # That keyframe's group of pictures, one second of a 10 s recording, not the whole file.
    assert _damaged_flags(registered) == [
        pytest.approx((spoilt.seconds, spoilt.seconds + 1.0), abs=0.01)
    ]
    with registered.db.read() as session:
        entry = session.scalars(
            select(LedgerEntry).where(LedgerEntry.action == "segment.ingested")
        ).one()
    assert len(json.loads(entry.details)["damaged"]) == 1


def test_the_coverage_report_over_http_shows_where_the_footage_is_damaged(
    registered: Services, make_video: VideoFactory
) -> None:
    video = make_video("clip.mp4", seconds=10, fps=10, gop_seconds=1.0)
    spoilt = keyframes(video)[_middle_keyframe(video)]
    flip_keyframe(video, spoilt)
    assert _ingest(registered, video).outcome is Outcome.STORED
    import_sitting(registered, "S-DAMAGED", START, START + timedelta(seconds=10))
    _, token = registered.db.run_write(
        lambda session: create_token(session, role="admin", name="centre", actor="test")
    )

    with TestClient(create_app(registered)) as client:
        response = client.get(
            "/api/v1/sittings/S-DAMAGED/coverage", headers={"Authorization": f"Bearer {token}"}
        )

    assert response.status_code == 200, response.text
    front = next(c for c in response.json()["cameras"] if c["camera"] == CAMERA_FRONT)
    damaged = [flag for flag in front["health"] if flag["kind"] == DAMAGED]
    assert len(damaged) == 1
    start = datetime.fromisoformat(damaged[0]["start"])
    assert (start - START).total_seconds() == pytest.approx(spoilt.seconds, abs=0.01)
    assert damaged[0]["seconds"] == pytest.approx(1.0, abs=0.01)


def test_the_health_pass_flags_a_damaged_keyframe_the_probe_did_not_check(
    registered: Services, make_video: VideoFactory
) -> None:
    video = make_video("clip.mp4", seconds=10, fps=10, gop_seconds=0.5)
    # The keyframe after one the probe checks: with 20 keyframes and 9 checks, not checked.
    spoilt = keyframes(video)[_middle_keyframe(video) + 1]
    flip_keyframe(video, spoilt)
    assert probe_recording(video).damaged == ()
    result = _ingest(registered, video)
    assert result.outcome is Outcome.STORED and _damaged_flags(registered) == []

    assert registered.health.check_unchecked() == 1

    assert _damaged_flags(registered) == [
        pytest.approx((spoilt.seconds, spoilt.seconds + 0.5), abs=0.01)
    ]
    # Retuning picture thresholds re-derives the picture flags, never the damage.
    registered.health.rederive_flags()
    assert len(_damaged_flags(registered)) == 1


def test_keyframe_sampling_reports_damaged_stretches(make_video: VideoFactory) -> None:
    video = make_video("clip.mp4", seconds=6, fps=10, gop_seconds=1.0)
    spoilt = keyframes(video)[3]
    flip_keyframe(video, spoilt)

    sampling = sample_segment_within(video, budget_seconds=None)

    assert sampling.damaged == (pytest.approx((spoilt.seconds, spoilt.seconds + 1.0), abs=0.01),)
    assert len(sampling.samples) == 5  # the damaged keyframe is flagged, not judged


def test_a_file_whose_keyframes_are_mostly_damaged_is_quarantined(
    registered: Services, make_video: VideoFactory
) -> None:
    video = make_video("clip.mp4", seconds=10, fps=10, gop_seconds=1.0)
    for keyframe in keyframes(video):
        flip_keyframe(video, keyframe)

    result = _ingest(registered, video)

    assert (result.outcome, result.code) == (Outcome.REJECTED, "damaged_recording")


def test_a_recording_padded_with_zeros_is_refused_as_trailing_data_over_http(
    registered: Services, make_video: VideoFactory
) -> None:
    video = make_video("clip.mp4", seconds=3).read_bytes()
    padded = video + bytes(4 * 1024 * 1024)
    _, token = registered.db.run_write(
        lambda session: create_token(
            session, role="camera_host", name="host", cameras=[CAMERA_FRONT], actor="test"
        )
    )

    with TestClient(create_app(registered)) as client:
        response = client.put(
            f"/api/v1/ingest/{CAMERA_FRONT}/{NAME}",
            content=padded,
            headers={"Authorization": f"Bearer {token}"},
        )

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "trailing_data"
    assert f"byte {len(video)} of {len(padded)}" in body["message"]
    assert "多余数据" in body["message_zh"]
    with registered.db.read() as session:
        record = session.scalars(select(QuarantineRecord)).one()
    assert record.reason_code == "trailing_data" and record.size_bytes == len(padded)


@pytest.mark.parametrize("suffix", [".mkv", ".ts"])
def test_padding_after_other_containers_is_trailing_data(
    make_video: VideoFactory, tmp_path: Path, suffix: str
) -> None:
    video = make_video(f"clip{suffix}", seconds=3)
    padded = tmp_path / f"padded{suffix}"
    padded.write_bytes(video.read_bytes() + bytes(4 * 1024 * 1024))

    with pytest.raises(Exception) as raised:
        probe_recording(padded)

    assert getattr(raised.value, "code", None) == "trailing_data"


def test_a_few_stray_bytes_after_a_recording_are_within_the_allowance(
    registered: Services, make_video: VideoFactory
) -> None:
    video = make_video("clip.mp4", seconds=3)
    video.write_bytes(video.read_bytes() + b"\0" * 1000)

    result = _ingest(registered, video)

    assert result.outcome is Outcome.STORED
    assert (
        probe_recording(registered.store.local_path(result.segment.blob_key)).trailing_bytes == 1000
    )
