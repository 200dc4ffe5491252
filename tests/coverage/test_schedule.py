"""Importing the schedule (场次): CSV and JSON, re-import by code, and every refusal whole."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from services.context import Services
from services.coverage.schedule import ScheduleError, parse_csv
from storage.models import LedgerEntry, Sitting
from tests.conftest import ROOM

SHANGHAI = ZoneInfo("Asia/Shanghai")
HEADER = "sitting_code,room_code,kind,occupation,level,starts_at,ends_at\n"


def _row(
    code: str,
    start: str = "2026-11-24T09:00:00+08:00",
    end: str = "2026-11-24T10:30:00+08:00",
    room: str = ROOM,
) -> str:
    return f"{code},{room},theory,电工,四级,{start},{end}\n"


def _import(services: Services, text: str) -> list[str]:
    notes: list[str] = []
    rows = parse_csv(text, SHANGHAI, notes)
    services.db.run_write(
        lambda session: services.import_schedule(session, rows, actor="test", zone_assumed=notes)
    )
    return notes


def _sittings(services: Services) -> int:
    with services.db.read() as session:
        return session.scalar(select(func.count()).select_from(Sitting)) or 0


def test_import_then_reimport_updates_by_code(registered: Services) -> None:
    _import(
        registered,
        HEADER
        + _row("S-1")
        + _row("S-2", "2026-11-24T11:00:00+08:00", "2026-11-24T12:00:00+08:00"),
    )
    _import(registered, HEADER + _row("S-1", "2026-11-24T08:30:00+08:00"))
    assert _sittings(registered) == 2
    with registered.db.read() as session:
        moved = session.scalar(select(Sitting).where(Sitting.code == "S-1"))
        assert moved is not None and moved.starts_at.hour == 0 and moved.starts_at.minute == 30
        actions = session.scalars(select(LedgerEntry.action)).all()
    assert actions.count("sitting.created") == 2 and actions.count("sitting.updated") == 1


def test_naive_timestamps_take_the_configured_zone_and_say_so(registered: Services) -> None:
    notes = _import(registered, HEADER + _row("S-1", "2026-11-24T09:00:00", "2026-11-24T10:30:00"))
    assert notes == ["line 2, starts_at", "line 2, ends_at"]
    with registered.db.read() as session:
        sitting = session.scalar(select(Sitting))
        assert sitting is not None and sitting.starts_at.hour == 1  # 09:00 +08:00


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            _row("S-1") + _row("S-2", "2026-11-24T10:00:00+08:00", "2026-11-24T09:00:00+08:00"),
            "line 3, ends_at: the sitting ends before it starts",
        ),
        (
            _row("S-1") + _row("S-1", "2026-11-25T09:00:00+08:00", "2026-11-25T10:00:00+08:00"),
            "line 3, sitting_code: 'S-1' already appears at line 2",
        ),
        (_row("S-1") + _row("S-2", room="NO-SUCH-ROOM"), "line 3, room_code: unknown room"),
        (
            _row("S-1") + _row("S-2", "2026-11-24T10:00:00+08:00", "2026-11-24T11:00:00+08:00"),
            "line 3: sitting 'S-2' overlaps 'S-1' (line 2)",
        ),
        (_row("S-1") + _row("S-2", "tomorrow morning"), "line 3, starts_at: 'tomorrow morning'"),
        (
            _row("S-1") + "S-2,T1-S1-R1,lab,电工,四级,2026-11-25T09:00:00Z,2026-11-25T10:00:00Z\n",
            "line 3, kind",
        ),
        (
            _row("S-1") + "S-2,T1-S1-R1,theory,,四级,2026-11-25T09:00:00Z,2026-11-25T10:00:00Z\n",
            "line 3, occupation: missing",
        ),
    ],
)
def test_bad_rows_refuse_the_whole_file(registered: Services, body: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        _import(registered, HEADER + body)
    assert message in str(caught.value)
    assert _sittings(registered) == 0


def test_overlap_with_a_stored_sitting_is_refused(registered: Services) -> None:
    _import(registered, HEADER + _row("S-1"))
    with pytest.raises(ScheduleError, match="overlaps 'S-1' \\(the database\\)"):
        _import(
            registered,
            HEADER + _row("S-9", "2026-11-24T10:00:00+08:00", "2026-11-24T11:00:00+08:00"),
        )


def test_a_header_without_the_columns_is_refused() -> None:
    with pytest.raises(ScheduleError, match="line 1: the header lacks starts_at"):
        parse_csv("sitting_code,room_code,kind,occupation,level,start,ends_at\n", SHANGHAI, [])


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("9999-12-31T20:00:00+08:00", "9999-12-31T23:00:00+08:00"),
        ("2100-01-01T09:00:00+08:00", "2100-01-01T10:00:00+08:00"),
        ("1999-12-31T09:00:00+08:00", "1999-12-31T10:00:00+08:00"),
        ("0001-01-01T00:00:00+08:00", "0001-01-01T01:00:00+08:00"),
    ],
)
def test_a_sitting_outside_2000_to_2100_is_refused_as_a_bad_row(start: str, end: str) -> None:
    # Near year 9999 its grace period and retention date cannot be computed: the schedule
    # PUT answered 500 (nothing imported, but no reason given).
    with pytest.raises(ScheduleError, match="between 2000 and 2100"):
        parse_csv(HEADER + _row("FAR-1", start, end), SHANGHAI, [])
