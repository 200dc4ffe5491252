"""A hold's scope is frozen when it is placed and grows to the union when its sitting moves
(services/retention/holds.py); expiry is the same whichever of footage and sitting arrives
first (services/coverage/spans.py, services/retention/purge.py `expiry_of_span`); the purge
reports what it did, not what it planned."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, column, create_engine, insert, select, table, text

from services.cli import main
from services.context import Services
from services.coverage.schedule import parse_json
from services.retention.holds import HoldRequest
from services.retention.purge import execute_purge, plan_purge
from services.settings import Settings
from storage.db import Database, alembic_config
from storage.models import HoldScopeRecord, LedgerEntry, Segment, UTCDateTime
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, ROOM, VideoFactory, ingest_file
from tests.retention.test_purge import (
    MadeSegment,
    SegmentSpec,
    assert_purged,
    assert_untouched,
    hold,
    make_segments,
    release,
)
from tests.s3server import ACCESS_KEY, SECRET_KEY

DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)
# 09:00-10:30 in Shanghai on 1 June 2022: footage that has long passed its three years.
START = datetime(2022, 6, 1, 1, tzinfo=UTC)
END = START + 90 * MINUTE


def import_sitting(services: Services, code: str, starts_at: datetime, ends_at: datetime) -> None:
    """Through the real schedule import, as the exam-affairs system's export would arrive."""
    notes: list[str] = []
    rows = parse_json(
        {
            "sittings": [
                {
                    "sitting_code": code,
                    "room_code": ROOM,
                    "kind": "theory",
                    "occupation": "电工",
                    "level": "四级",
                    "starts_at": starts_at.isoformat(),
                    "ends_at": ends_at.isoformat(),
                }
            ]
        },
        services.settings.zone,
        notes,
    )
    services.db.run_write(
        lambda session: services.import_schedule(session, rows, actor="test", zone_assumed=notes)
    )


def ledger_details(services: Services, action: str) -> list[dict]:
    with services.db.read() as session:
        entries = session.scalars(
            select(LedgerEntry).where(LedgerEntry.action == action).order_by(LedgerEntry.seq)
        ).all()
    return [json.loads(entry.details) for entry in entries]


def legal_hold(services: Services, segment: MadeSegment | Segment) -> bool:
    info = services.store.stat(segment.blob_key)
    assert info is not None
    return info.legal_hold


def test_moving_a_held_sitting_keeps_its_old_footage_held_and_holds_the_new(
    registered: Services,
    tmp_path: Path,
    now: datetime,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expired = now - DAY
    old_front, old_back, new_front, new_back, unrelated = make_segments(
        registered,
        [
            SegmentSpec(CAMERA_FRONT, START + 10 * MINUTE, START + 20 * MINUTE, expired),
            SegmentSpec(CAMERA_BACK, START + 10 * MINUTE, START + 20 * MINUTE, expired),
            SegmentSpec(CAMERA_FRONT, START + DAY, START + DAY + 10 * MINUTE, expired),
            SegmentSpec(CAMERA_BACK, END + DAY - MINUTE, END + DAY + 9 * MINUTE, expired),
            SegmentSpec(CAMERA_FRONT, START + 3 * DAY, START + 3 * DAY + 10 * MINUTE, expired),
        ],
        tmp_path / "blobs",
    )
    held = (old_front, old_back, new_front, new_back)
    import_sitting(registered, "HELD-1", START, END)
    hold_id = hold(registered, HoldRequest(reason="投诉 complaint", sitting_code="HELD-1"))
    # The exam-affairs system moves the sitting by a day; the schedule is imported again.
    import_sitting(registered, "HELD-1", START + DAY, END + DAY)

    with registered.db.read() as session:
        plan = plan_purge(session, registered.settings, now)
    assert [item.segment_id for item in plan.items] == [unrelated.id]
    assert plan.held == {segment.id: [hold_id] for segment in held}

    capsys.readouterr()
    assert main(["retention", "purge", "--execute", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["planned"], summary["purged"], summary["skipped"]) == (1, 1, 0)
    assert_purged(registered, unrelated, summary["run"])
    for segment in held:
        assert_untouched(registered, segment)
    [grown] = ledger_details(registered, "hold.scope_added")
    assert grown["sitting"] == "HELD-1" and grown["segments"] == [new_front.id, new_back.id]
    assert {part["camera"] for part in grown["added"]} == {CAMERA_FRONT, CAMERA_BACK}

    # Moving it back adds nothing (the frozen scope covers it); releasing frees both places.
    import_sitting(registered, "HELD-1", START, END)
    assert len(ledger_details(registered, "hold.scope_added")) == 1
    release(registered, hold_id)
    with registered.db.read() as session:
        plan = plan_purge(session, registered.settings, datetime.now(UTC))
    assert {item.segment_id for item in plan.items} == {segment.id for segment in held}


def test_on_s3_a_moved_held_sitting_puts_a_legal_hold_on_its_new_footage(
    s3_services: Services, tmp_path: Path
) -> None:
    services = s3_services
    later = datetime.now(UTC).replace(microsecond=0) + 30 * DAY
    old, new, elsewhere = make_segments(
        services,
        [
            SegmentSpec(CAMERA_FRONT, START + 10 * MINUTE, START + 20 * MINUTE, later),
            SegmentSpec(CAMERA_BACK, START + DAY + 10 * MINUTE, START + DAY + 20 * MINUTE, later),
            SegmentSpec(CAMERA_BACK, START + 2 * DAY, START + 2 * DAY + 10 * MINUTE, later),
        ],
        tmp_path,
    )
    import_sitting(services, "HELD-S3", START, END)
    hold_id = hold(services, HoldRequest(reason="appeal", sitting_code="HELD-S3"))
    assert (legal_hold(services, old), legal_hold(services, new)) == (True, False)

    import_sitting(services, "HELD-S3", START + DAY, END + DAY)
    assert (legal_hold(services, old), legal_hold(services, new)) == (True, True)
    assert not legal_hold(services, elsewhere)
    assert ledger_details(services, "hold.scope_added")[0]["segments"] == [new.id]

    # Release lifts the legal hold in both places, the old one included.
    release(services, hold_id)
    assert (legal_hold(services, old), legal_hold(services, new)) == (False, False)


def test_footage_stored_later_inside_a_held_scope_gets_a_legal_hold(
    s3_services: Services, make_video: VideoFactory
) -> None:
    services = s3_services
    hold_id = hold(
        services,
        HoldRequest(
            reason="complaint",
            camera_code=CAMERA_FRONT,
            held_from=datetime(2026, 11, 24, 0, tzinfo=UTC),
            held_until=datetime(2026, 11, 24, 2, tzinfo=UTC),
        ),
    )
    inside = ingest_file(services, CAMERA_FRONT, make_video("20261124T090000+0800.mp4"))
    outside = ingest_file(services, CAMERA_FRONT, make_video("20261124T110000+0800.mp4"))
    assert (legal_hold(services, inside), legal_hold(services, outside)) == (True, False)
    with services.db.read() as session:
        entry = session.scalar(
            select(LedgerEntry).where(LedgerEntry.action == "hold.segment_covered")
        )
    assert entry is not None and entry.subject_id == str(inside.id)
    assert json.loads(entry.details) == {"holds": [hold_id]}


def _expiry_after_both_arrive(
    services: Services, video: Path, sitting: tuple[datetime, datetime], *, footage_first: bool
) -> datetime:
    if footage_first:
        segment = ingest_file(services, CAMERA_FRONT, video)
        import_sitting(services, "NIGHT-1", *sitting)
    else:
        import_sitting(services, "NIGHT-1", *sitting)
        segment = ingest_file(services, CAMERA_FRONT, video)
    with services.db.read() as session:
        stored = session.get(Segment, segment.id)
        assert stored is not None
        return stored.expires_at


ORDERS = pytest.mark.parametrize("footage_first", [True, False], ids=["footage", "sitting"])


@ORDERS
def test_a_segment_from_2345_to_0010_is_kept_three_years_from_its_own_end(
    registered: Services, make_video: VideoFactory, footage_first: bool
) -> None:
    # 23:45 to 00:10 local; the sitting it films ends at 23:50 on the 24th.
    video = make_video("20261124T234500+0800.mp4", seconds=25 * 60, fps=1, gop_seconds=60)
    sitting = (datetime(2026, 11, 24, 14, tzinfo=UTC), datetime(2026, 11, 24, 15, 50, tzinfo=UTC))
    expiry = _expiry_after_both_arrive(registered, video, sitting, footage_first=footage_first)
    assert expiry == datetime(2029, 11, 25, 16, tzinfo=UTC)  # the end of 25 November, local


@ORDERS
def test_footage_in_a_margin_gets_the_same_expiry_whichever_arrives_first(
    registered: Services, make_video: VideoFactory, footage_first: bool
) -> None:
    registered.settings.coverage_pre_margin_seconds = 600
    registered.settings.coverage_post_margin_seconds = 600
    # 23:56 local, after the sitting's end at 23:55 but inside its required interval, which
    # runs to 00:05 on the 25th: the footage is kept to the end of the 25th, three years on.
    video = make_video("20261124T235600+0800.mp4", seconds=3)
    sitting = (datetime(2026, 11, 24, 14, tzinfo=UTC), datetime(2026, 11, 24, 15, 55, tzinfo=UTC))
    expiry = _expiry_after_both_arrive(registered, video, sitting, footage_first=footage_first)
    assert expiry == datetime(2029, 11, 25, 16, tzinfo=UTC)


@pytest.fixture
def s3_cli_env(monkeypatch: pytest.MonkeyPatch, s3_services: Services) -> None:
    """Point `examvault` at the same data dir, database and bucket as `s3_services`."""
    settings = s3_services.settings
    monkeypatch.delenv("EXAMVAULT_RETENTION_YEARS", raising=False)
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("EXAMVAULT_STORAGE_URL", str(settings.storage_url))
    monkeypatch.setenv("EXAMVAULT_S3_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("EXAMVAULT_S3_SECRET_KEY", SECRET_KEY)


def test_purge_counts_what_it_deleted_not_what_it_planned(
    s3_services: Services,
    tmp_path: Path,
    s3_cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    services = s3_services
    moment = datetime.now(UTC).replace(microsecond=0)
    gone, refused = make_segments(
        services,
        [
            SegmentSpec(CAMERA_FRONT, START, START + 10 * MINUTE, moment - DAY),
            SegmentSpec(CAMERA_FRONT, START + 10 * MINUTE, START + 20 * MINUTE, moment - DAY),
        ],
        tmp_path,
    )
    # The store's lock runs later than the row's expiry (its clock is behind ours): the purge
    # tombstones the segment but the store refuses to delete its bytes, for now.
    services.store.extend_retention(refused.blob_key, moment + DAY)

    result = execute_purge(services.db, services.store, services.settings, actor="test")
    assert (result.planned, result.purged, result.skipped) == (2, 2, 0)
    assert result.bytes == gone.size  # the refused blob's bytes are still stored
    assert result.blobs_left == 1
    assert services.store.stat(gone.blob_key) is None
    assert services.store.stat(refused.blob_key) is not None

    capsys.readouterr()
    assert main(["retention", "purge", "--execute", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["finished_from_earlier_runs"] == 0  # the store still refuses
    assert (summary["purged"], summary["bytes"]) == (0, 0)
    assert summary["blobs_left_for_next_run"] == 1


def _insert(connection: Connection, name: str, rows: list[dict[str, object]]) -> None:
    """Plain rows into a table as an older schema has it, without today's models."""
    instants = {key for row in rows for key, value in row.items() if isinstance(value, datetime)}
    columns = [column(key, UTCDateTime) if key in instants else column(key) for key in rows[0]]
    connection.execute(insert(table(name, *columns)), rows)


def test_the_migration_freezes_the_scope_of_existing_holds(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("EXAMVAULT_COVERAGE_PRE_MARGIN_SECONDS", "300")
    monkeypatch.setenv("EXAMVAULT_COVERAGE_POST_MARGIN_SECONDS", "600")
    command.upgrade(alembic_config(database_url), "0006")
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    engine = create_engine(database_url)
    with engine.begin() as connection:
        _insert(connection, "institutions", [{"id": 1, "code": "T1", "name": "n", "district": "d"}])
        _insert(connection, "sites", [{"id": 1, "code": "S", "institution_id": 1, "address": "a"}])
        _insert(connection, "rooms", [{"id": 1, "code": "R", "site_id": 1, "kind": "theory"}])
        _insert(
            connection,
            "cameras",
            [
                {"id": 1, "code": "F", "room_id": 1, "position": "front"},
                {"id": 2, "code": "B", "room_id": 1, "position": "back"},
            ],
        )
        _insert(
            connection,
            "sittings",
            [
                {
                    "id": 1,
                    "code": "S1",
                    "room_id": 1,
                    "kind": "theory",
                    "occupation": "o",
                    "level": "l",
                    "starts_at": START,
                    "ends_at": END,
                    "coverage_status": "pending",
                }
            ],
        )
        _insert(
            connection,
            "segments",
            [
                {
                    "id": 1,
                    "camera_id": 1,
                    "starts_at": START,
                    "ends_at": START + MINUTE,
                    "declared_start": "x",
                    "duration_seconds": 60.0,
                    "sha256": "0" * 64,
                    "size_bytes": 1,
                    "blob_key": "k",
                    "container": "mp4",
                    "video_codec": "h264",
                    "width": 1,
                    "height": 1,
                    "keyframe_count": 1,
                    "has_audio": False,
                    "clock_flags": "[]",
                    "source": "spool",
                    "original_name": "x.mp4",
                    "received_at": moment,
                    "expires_at": moment,
                }
            ],
        )
        common = {"reason": "r", "placed_by": "p", "placed_at": moment}
        _insert(
            connection,
            "holds",
            [
                {"id": 1, "scope": "sitting", "sitting_id": 1, "camera_id": None, **common},
                {"id": 2, "scope": "segment", "sitting_id": None, "camera_id": None, **common},
            ],
        )
        _insert(
            connection,
            "holds",
            [
                {
                    "id": 3,
                    "scope": "camera",
                    "camera_id": 2,
                    "held_from": START,
                    "held_until": END,
                    "released_at": moment,  # released holds keep their history too
                    **common,
                }
            ],
        )
        connection.execute(text("UPDATE holds SET segment_id = 1 WHERE id = 2"))
    engine.dispose()

    database = Database(database_url)
    try:
        database.upgrade()
        with database.read() as session:
            frozen = [
                (
                    record.hold_id,
                    record.segment_id,
                    record.camera_id,
                    record.starts_at,
                    record.ends_at,
                    record.cause,
                )
                for record in session.scalars(select(HoldScopeRecord).order_by(HoldScopeRecord.id))
            ]
    finally:
        database.dispose()
    required = (START - 5 * MINUTE, END + 10 * MINUTE)
    assert frozen == [
        (1, None, 1, *required, "backfilled"),
        (1, None, 2, *required, "backfilled"),
        (2, 1, None, None, None, "backfilled"),
        (3, None, 2, START, END, "backfilled"),
    ]


def test_settings_margins_reach_the_hold_scope(registered: Services) -> None:
    """A sitting hold freezes its required interval, margins included."""
    settings: Settings = registered.settings
    settings.coverage_pre_margin_seconds = 60
    settings.coverage_post_margin_seconds = 120
    import_sitting(registered, "M-1", START, END)
    hold_id = hold(registered, HoldRequest(reason="r", sitting_code="M-1"))
    with registered.db.read() as session:
        spans = {
            (record.starts_at, record.ends_at)
            for record in session.scalars(
                select(HoldScopeRecord).where(HoldScopeRecord.hold_id == hold_id)
            )
        }
    assert spans == {(START - MINUTE, END + 2 * MINUTE)}
