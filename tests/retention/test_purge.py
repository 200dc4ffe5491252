"""The retention purge (services/retention/purge.py): never a byte before its expiry, never
anything held, and every deleted blob leaves a tombstone and a ledger entry.

Segments are made without video: rows inserted directly and small blobs put into the store under
the row's key, so thousands of cases run in seconds. Holds go through `place_hold`, the purge
through `plan_purge` / `execute_purge` or the `examvault` command.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from services.cli import main
from services.context import Services
from services.retention.holds import HoldRequest, place_hold, release_hold
from services.retention.purge import PurgeResult, execute_purge, plan_purge, reconcile
from storage import ledger
from storage.models import Camera, LedgerEntry, PurgeRun, Room, Segment, Sitting, Tombstone
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, ROOM

CAMERAS = (CAMERA_FRONT, CAMERA_BACK)
SLOT = timedelta(minutes=10)


@dataclass(frozen=True)
class MadeSegment:
    """A segment row and its blob, as the test created them (what the purge must compare to)."""

    id: int
    camera_id: int
    starts_at: datetime
    ends_at: datetime
    expires_at: datetime
    blob_key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class SegmentSpec:
    camera: str
    starts_at: datetime
    ends_at: datetime
    expires_at: datetime


def camera_ids(services: Services) -> dict[str, int]:
    with services.db.read() as session:
        return {code: id_ for code, id_ in session.execute(select(Camera.code, Camera.id))}


def make_segments(
    services: Services, specs: list[SegmentSpec], scratch: Path, *, size: int = 0
) -> list[MadeSegment]:
    """Blobs first, then their rows: the same order as ingest, so a row always has its bytes.

    Each blob is distinct (its key is in it, or `size` random bytes), so no two segments share
    a hash."""
    ids = camera_ids(services)
    scratch.mkdir(parents=True, exist_ok=True)
    stored = []
    for spec in specs:
        key = f"{spec.camera}/purge-test/{uuid.uuid4().hex}.bin"
        source = scratch / f"{uuid.uuid4().hex}.bin"
        source.write_bytes(os.urandom(size) if size else f"evidence {key} ".encode() * 4)
        blob = services.store.put_file(source, lambda _sha, k=key: k, retain_until=spec.expires_at)
        source.unlink()
        stored.append((spec, blob))
    with services.db.write() as session:
        rows = [
            Segment(
                camera_id=ids[spec.camera],
                starts_at=spec.starts_at,
                ends_at=spec.ends_at,
                declared_start=spec.starts_at.isoformat(),
                duration_seconds=(spec.ends_at - spec.starts_at).total_seconds(),
                sha256=blob.sha256,
                size_bytes=blob.size,
                blob_key=blob.key,
                container="mov,mp4,m4a,3gp,3g2,mj2",
                video_codec="h264",
                width=320,
                height=240,
                frame_rate=25.0,
                keyframe_count=1,
                has_audio=False,
                clock_flags=[],
                source="spool",
                original_name=f"{spec.starts_at:%Y%m%dT%H%M%S}Z.mp4",
                received_at=spec.ends_at,
                expires_at=spec.expires_at,
                purged_at=None,
            )
            for spec, blob in stored
        ]
        session.add_all(rows)
        session.flush()
        return [
            MadeSegment(
                row.id,
                row.camera_id,
                row.starts_at,
                row.ends_at,
                row.expires_at,
                row.blob_key,
                row.sha256,
                row.size_bytes,
            )
            for row in rows
        ]


def make_sitting(services: Services, starts_at: datetime, ends_at: datetime) -> str:
    code = f"S-{uuid.uuid4().hex[:10]}"
    with services.db.write() as session:
        room_id = session.scalar(select(Room.id).where(Room.code == ROOM))
        session.add(
            Sitting(
                code=code,
                room_id=room_id,
                kind="theory",
                occupation="电工",
                level="四级",
                starts_at=starts_at,
                ends_at=ends_at,
            )
        )
    return code


def hold(services: Services, request: HoldRequest) -> int:
    placed = services.db.run_write(
        lambda session: place_hold(
            session, services.store, services.settings, request, actor="test"
        )
    )
    return placed.id


def release(services: Services, hold_id: int) -> None:
    services.db.run_write(
        lambda session: release_hold(
            session, services.store, services.settings, hold_id, actor="test", reason="case closed"
        )
    )


def purged_ids(services: Services) -> set[int]:
    with services.db.read() as session:
        return set(session.scalars(select(Segment.id).where(Segment.purged_at.is_not(None))))


def purge_entries(services: Services) -> list[LedgerEntry]:
    with services.db.read() as session:
        return list(
            session.scalars(select(LedgerEntry).where(LedgerEntry.action == "segment.purged"))
        )


def ledger_ok(services: Services) -> bool:
    with services.db.read() as session:
        verdict = ledger.verify(session)
    assert verdict.ok, verdict.mismatch
    return verdict.ok


def assert_untouched(services: Services, segment: MadeSegment) -> None:
    with services.db.read() as session:
        row = session.get(Segment, segment.id)
        assert row is not None and row.purged_at is None, f"segment {segment.id} was purged"
        tombstone = session.scalar(select(Tombstone).where(Tombstone.segment_id == segment.id))
        assert tombstone is None, f"segment {segment.id} has a tombstone"
    assert services.store.stat(segment.blob_key) is not None, f"blob of {segment.id} is gone"


def assert_purged(services: Services, segment: MadeSegment, run_id: str) -> None:
    """Row kept and marked, tombstone saying what it was, one ledger entry, bytes gone."""
    with services.db.read() as session:
        row = session.get(Segment, segment.id)
        assert row is not None and row.purged_at is not None
        tombstone = session.scalar(select(Tombstone).where(Tombstone.segment_id == segment.id))
        assert tombstone is not None, f"segment {segment.id} purged without a tombstone"
        entries = session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.action == "segment.purged",
                LedgerEntry.subject_id == str(segment.id),
            )
        ).all()
    assert (tombstone.sha256, tombstone.size_bytes, tombstone.blob_key) == (
        segment.sha256,
        segment.size,
        segment.blob_key,
    )
    assert (tombstone.starts_at, tombstone.ends_at, tombstone.expires_at) == (
        segment.starts_at,
        segment.ends_at,
        segment.expires_at,
    )
    assert tombstone.run_id == run_id
    assert tombstone.purged_at == row.purged_at
    assert tombstone.blob_deleted_at is not None
    assert tombstone.reason
    assert len(entries) == 1, f"segment {segment.id}: {len(entries)} segment.purged entries"
    details = json.loads(entries[0].details)
    assert details["sha256"] == segment.sha256 and details["key"] == segment.blob_key
    assert details["run"] == run_id
    assert services.store.stat(segment.blob_key) is None, f"blob of {segment.id} survived"


# Property: random segments, holds and instants.

HoldKind = Literal["sitting", "camera", "segment"]


@dataclass(frozen=True)
class HoldDefinition:
    """A hold as the test means it, to judge coverage without the code under test."""

    kind: HoldKind
    released: bool
    camera: str | None = None  # camera holds
    start: datetime | None = None  # sitting and camera holds
    end: datetime | None = None
    segment_id: int | None = None  # segment holds

    def covers(self, segment: MadeSegment, ids: dict[str, int]) -> bool:
        if self.released:
            return False
        if self.kind == "segment":
            return self.segment_id == segment.id
        assert self.start is not None and self.end is not None
        # A sitting keeps all footage of its room's cameras (both of them here); margins are 0.
        cameras = {ids[self.camera]} if self.camera is not None else set(ids.values())
        return (
            segment.camera_id in cameras
            and segment.starts_at < self.end
            and segment.ends_at > self.start
        )


Edge = Literal["free", "ends_at_start", "starts_at_end", "overlaps_start"]


@dataclass(frozen=True)
class HoldSpec:
    kind: HoldKind
    released: bool
    # Which segment a segment hold names, or which one a time hold is placed against.
    segment_index: int
    # Where a sitting or camera hold lies: on free slots, or against the anchor segment, just
    # touching it on either side (must not cover) or overlapping its start (must cover).
    edge: Edge
    camera: int  # camera index of a free camera hold
    slot: int
    slots: int


@dataclass(frozen=True)
class Scenario:
    # (camera index, start slot, minutes long, expiry offset in hours from now)
    segments: list[tuple[int, int, int, int]]
    holds: list[HoldSpec]
    # as_of: an offset in hours from now, or exactly some segment's expiry (the boundary)
    as_of_hours: int
    as_of_on_expiry: int | None


scenarios = st.builds(
    Scenario,
    segments=st.lists(
        st.tuples(
            st.integers(0, 1),
            st.integers(0, 12),
            # Whole slots mostly, so neighbouring segments and holds meet exactly.
            st.sampled_from([10, 10, 20, 7, 15]),
            # Never within the hour around now: plan-at-now and execute must see the same set.
            st.integers(-72, -1) | st.integers(1, 72),
        ),
        max_size=10,
        unique_by=lambda spec: (spec[0], spec[1]),  # one segment per camera and start
    ),
    holds=st.lists(
        st.builds(
            HoldSpec,
            kind=st.sampled_from(["sitting", "camera", "segment"]),
            released=st.booleans(),
            segment_index=st.integers(0, 9),
            edge=st.sampled_from(["free", "ends_at_start", "starts_at_end", "overlaps_start"]),
            camera=st.integers(0, 1),
            slot=st.integers(-1, 13),
            slots=st.integers(1, 4),
        ),
        max_size=4,
    ),
    as_of_hours=st.integers(-96, 96),
    as_of_on_expiry=st.none() | st.integers(0, 9),
)


def hold_interval(
    spec: HoldSpec, base: datetime, anchor: MadeSegment | None
) -> tuple[datetime, datetime]:
    length = spec.slots * SLOT
    if anchor is None or spec.edge == "free":
        return base + spec.slot * SLOT, base + spec.slot * SLOT + length
    if spec.edge == "ends_at_start":
        return anchor.starts_at - length, anchor.starts_at
    if spec.edge == "starts_at_end":
        return anchor.ends_at, anchor.ends_at + length
    return anchor.starts_at - length, anchor.starts_at + timedelta(minutes=1)


# Each example gets a day of its own (far from the others) so holds of earlier examples, which
# stay in the database, cannot cover the segments of later ones.
_example_days = itertools.count()


@hypothesis_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios)
def test_purge_takes_exactly_the_expired_unheld_segments(
    registered: Services, tmp_path: Path, scenario: Scenario
) -> None:
    services = registered
    ids = camera_ids(services)
    now = datetime.now(UTC)
    base = datetime(2020, 1, 6, 1, tzinfo=UTC) + timedelta(days=2 * next(_example_days))
    specs = [
        SegmentSpec(
            CAMERAS[camera],
            base + slot * SLOT,
            base + slot * SLOT + timedelta(minutes=minutes),
            now + timedelta(hours=hours),
        )
        for camera, slot, minutes, hours in scenario.segments
    ]
    made = make_segments(services, specs, tmp_path / "blobs")

    definitions: dict[int, HoldDefinition] = {}
    for spec in scenario.holds:
        anchor = made[spec.segment_index % len(made)] if made else None
        start, end = hold_interval(spec, base, anchor)
        if spec.kind == "segment":
            if anchor is None:
                continue
            definition = HoldDefinition(spec.kind, spec.released, segment_id=anchor.id)
            request = HoldRequest(reason="case", segment_id=anchor.id)
        elif spec.kind == "camera":
            camera = CAMERAS[spec.camera]
            if anchor is not None and spec.edge != "free":
                camera = next(code for code, id_ in ids.items() if id_ == anchor.camera_id)
            definition = HoldDefinition(
                spec.kind, spec.released, camera=camera, start=start, end=end
            )
            request = HoldRequest(
                reason="case", camera_code=camera, held_from=start, held_until=end
            )
        else:
            definition = HoldDefinition(spec.kind, spec.released, start=start, end=end)
            request = HoldRequest(reason="case", sitting_code=make_sitting(services, start, end))
        hold_id = hold(services, request)
        definitions[hold_id] = definition
        if spec.released:
            release(services, hold_id)

    def covering(segment: MadeSegment) -> set[int]:
        return {
            hold_id
            for hold_id, definition in definitions.items()
            if definition.covers(segment, ids)
        }

    # Planning at an arbitrary instant, past or future.
    if scenario.as_of_on_expiry is not None and made:
        as_of = made[scenario.as_of_on_expiry % len(made)].expires_at
    else:
        as_of = now + timedelta(hours=scenario.as_of_hours)
    with services.db.read() as session:
        plan = plan_purge(session, services.settings, as_of)
    listed = {item.segment_id for item in plan.items}
    assert all(item.expires_at <= as_of for item in plan.items)
    for segment in made:
        expired = segment.expires_at <= as_of
        holders = covering(segment)
        assert (segment.id in listed) == (expired and not holders), (segment, holders, as_of)
        # Shown by --hypothesis-show-statistics: proof the interesting cases are generated.
        event("expired and held" if expired and holders else "expired" if expired else "kept")
        if segment.expires_at == as_of:
            event("as_of exactly at an expiry")
        if expired and holders:
            assert set(plan.held[segment.id]) == holders
        else:
            assert segment.id not in plan.held

    # Executing: what a plan made now lists is what goes, and nothing else.
    with services.db.read() as session:
        planned_now = {
            item.segment_id
            for item in plan_purge(session, services.settings, datetime.now(UTC)).items
        }
    # Earlier examples' segments never become due here: their expiries are hours away from
    # their own now, and their holds were released, if at all, before their own purge.
    expected = {s.id for s in made if s.expires_at <= now and not covering(s)}
    assert planned_now == expected
    before = purged_ids(services)
    result = execute_purge(services.db, services.store, services.settings, actor="test")
    assert purged_ids(services) - before == planned_now
    assert result.purged == len(planned_now) and result.skipped == 0
    with services.db.read() as session:
        in_run = set(
            session.scalars(select(Tombstone.segment_id).where(Tombstone.run_id == result.run_id))
        )
        run = session.get(PurgeRun, result.run_id)
    assert in_run == planned_now
    assert run is not None and run.finished_at is not None and run.purged == result.purged
    for segment in made:
        if segment.id in expected:
            assert_purged(services, segment, result.run_id)
        else:
            assert_untouched(services, segment)
    assert ledger_ok(services)


# Scenarios.


def _spec(camera: str, start: datetime, expires_at: datetime) -> SegmentSpec:
    return SegmentSpec(camera, start, start + timedelta(minutes=10), expires_at)


T0 = datetime(2022, 6, 1, 1, tzinfo=UTC)


def test_dry_run_lists_but_deletes_nothing(
    registered: Services,
    tmp_path: Path,
    now: datetime,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expired = make_segments(
        registered,
        [_spec(CAMERA_FRONT, T0 + i * SLOT, now - timedelta(days=1)) for i in range(3)],
        tmp_path,
    )
    capsys.readouterr()
    assert main(["retention", "purge", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["segments"] == 3
    assert {item["segment"] for item in report["items"]} == {s.id for s in expired}
    assert main(["retention", "purge"]) == 0
    assert "dry run: nothing is deleted" in capsys.readouterr().out
    for segment in expired:
        assert_untouched(registered, segment)
    assert purge_entries(registered) == []
    with registered.db.read() as session:
        assert session.scalar(select(func.count()).select_from(PurgeRun)) == 0


def test_as_of_with_execute_is_refused_with_exit_2(
    registered: Services,
    tmp_path: Path,
    now: datetime,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    segment = make_segments(
        registered, [_spec(CAMERA_FRONT, T0, now - timedelta(days=1))], tmp_path
    )[0]
    capsys.readouterr()
    assert main(["retention", "purge", "--as-of", "2099-01-01", "--execute"]) == 2
    err = capsys.readouterr().err
    assert "--as-of" in err and "--execute" in err
    assert_untouched(registered, segment)


def test_as_of_plans_for_a_later_date_without_deleting(
    registered: Services,
    tmp_path: Path,
    now: datetime,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    later = make_segments(
        registered, [_spec(CAMERA_FRONT, T0, now + timedelta(days=10))], tmp_path
    )[0]
    capsys.readouterr()
    as_of = (now + timedelta(days=11)).isoformat()
    assert main(["retention", "purge", "--as-of", as_of, "--json"]) == 0
    assert [item["segment"] for item in json.loads(capsys.readouterr().out)["items"]] == [later.id]
    assert main(["retention", "purge", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["segments"] == 0
    assert_untouched(registered, later)


def test_execute_via_cli_purges_expired_and_keeps_the_rest(
    registered: Services,
    tmp_path: Path,
    now: datetime,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expired, kept = make_segments(
        registered,
        [
            _spec(CAMERA_FRONT, T0, now - timedelta(hours=1)),
            _spec(CAMERA_FRONT, T0 + SLOT, now + timedelta(hours=1)),
        ],
        tmp_path,
    )
    capsys.readouterr()
    assert main(["retention", "purge", "--execute", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["planned"], summary["purged"], summary["skipped"]) == (1, 1, 0)
    assert_purged(registered, expired, summary["run"])
    assert_untouched(registered, kept)


def test_released_hold_no_longer_keeps_the_segment(
    registered: Services, tmp_path: Path, now: datetime
) -> None:
    segment = make_segments(
        registered, [_spec(CAMERA_FRONT, T0, now - timedelta(days=1))], tmp_path
    )[0]
    hold_id = hold(registered, HoldRequest(reason="appeal 17", segment_id=segment.id))
    with registered.db.read() as session:
        assert plan_purge(session, registered.settings, now).items == []
    result = execute_purge(registered.db, registered.store, registered.settings, actor="test")
    assert result.purged == 0
    assert_untouched(registered, segment)

    release(registered, hold_id)
    with registered.db.read() as session:
        plan = plan_purge(session, registered.settings, datetime.now(UTC))
    assert [item.segment_id for item in plan.items] == [segment.id] and plan.held == {}
    result = execute_purge(registered.db, registered.store, registered.settings, actor="test")
    assert_purged(registered, segment, result.run_id)
    with registered.db.read() as session:
        actions = session.scalars(
            select(LedgerEntry.action).where(LedgerEntry.subject_type == "hold")
        ).all()
    assert actions == ["hold.placed", "hold.released"]


def test_held_segment_is_skipped_and_reported_in_plan_held(
    registered: Services, tmp_path: Path, now: datetime
) -> None:
    inside, outside, other_camera = make_segments(
        registered,
        [
            _spec(CAMERA_FRONT, T0, now - timedelta(days=1)),
            _spec(CAMERA_FRONT, T0 + 2 * SLOT, now - timedelta(days=1)),
            _spec(CAMERA_BACK, T0, now - timedelta(days=1)),
        ],
        tmp_path,
    )
    camera_hold = hold(
        registered,
        HoldRequest(
            reason="complaint",
            camera_code=CAMERA_FRONT,
            held_from=T0 + timedelta(minutes=5),
            held_until=T0 + SLOT,
        ),
    )
    with registered.db.read() as session:
        plan = plan_purge(session, registered.settings, now)
    assert plan.held == {inside.id: [camera_hold]}
    assert {item.segment_id for item in plan.items} == {outside.id, other_camera.id}
    assert plan.as_json(registered.settings.zone)["held"] == [
        {"segment": inside.id, "holds": [camera_hold]}
    ]

    result = execute_purge(registered.db, registered.store, registered.settings, actor="test")
    assert result.purged == 2
    assert_untouched(registered, inside)
    assert_purged(registered, outside, result.run_id)
    assert_purged(registered, other_camera, result.run_id)


def test_sitting_hold_keeps_every_camera_of_the_room(
    registered: Services, tmp_path: Path, now: datetime
) -> None:
    front, back, after = make_segments(
        registered,
        [
            _spec(CAMERA_FRONT, T0, now - timedelta(days=1)),
            _spec(CAMERA_BACK, T0, now - timedelta(days=1)),
            _spec(CAMERA_BACK, T0 + 6 * SLOT, now - timedelta(days=1)),
        ],
        tmp_path,
    )
    sitting = make_sitting(registered, T0 + timedelta(minutes=2), T0 + 3 * SLOT)
    hold_id = hold(registered, HoldRequest(reason="cheating inquiry", sitting_code=sitting))
    result = execute_purge(registered.db, registered.store, registered.settings, actor="test")
    assert result.purged == 1
    assert_untouched(registered, front)
    assert_untouched(registered, back)
    assert_purged(registered, after, result.run_id)
    with registered.db.read() as session:
        plan = plan_purge(session, registered.settings, datetime.now(UTC))
    assert plan.held == {front.id: [hold_id], back.id: [hold_id]}


def test_segment_before_expiry_is_never_purged(
    registered: Services, tmp_path: Path, now: datetime
) -> None:
    segment = make_segments(
        registered, [_spec(CAMERA_FRONT, T0, now + timedelta(seconds=30))], tmp_path
    )[0]
    result = execute_purge(registered.db, registered.store, registered.settings, actor="test")
    assert (result.planned, result.purged) == (0, 0)
    assert_untouched(registered, segment)


def _simulate_crash_after_commit(services: Services, segment: MadeSegment) -> str:
    """What a run killed between its commit and the blob deletion leaves: segment marked,
    tombstone and ledger entry committed, `blob_deleted_at` NULL, the bytes still there."""
    run_id = str(uuid.uuid4())
    moment = datetime.now(UTC)
    with services.db.write() as session:
        session.add(
            PurgeRun(
                id=run_id,
                as_of=moment,
                started_at=moment,
                finished_at=None,
                actor="test",
                planned=1,
                planned_bytes=segment.size,
            )
        )
        session.flush()
        session.execute(update(Segment).where(Segment.id == segment.id).values(purged_at=moment))
        session.add(
            Tombstone(
                segment_id=segment.id,
                run_id=run_id,
                sha256=segment.sha256,
                size_bytes=segment.size,
                blob_key=segment.blob_key,
                starts_at=segment.starts_at,
                ends_at=segment.ends_at,
                expires_at=segment.expires_at,
                purged_at=moment,
                reason="retention expired",
                blob_deleted_at=None,
            )
        )
        ledger.append(
            session,
            actor="test",
            action="segment.purged",
            subject_type="segment",
            subject_id=segment.id,
            details={"sha256": segment.sha256, "key": segment.blob_key, "run": run_id},
            recorded_at=moment,
        )
    return run_id


def test_rerun_finishes_a_tombstone_whose_blob_was_left(
    registered: Services, tmp_path: Path, now: datetime
) -> None:
    segment = make_segments(
        registered, [_spec(CAMERA_FRONT, T0, now - timedelta(days=1))], tmp_path
    )[0]
    run_id = _simulate_crash_after_commit(registered, segment)
    assert registered.store.stat(segment.blob_key) is not None
    assert reconcile(registered.db, registered.store).tombstoned_blob_present == [segment.id]

    result = execute_purge(registered.db, registered.store, registered.settings, actor="test")
    assert result.finished_leftovers == 1
    assert (result.planned, result.purged) == (0, 0)
    assert_purged(registered, segment, run_id)
    assert len(purge_entries(registered)) == 1
    assert reconcile(registered.db, registered.store).as_json() == {
        "blobs_without_rows": [],
        "missing_before_expiry": [],
        "missing_after_expiry": [],
        "tombstoned_blob_present": [],
        "evidence_lost": False,
    }
    assert ledger_ok(registered)


def test_reconcile_reports_each_kind_of_mismatch_and_exits_1_on_evidence_loss(
    registered: Services,
    tmp_path: Path,
    now: datetime,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    left_behind, lost, lost_after_expiry, fine = make_segments(
        registered,
        [
            _spec(CAMERA_FRONT, T0, now - timedelta(days=1)),
            _spec(CAMERA_FRONT, T0 + SLOT, now + timedelta(days=30)),
            _spec(CAMERA_FRONT, T0 + 2 * SLOT, now - timedelta(days=2)),
            _spec(CAMERA_BACK, T0, now + timedelta(days=30)),
        ],
        tmp_path,
    )
    capsys.readouterr()
    assert main(["retention", "reconcile"]) == 0
    assert "UNDER RETENTION whose blob is MISSING: 0" in capsys.readouterr().out

    stray = tmp_path / "stray.bin"
    stray.write_bytes(b"not evidence of anything we know")
    registered.store.put_file(stray, lambda _sha: "stray/orphan.bin", retain_until=now)
    _simulate_crash_after_commit(registered, left_behind)
    registered.store.delete(lost.blob_key)
    registered.store.delete(lost_after_expiry.blob_key)

    report = reconcile(registered.db, registered.store)
    assert report.blobs_without_rows == ["stray/orphan.bin"]
    assert report.tombstoned_blob_present == [left_behind.id]
    assert report.missing_before_expiry == [lost.id]
    assert report.missing_after_expiry == [lost_after_expiry.id]
    assert report.evidence_lost
    assert fine.id not in [*report.missing_before_expiry, *report.tombstoned_blob_present]

    assert main(["retention", "reconcile", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["missing_before_expiry"] == [lost.id]
    assert "EVIDENCE LOST" in captured.err and str(lost.id) in captured.err


# The same purge against S3 (moto's server), where objects are Object-Locked until expiry.


def test_purge_on_s3_deletes_unlocked_expired_objects_and_respects_legal_holds(
    s3_services: Services, tmp_path: Path
) -> None:
    services = s3_services
    # Whole seconds: the store rounds a lock up to the second, and the row must not expire
    # before its object does.
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    expiring, held, kept = make_segments(
        services,
        [
            _spec(CAMERA_FRONT, T0, soon),
            _spec(CAMERA_FRONT, T0 + SLOT, soon),
            _spec(CAMERA_BACK, T0, soon + timedelta(days=30)),
        ],
        tmp_path,
    )
    for segment in (expiring, held, kept):
        info = services.store.stat(segment.blob_key)
        assert info is not None and info.retain_until is not None
        assert info.retain_until >= segment.expires_at and not info.legal_hold

    hold_id = hold(services, HoldRequest(reason="appeal", segment_id=held.id))
    held_info = services.store.stat(held.blob_key)
    assert held_info is not None and held_info.legal_hold
    expiring_info = services.store.stat(expiring.blob_key)
    assert expiring_info is not None and not expiring_info.legal_hold

    # Nothing may go while the lock still runs.
    result = execute_purge(services.db, services.store, services.settings, actor="test")
    assert result.purged == 0
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 1.0)

    result = execute_purge(services.db, services.store, services.settings, actor="test")
    assert result.purged == 1
    assert_purged(services, expiring, result.run_id)
    assert_untouched(services, held)
    assert_untouched(services, kept)
    held_info = services.store.stat(held.blob_key)
    assert held_info is not None and held_info.legal_hold

    release(services, hold_id)
    held_info = services.store.stat(held.blob_key)
    assert held_info is not None and not held_info.legal_hold
    result = execute_purge(services.db, services.store, services.settings, actor="test")
    assert result.purged == 1
    assert_purged(services, held, result.run_id)
    assert_untouched(services, kept)
    assert set(services.store.keys()) == {kept.blob_key}
    assert not reconcile(services.db, services.store).as_json()["tombstoned_blob_present"]
    assert ledger_ok(services)


def test_a_hold_committed_while_a_purge_runs_is_respected(
    registered: Services, tmp_path: Path
) -> None:
    """The purge's batch must not act on a hold list read before a concurrent hold committed:
    the held segment stays, the other expired one goes, and the purge completes."""
    now = datetime.now(UTC)
    start = datetime(2022, 1, 1, tzinfo=UTC)
    held, free = make_segments(
        registered,
        [
            SegmentSpec(CAMERA_FRONT, start, start + SLOT, now - timedelta(days=1)),
            SegmentSpec(CAMERA_BACK, start, start + SLOT, now - timedelta(days=1)),
        ],
        tmp_path / "blobs",
    )
    outcome: dict[str, object] = {}

    def purge_now() -> None:
        try:
            outcome["result"] = execute_purge(
                registered.db, registered.store, registered.settings, actor="purge"
            )
        except Exception as exc:  # reported below: a purge that raised has not respected anything
            outcome["error"] = exc

    with registered.db.write() as session:
        place_hold(
            session,
            registered.store,
            registered.settings,
            HoldRequest(reason="court order", segment_id=held.id),
            actor="judge",
        )
        purge = threading.Thread(target=purge_now)
        purge.start()
        time.sleep(1.0)  # the purge is now waiting on the hold's transaction
    purge.join(timeout=60)
    assert not purge.is_alive(), "the purge did not finish"
    assert "error" not in outcome, outcome
    result = outcome["result"]
    assert isinstance(result, PurgeResult)
    # Planned before the hold committed (both) or after (one): either way only `free` goes.
    assert result.purged == 1 and result.skipped == result.planned - 1
    assert_untouched(registered, held)
    assert_purged(registered, free, result.run_id)
    with registered.db.read() as session:
        run = session.get(PurgeRun, result.run_id)
    assert run is not None and run.finished_at is not None and run.purged == 1


def test_a_purge_drops_derived_pictures_so_none_outlive_their_footage(
    registered: Services, tmp_path: Path, now: datetime
) -> None:
    cached = tmp_path / "strip.jpg"
    cached.write_bytes(b"\xff\xd8 a cached strip of faces")
    registered.store.put_file(
        cached,
        lambda _sha: "derived/thumbnails/S-1/T1-S1-R1-F/every-60s-abc.jpg",
        retain_until=now,
    )
    kept = execute_purge(registered.db, registered.store, registered.settings, actor="test")
    assert kept.purged == 0 and list(registered.store.keys("derived/"))  # nothing purged yet

    make_segments(registered, [_spec(CAMERA_FRONT, T0, now - timedelta(days=1))], tmp_path)
    result = execute_purge(registered.db, registered.store, registered.settings, actor="test")
    assert (result.purged, result.derived_dropped) == (1, 1)
    assert list(registered.store.keys("derived/")) == []
