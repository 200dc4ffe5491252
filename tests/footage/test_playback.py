"""Playback planning (pure: pieces, overlaps, gaps with causes, codec changes) and the remux
itself on real files in a local blob store (services/footage/playback.py)."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import pytest

from services.coverage.rule import Interval
from services.demo.footage import write_recording
from services.footage.playback import PlaybackPlan, PlaybackStream, SourceSegment, plan_playback
from storage.blobs import LocalBlobStore

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
MP4 = "mov,mp4,m4a,3gp,3g2,mj2"
TOLERANCE = timedelta(seconds=1)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _segment(
    segment_id: int,
    start: float,
    end: float,
    *,
    key: str = "",
    width: int = 320,
    container: str = MP4,
    purged: bool = False,
) -> SourceSegment:
    return SourceSegment(
        id=segment_id,
        starts_at=_at(start),
        ends_at=_at(end),
        blob_key=key or f"cam/{segment_id}.mp4",
        container=container,
        video_codec="h264",
        width=width,
        height=width * 3 // 4,
        purged=purged,
    )


def _spans(plan: PlaybackPlan) -> list[tuple[int, float, float, float]]:
    return [
        (
            piece.segment.id,
            (piece.wall_from - T0).total_seconds(),
            (piece.wall_until - T0).total_seconds(),
            piece.media_offset,
        )
        for piece in plan.pieces
    ]


def test_overlapping_segments_are_cut_where_the_later_one_begins() -> None:
    plan = plan_playback(
        "cam", [_segment(1, 0, 60), _segment(2, 59.5, 120)], _at(0), _at(120), tolerance=TOLERANCE
    )
    assert _spans(plan) == [(1, 0, 59.5, 0.0), (2, 59.5, 120, 59.5)]
    assert plan.gaps == ()


def test_a_segment_inside_the_previous_one_adds_nothing() -> None:
    plan = plan_playback(
        "cam", [_segment(1, 0, 60), _segment(2, 10, 20)], _at(0), _at(60), tolerance=TOLERANCE
    )
    assert _spans(plan) == [(1, 0, 60, 0.0)]


def test_gaps_are_cut_out_of_media_time_and_named() -> None:
    plan = plan_playback(
        "cam",
        [_segment(1, 0, 10), _segment(2, 10, 20, purged=True), _segment(3, 30, 40)],
        _at(5),
        _at(45),
        tolerance=TOLERANCE,
        rejected_claims=[Interval(_at(20), _at(30))],
    )
    assert _spans(plan) == [(1, 5, 10, 0.0), (3, 30, 40, 5.0)]
    causes = [
        ((g.start - T0).total_seconds(), (g.end - T0).total_seconds(), g.cause) for g in plan.gaps
    ]
    # 10..30 s is one hole: purged footage, then a rejected file; the purge is named first.
    assert causes == [(10, 30, "purged"), (40, 45, "not_received")]
    assert [plan.gap_media_at(g) for g in plan.gaps] == [5.0, 15.0]


def test_unexplained_holes_of_a_camera_with_a_suspect_clock_say_so() -> None:
    segments = [_segment(1, 0, 10), _segment(2, 10, 20, purged=True), _segment(3, 30, 40)]
    plan = plan_playback("cam", segments, _at(0), _at(45), tolerance=TOLERANCE, clock_suspect=True)
    # As the coverage report names them: the footage may be there, at the wrong time.
    assert [g.cause for g in plan.gaps] == ["purged", "clock_suspect"]


def test_holes_below_the_tolerance_are_no_gaps() -> None:
    plan = plan_playback(
        "cam", [_segment(1, 0, 10), _segment(2, 10.4, 20)], _at(0), _at(20), tolerance=TOLERANCE
    )
    assert plan.gaps == ()
    assert _spans(plan)[1] == (2, 10.4, 20, 10.0)


def test_playback_stops_before_a_codec_parameter_change() -> None:
    plan = plan_playback(
        "cam",
        [_segment(1, 0, 10), _segment(2, 10, 20, width=640), _segment(3, 20, 30)],
        _at(0),
        _at(30),
        tolerance=TOLERANCE,
    )
    assert _spans(plan) == [(1, 0, 10, 0.0)]
    assert plan.continue_at == _at(10)
    assert plan.stop_reason is not None and "640x480" in plan.stop_reason
    assert plan.gaps == ()  # nothing missing: the rest is there, in another format


def test_annex_b_and_length_prefixed_sources_do_not_share_a_track() -> None:
    plan = plan_playback(
        "cam",
        [_segment(1, 0, 10), _segment(2, 10, 20, container="mpegts")],
        _at(0),
        _at(20),
        tolerance=TOLERANCE,
    )
    assert plan.continue_at == _at(10)


def test_landing_on_an_earlier_keyframe_moves_every_offset() -> None:
    plan = plan_playback(
        "cam", [_segment(1, 0, 10), _segment(2, 10, 20)], _at(5), _at(20), tolerance=TOLERANCE
    )
    landed = plan.landed(_at(4))
    assert _spans(landed) == [(1, 4, 10, 0.0), (2, 10, 20, 6.0)]
    assert landed.start == _at(4)


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "objects")


def _record(store: LocalBlobStore, key: str, **options: Any) -> None:
    path = store.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    write_recording(path, seconds=6, gop_seconds=2, fps=10, **options)


def test_b_frame_sources_play_with_growing_timestamps(store: LocalBlobStore) -> None:
    for index in range(2):
        _record(store, f"cam/{index + 1}.mp4", preset="veryfast")  # veryfast has B-frames
    segments = [_segment(1, 0, 6), _segment(2, 6, 12)]
    plan = plan_playback("cam", segments, _at(3), _at(12), tolerance=TOLERANCE)
    stream = PlaybackStream(plan, store)
    landed = stream.open()
    data = b"".join(stream)
    with av.open(io.BytesIO(data)) as container:
        times = [float(f.time) for f in container.decode(container.streams.video[0])]
    assert landed.start == _at(2)
    assert len(times) == 100  # 2..12 s at 10 fps
    assert times[0] == pytest.approx(landed.media_start)
    assert all(b > a for a, b in itertools.pairwise(times))


def test_restricted_playback_starts_at_the_first_keyframe_inside_the_window(
    store: LocalBlobStore,
) -> None:
    _record(store, "cam/1.mp4")
    plan = plan_playback("cam", [_segment(1, 0, 6)], _at(3), _at(6), tolerance=TOLERANCE)
    stream = PlaybackStream(plan, store, not_before=_at(2.5))
    try:
        assert stream.open().start == _at(4)
    finally:
        stream.close()


def test_the_first_bytes_leave_before_the_range_is_read(store: LocalBlobStore) -> None:
    for index in range(3):
        _record(store, f"cam/{index + 1}.mp4")
    segments = [_segment(i + 1, 6 * i, 6 * i + 6) for i in range(3)]
    stream = PlaybackStream(
        plan_playback("cam", segments, _at(0), _at(18), tolerance=TOLERANCE), store
    )
    stream.open()
    chunks = iter(stream)
    header = next(chunks)
    assert header[4:8] == b"ftyp"  # the MP4 header goes out first, alone
    rest = list(chunks)
    assert len(rest) >= 9  # one fragment per 2 s keyframe interval, and the end
