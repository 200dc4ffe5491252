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
from services.ingest.clock import EARLIEST_PLAUSIBLE_START, LATEST_PLAUSIBLE_START
from services.registry import CODE, ROOM_KINDS
from services.settings import Settings
from storage import ledger
from storage.models import Room, Sitting

COLUMNS = ("sitting_code", "room_code", "kind", "occupation", "level", "starts_at", "ends_at")


class ScheduleError(ValueError):
    """A schedule refused whole; the message names the line or item and the field."""


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
            f"{where}, {name}: {value!r} is not an ISO 8601 / RFC 3339 date-time"
        ) from exc
    if "T" not in text.upper() and " " not in text:
        raise ScheduleError(f"{where}, {name}: {value!r} has no time of day")
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
        raise ScheduleError(f"{where}, {name}: {value!r} is not between 2000 and 2100")
    return instant


def parse_rows(
    items: Iterable[tuple[str, Mapping[str, object]]], zone: tzinfo, notes: list[str]
) -> list[SittingRow]:
    rows: list[SittingRow] = []
    seen: dict[str, str] = {}
    for where, item in items:
        values: dict[str, str] = {}
        for column in COLUMNS:
            raw = item.get(column)
            if raw is None or not str(raw).strip():
                raise ScheduleError(f"{where}, {column}: missing")
            values[column] = str(raw).strip()
        code = values["sitting_code"]
        if not CODE.match(code):
            raise ScheduleError(
                f"{where}, sitting_code: {code!r} must be 1-64 letters, digits, '_', '.' or '-'"
            )
        if code in seen:
            raise ScheduleError(f"{where}, sitting_code: {code!r} already appears at {seen[code]}")
        seen[code] = where
        if values["kind"] not in ROOM_KINDS:
            raise ScheduleError(f"{where}, kind: must be 'theory' or 'practical'")
        starts = _instant(values["starts_at"], where, "starts_at", zone, notes)
        ends = _instant(values["ends_at"], where, "ends_at", zone, notes)
        if ends <= starts:
            raise ScheduleError(f"{where}, ends_at: the sitting ends before it starts")
        rows.append(
            SittingRow(
                where,
                code,
                values["room_code"],
                values["kind"],
                values["occupation"],
                values["level"],
                starts,
                ends,
            )
        )
    return rows


def parse_csv(text: str, zone: tzinfo, notes: list[str]) -> list[SittingRow]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = reader.fieldnames or []
    missing = [column for column in COLUMNS if column not in header]
    if missing:
        raise ScheduleError(f"line 1: the header lacks {', '.join(missing)}")
    items = []
    for row in reader:
        if None in row:
            raise ScheduleError(f"line {reader.line_num}: more fields than the header names")
        items.append((f"line {reader.line_num}", row))
    return parse_rows(items, zone, notes)


def parse_json(document: object, zone: tzinfo, notes: list[str]) -> list[SittingRow]:
    if not isinstance(document, dict) or not isinstance(document.get("sittings"), list):
        raise ScheduleError('expected {"sittings": [ ... ]}')
    items = []
    for index, item in enumerate(document["sittings"]):
        if not isinstance(item, dict):
            raise ScheduleError(f"sittings[{index}]: expected an object")
        items.append((f"sittings[{index}]", item))
    return parse_rows(items, zone, notes)


def upsert_sittings(
    session: Session, rows: list[SittingRow], *, actor: str, zone_assumed: list[str]
) -> ScheduleSummary:
    """Check rooms and overlaps against the database, then write, inside the caller's
    transaction (so a refusal leaves nothing half-imported)."""
    rooms = {
        room.code: room
        for room in session.scalars(select(Room).where(Room.code.in_({r.room_code for r in rows})))
    }
    for row in rows:
        if row.room_code not in rooms:
            raise ScheduleError(f"{row.where}, room_code: unknown room {row.room_code!r}")
    _refuse_overlaps(session, rows, rooms)

    summary = ScheduleSummary(zone_assumed=zone_assumed)
    existing = {
        sitting.code: sitting
        for sitting in session.scalars(
            select(Sitting).where(Sitting.code.in_([r.code for r in rows]))
        )
    }
    for row in rows:
        values = {
            "room_id": rooms[row.room_code].id,
            "kind": row.kind,
            "occupation": row.occupation,
            "level": row.level,
            "starts_at": row.starts_at,
            "ends_at": row.ends_at,
        }
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


def _refuse_overlaps(session: Session, rows: list[SittingRow], rooms: dict[str, Room]) -> None:
    """Two sittings in one room at once cannot both be filmed as scheduled."""
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
                raise ScheduleError(
                    f"{later}: sitting {code_b!r} overlaps {code_a!r} ({where_a}) in room "
                    f"{room_code!r}"
                )


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
