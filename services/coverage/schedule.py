"""The schedule: sittings (场次) from the exam-affairs system, as CSV (`examvault sittings
import`) or JSON (the admin API's bulk upsert). Both go through one validator: the whole batch
is checked before anything is written, an error names the line (or item) and field at fault,
and re-importing a code updates that sitting.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from itertools import pairwise

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.coverage.verdicts import refresh_verdict
from services.exchange import (
    MAX_PROBLEMS,
    Problem,
    has_control_characters,
    quoted,
    summary_text,
)
from services.ingest.clock import EARLIEST_PLAUSIBLE_START, LATEST_PLAUSIBLE_START
from services.registry import CODE, ROOM_KINDS
from services.settings import Settings
from storage import ledger
from storage.models import Room, Sitting

COLUMNS = ("sitting_code", "room_code", "kind", "occupation", "level", "starts_at", "ends_at")


class ScheduleError(ValueError):
    """A schedule refused whole; the message names the line or item and the field, and
    `problems` lists every problem found (each with its line and field)."""

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems = problems
        super().__init__(summary_text(problems))


def _problem(where: str, column: str | None, message: str) -> Problem:
    """`where` is "line N" (CSV) or "sittings[i]" (JSON)."""
    line = int(where.removeprefix("line ")) if where.startswith("line ") else None
    text = f"{where}, {column}: {message}" if column else f"{where}: {message}"
    return Problem(text, line=line, field=column, detail=message)


@dataclass(frozen=True)
class SittingRow:
    where: str  # "line 3" or "sittings[2]", for messages
    code: str
    room_code: str
    kind: str
    occupation: str
    level: str
    starts_at: datetime
    ends_at: datetime


@dataclass
class ScheduleSummary:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Naive timestamps are read in the configured zone; the operator is told which ones.
    zone_assumed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[str]:
        return self.created + self.updated


def _instant(value: str, where: str, name: str, zone: tzinfo, notes: list[str]) -> datetime:
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ScheduleError(
            [_problem(where, name, f"{quoted(value)} is not an ISO 8601 / RFC 3339 date-time")]
        ) from exc
    if "T" not in text.upper() and " " not in text:
        raise ScheduleError([_problem(where, name, f"{quoted(value)} has no time of day")])
    if moment.tzinfo is None:
        notes.append(f"{where}, {name}")
        moment = moment.replace(tzinfo=zone)
    try:
        instant = moment.astimezone(UTC)
    except OverflowError:
        instant = None
    # The bounds a segment's start has (clock.py): near year 9999 a sitting's grace period and
    # retention date could not even be computed.
    if instant is None or not EARLIEST_PLAUSIBLE_START <= instant < LATEST_PLAUSIBLE_START:
        raise ScheduleError(
            [_problem(where, name, f"{quoted(value)} is not between 2000 and 2100")]
        )
    return instant


def parse_rows(
    items: Iterable[tuple[str, Mapping[str, object]]],
    zone: tzinfo,
    notes: list[str],
    problems: list[Problem] | None = None,
) -> list[SittingRow]:
    """The rows, or ScheduleError listing every problem of every row (and `problems`, those
    found before the rows, e.g. a CSV line with too many fields)."""
    rows, problems = _rows_and_problems(items, zone, notes, list(problems or []))
    if problems:
        raise ScheduleError(problems[:MAX_PROBLEMS])
    return rows


def _rows_and_problems(
    items: Iterable[tuple[str, Mapping[str, object]]],
    zone: tzinfo,
    notes: list[str],
    problems: list[Problem],
) -> tuple[list[SittingRow], list[Problem]]:
    """The good rows, and every problem of the others."""
    rows: list[SittingRow] = []
    seen: dict[str, str] = {}
    for where, item in items:
        found: list[Problem] = []
        values: dict[str, str] = {}
        for column in COLUMNS:
            raw = item.get(column)
            if raw is None or not str(raw).strip():
                found.append(_problem(where, column, "missing"))
            elif has_control_characters(str(raw).strip()):
                found.append(_problem(where, column, "must not contain control characters"))
            else:
                values[column] = str(raw).strip()
        code = values.get("sitting_code")
        if code is not None and not CODE.match(code):
            found.append(
                _problem(
                    where,
                    "sitting_code",
                    f"{quoted(code)} must be 1-64 letters, digits, '_', '.' or '-'",
                )
            )
        elif code is not None and code in seen:
            found.append(
                _problem(where, "sitting_code", f"{code!r} already appears at {seen[code]}")
            )
        elif code is not None:
            seen[code] = where
        if "kind" in values and values["kind"] not in ROOM_KINDS:
            found.append(_problem(where, "kind", "must be 'theory' or 'practical'"))
        instants: dict[str, datetime] = {}
        for column in ("starts_at", "ends_at"):
            if column in values:
                try:
                    instants[column] = _instant(values[column], where, column, zone, notes)
                except ScheduleError as exc:
                    found.extend(exc.problems)
        starts, ends = instants.get("starts_at"), instants.get("ends_at")
        if starts is not None and ends is not None and ends <= starts:
            found.append(_problem(where, "ends_at", "the sitting ends before it starts"))
        if found:
            problems.extend(found)
            if len(problems) >= MAX_PROBLEMS:
                break
            continue
        assert starts is not None and ends is not None
        rows.append(
            SittingRow(
                where,
                values["sitting_code"],
                values["room_code"],
                values["kind"],
                values["occupation"],
                values["level"],
                starts,
                ends,
            )
        )
    return rows, problems


def parse_csv(text: str, zone: tzinfo, notes: list[str]) -> list[SittingRow]:
    rows, problems = _csv_rows(text, zone, notes)
    if problems:
        raise ScheduleError(problems[:MAX_PROBLEMS])
    return rows


def check_csv(session: Session, text: str, zone: tzinfo, notes: list[str]) -> list[SittingRow]:
    """The rows of a schedule CSV checked against the database too (rooms, overlaps), or
    ScheduleError listing every problem at once, in line order: a bad time on line 3 does not
    hide an unknown room on line 7. Reads only."""
    rows, problems = _csv_rows(text, zone, notes)
    try:
        _checked_rooms(session, rows)
    except ScheduleError as exc:
        problems = problems + exc.problems
    if problems:
        problems.sort(key=lambda problem: problem.line or 0)
        raise ScheduleError(problems[:MAX_PROBLEMS])
    return rows


def _csv_rows(text: str, zone: tzinfo, notes: list[str]) -> tuple[list[SittingRow], list[Problem]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = reader.fieldnames or []
    missing = [column for column in COLUMNS if column not in header]
    if missing:
        raise ScheduleError([_problem("line 1", None, f"the header lacks {', '.join(missing)}")])
    items = []
    extra: list[Problem] = []
    try:
        for row in reader:
            if None in row:
                extra.append(
                    _problem(f"line {reader.line_num}", None, "more fields than the header names")
                )
                continue
            items.append((f"line {reader.line_num}", row))
    except csv.Error as exc:
        # DictReader's own count lags behind a record that failed to parse; its reader's is right.
        extra.append(_problem(f"line {reader.reader.line_num}", None, f"not valid CSV ({exc})"))
    return _rows_and_problems(items, zone, notes, extra)


def parse_json(document: object, zone: tzinfo, notes: list[str]) -> list[SittingRow]:
    if not isinstance(document, dict) or not isinstance(document.get("sittings"), list):
        raise ScheduleError('expected {"sittings": [ ... ]}')
    items = []
    for index, item in enumerate(document["sittings"]):
        if not isinstance(item, dict):
            raise ScheduleError([_problem(f"sittings[{index}]", None, "expected an object")])
        items.append((f"sittings[{index}]", item))
    return parse_rows(items, zone, notes)


def _checked_rooms(session: Session, rows: list[SittingRow]) -> dict[str, Room]:
    """The rooms the rows name, or ScheduleError listing every unknown room and overlap."""
    rooms = {
        room.code: room
        for room in session.scalars(select(Room).where(Room.code.in_({r.room_code for r in rows})))
    }
    problems = [
        _problem(row.where, "room_code", f"unknown room {quoted(row.room_code)}")
        for row in rows
        if row.room_code not in rooms
    ]
    known = [row for row in rows if row.room_code in rooms]
    problems.extend(_overlaps(session, known, rooms))
    if problems:
        problems.sort(key=lambda problem: problem.line or 0)
        raise ScheduleError(problems[:MAX_PROBLEMS])
    return rooms


def _existing(session: Session, rows: list[SittingRow]) -> dict[str, Sitting]:
    return {
        sitting.code: sitting
        for sitting in session.scalars(
            select(Sitting).where(Sitting.code.in_([r.code for r in rows]))
        )
    }


def _values(row: SittingRow, rooms: dict[str, Room]) -> dict[str, object]:
    return {
        "room_id": rooms[row.room_code].id,
        "kind": row.kind,
        "occupation": row.occupation,
        "level": row.level,
        "starts_at": row.starts_at,
        "ends_at": row.ends_at,
    }


def preview_sittings(
    session: Session, rows: list[SittingRow], *, zone_assumed: list[str]
) -> ScheduleSummary:
    """What `upsert_sittings` would do, with the same checks (ScheduleError listing every
    problem), writing nothing."""
    rooms = _checked_rooms(session, rows)
    existing = _existing(session, rows)
    summary = ScheduleSummary(zone_assumed=zone_assumed)
    for row in rows:
        sitting = existing.get(row.code)
        if sitting is None:
            summary.created.append(row.code)
        elif any(getattr(sitting, k) != v for k, v in _values(row, rooms).items()):
            summary.updated.append(row.code)
        else:
            summary.unchanged.append(row.code)
    return summary


def upsert_sittings(
    session: Session, rows: list[SittingRow], *, actor: str, zone_assumed: list[str]
) -> ScheduleSummary:
    """Check rooms and overlaps against the database, then write, inside the caller's
    transaction (so a refusal leaves nothing half-imported)."""
    rooms = _checked_rooms(session, rows)
    summary = ScheduleSummary(zone_assumed=zone_assumed)
    existing = _existing(session, rows)
    for row in rows:
        values = _values(row, rooms)
        sitting = existing.get(row.code)
        if sitting is None:
            session.add(Sitting(code=row.code, coverage_status="pending", **values))
            summary.created.append(row.code)
            action = "sitting.created"
            changes: dict[str, object] = {k: _jsonable(v) for k, v in values.items()}
        else:
            changes = {
                key: {"from": _jsonable(getattr(sitting, key)), "to": _jsonable(value)}
                for key, value in values.items()
                if getattr(sitting, key) != value
            }
            if not changes:
                summary.unchanged.append(row.code)
                continue
            for key, value in values.items():
                setattr(sitting, key, value)
            summary.updated.append(row.code)
            action = "sitting.updated"
        session.flush()
        ledger.append(
            session,
            actor=actor,
            action=action,
            subject_type="sitting",
            subject_id=row.code,
            details={"room": row.room_code, **changes},
        )
    return summary


def _overlaps(session: Session, rows: list[SittingRow], rooms: dict[str, Room]) -> list[Problem]:
    """Two sittings in one room at once cannot both be filmed as scheduled."""
    problems: list[Problem] = []
    by_room: dict[str, list[tuple[datetime, datetime, str, str]]] = {}
    codes = {row.code for row in rows}
    for row in rows:
        by_room.setdefault(row.room_code, []).append(
            (row.starts_at, row.ends_at, row.code, row.where)
        )
    for room_code, spans in by_room.items():
        lo = min(span[0] for span in spans)
        hi = max(span[1] for span in spans)
        for sitting in session.scalars(
            select(Sitting).where(
                Sitting.room_id == rooms[room_code].id, Sitting.starts_at < hi, Sitting.ends_at > lo
            )
        ):
            if sitting.code not in codes:
                spans.append((sitting.starts_at, sitting.ends_at, sitting.code, "the database"))
        spans.sort()
        for (_, end_a, code_a, where_a), (start_b, _, code_b, where_b) in pairwise(spans):
            if start_b < end_a:
                later = where_b if where_b != "the database" else where_a
                # The text names no column (the two rows' times clash), the field says which.
                located = _problem(
                    later,
                    None,
                    f"sitting {code_b!r} overlaps {code_a!r} ({where_a}) in room {room_code!r}",
                )
                problems.append(
                    Problem(
                        located.text, line=located.line, field="starts_at", detail=located.detail
                    )
                )
    return problems


def _jsonable(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


# Told of each sitting an import created or moved (and who imported it), inside the import's
# transaction, before the sitting is judged; the wiring (`services/context.py`) connects
# retention here, so coverage never imports it.
SittingChanged = Callable[[Session, Sitting, str], None]


def apply_schedule(
    session: Session,
    rows: list[SittingRow],
    settings: Settings,
    *,
    actor: str,
    zone_assumed: list[str],
    on_change: Sequence[SittingChanged] = (),
) -> ScheduleSummary:
    """Upsert the sittings; tell `on_change` of each new or moved one (retention extends the
    expiry of footage it now covers), then judge it at once (its footage may already be in)."""
    summary = upsert_sittings(session, rows, actor=actor, zone_assumed=zone_assumed)
    for code in summary.changed:
        sitting = session.scalar(select(Sitting).where(Sitting.code == code))
        assert sitting is not None
        for listener in on_change:
            listener(session, sitting, actor)
        refresh_verdict(session, sitting, settings, actor=actor, reason="sitting imported")
    return summary
