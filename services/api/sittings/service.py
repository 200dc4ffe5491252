"""The day's sittings (the console's list): one filtered, scoped, sorted query for a page, one
grouped count per verdict for the whole filtered set, and the at-a-glance facts of the page's
rows only (missing minutes per camera from the stored summary; picture problems, open findings
and active holds read live for those rows). Nothing here judges coverage: the verdict and the
gap summary are stored by services/coverage/verdicts.py, so a page costs the same at 10^5
sittings as at 10^3 (bench/console.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, case, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import True_

from services.coverage.rule import Interval, Verdict
from services.coverage.spans import required_interval
from services.health.sampling import HealthInterval, merge_flags
from services.settings import Settings
from storage.models import (
    Camera,
    Finding,
    HealthFlag,
    Hold,
    HoldScopeRecord,
    Institution,
    Room,
    Segment,
    Site,
    Sitting,
)

# Worst first: the order a district officer wants to read a day in.
VERDICT_ORDER = ("missing", "incomplete", "pending", "complete")
SORTS = ("time", "-time", "institution", "verdict")


@dataclass(frozen=True)
class DayFilter:
    """Which sittings: `starts_from`/`starts_before` select by start (a day or a range of days
    in the local zone); `overlap_from`/`overlap_to` keep the older RFC 3339 window (sittings
    overlapping it). Every other field is an exact match; None means any."""

    starts_from: datetime | None = None
    starts_before: datetime | None = None
    overlap_from: datetime | None = None
    overlap_to: datetime | None = None
    district: str | None = None
    institution: str | None = None
    site: str | None = None
    room_kind: str | None = None
    occupation: str | None = None
    status: str | None = None

    def needs_registry(self) -> bool:
        """Whether a filter names a column of the registry (not of the sitting itself)."""
        return any(
            value is not None
            for value in (self.district, self.institution, self.site, self.room_kind)
        )

    def conditions(self, *, with_status: bool = True) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.starts_from is not None:
            found.append(Sitting.starts_at >= self.starts_from)
        if self.starts_before is not None:
            found.append(Sitting.starts_at < self.starts_before)
        if self.overlap_from is not None:
            found.append(Sitting.ends_at > self.overlap_from)
        if self.overlap_to is not None:
            found.append(Sitting.starts_at < self.overlap_to)
        if self.district is not None:
            found.append(Institution.district == self.district)
        if self.institution is not None:
            found.append(Institution.code == self.institution)
        if self.site is not None:
            found.append(Site.code == self.site)
        if self.room_kind is not None:
            found.append(Room.kind == self.room_kind)
        if self.occupation is not None:
            found.append(Sitting.occupation == self.occupation)
        if with_status and self.status is not None:
            found.append(Sitting.coverage_status == self.status)
        return found


def _joined(query: Select[Any]) -> Select[Any]:
    return (
        query.join(Room, Sitting.room_id == Room.id)
        .join(Site, Room.site_id == Site.id)
        .join(Institution, Site.institution_id == Institution.id)
    )


def _order(sort: str) -> list[Any]:
    if sort == "time":
        return [Sitting.starts_at.asc(), Sitting.id.asc()]
    if sort == "institution":
        return [Institution.code.asc(), Sitting.starts_at.asc(), Sitting.id.asc()]
    if sort == "verdict":
        rank = case(
            {verdict: rank for rank, verdict in enumerate(VERDICT_ORDER)},
            value=Sitting.coverage_status,
            else_=len(VERDICT_ORDER),
        )
        return [rank.asc(), Sitting.starts_at.asc(), Sitting.id.asc()]
    # "-time", the list's order before the day view: newest first.
    return [Sitting.starts_at.desc(), Sitting.id.desc()]


_ROW_COLUMNS = (
    Sitting,
    Room.code.label("room_code"),
    Room.name.label("room_name"),
    Room.kind.label("room_kind"),
    Site.code.label("site_code"),
    Site.address.label("site_address"),
    Institution.code.label("institution_code"),
    Institution.name.label("institution_name"),
    Institution.district.label("district"),
)


def page_rows(
    session: Session,
    day: DayFilter,
    scope: ColumnElement[bool],
    *,
    sort: str,
    limit: int,
    offset: int,
) -> Sequence[Row[Any]]:
    # Two steps: the sort and the offset over narrow rows (ids and sort keys only), then the
    # page's wide rows (the stored summary is JSON) by id. Sorting a day's 2,000 wide rows to
    # keep 50 cost several times more, on both databases (bench/console.py).
    ids = list(
        session.scalars(
            _joined(select(Sitting.id))
            .where(scope, *day.conditions())
            .order_by(*_order(sort))
            .limit(limit)
            .offset(offset)
        )
    )
    if not ids:
        return []
    rows = session.execute(_joined(select(*_ROW_COLUMNS)).where(Sitting.id.in_(ids))).all()
    position = {sitting_id: index for index, sitting_id in enumerate(ids)}
    return sorted(rows, key=lambda row: position[row.Sitting.id])


def verdict_counts(session: Session, day: DayFilter, scope: ColumnElement[bool]) -> dict[str, int]:
    """Sittings per verdict in the filtered set, the verdict filter itself left out, so the
    page can show what each verdict would give."""
    conditions = day.conditions(with_status=False)
    if isinstance(scope, True_) and not day.needs_registry():
        # The centre over dates only: the status index alone answers.
        query = (
            select(Sitting.coverage_status, func.count())
            .where(*conditions)
            .group_by(Sitting.coverage_status)
        )
    else:
        # Grouped by an expression, not the bare column: SQLite would otherwise walk the whole
        # status index and fetch every row for its room (0.6 s at 10^5); this way it reads
        # ix_sittings_room_status alone, room by room (bench/console.py).
        status = Sitting.coverage_status.concat("")
        query = _joined(select(status, func.count())).where(scope, *conditions).group_by(status)
    counts = dict.fromkeys((verdict.value for verdict in Verdict), 0)
    for status, count in session.execute(query):
        counts[status] = counts.get(status, 0) + count
    return counts


def choices(session: Session, day: DayFilter, scope: ColumnElement[bool]) -> dict[str, Any]:
    """What the filters may choose from, among the sittings the caller may see in the dates
    asked (the other filters left out, so a choice never hides its siblings)."""
    dates_only = DayFilter(
        starts_from=day.starts_from,
        starts_before=day.starts_before,
        overlap_from=day.overlap_from,
        overlap_to=day.overlap_to,
    )
    query = (
        _joined(
            select(
                Institution.district,
                Institution.code,
                Institution.name,
                Site.code,
                Site.address,
                Room.kind,
                Sitting.occupation,
            )
        )
        .where(scope, *dates_only.conditions())
        .distinct()
    )
    districts: set[str] = set()
    institutions: dict[str, dict[str, str]] = {}
    sites: dict[str, dict[str, str]] = {}
    kinds: set[str] = set()
    occupations: set[str] = set()
    for district, inst_code, inst_name, site_code, address, kind, occupation in session.execute(
        query
    ):
        districts.add(district)
        institutions[inst_code] = {"code": inst_code, "name": inst_name, "district": district}
        sites[site_code] = {"code": site_code, "address": address, "institution": inst_code}
        kinds.add(kind)
        occupations.add(occupation)
    return {
        "districts": sorted(districts),
        "institutions": [institutions[code] for code in sorted(institutions)],
        "sites": [sites[code] for code in sorted(sites)],
        "room_kinds": sorted(kinds),
        "occupations": sorted(occupations),
        "verdicts": [verdict.value for verdict in Verdict],
    }


@dataclass
class Glance:
    """What is wrong with one sitting, at a glance."""

    health: list[dict[str, Any]] = field(default_factory=list)
    open_findings: int = 0
    active_holds: int = 0


def glances(session: Session, sittings: Sequence[Sitting], settings: Settings) -> dict[int, Glance]:
    """Picture problems, open findings and active holds of a page of sittings, in a few
    queries for the whole page (never one per row)."""
    found: dict[int, Glance] = {sitting.id: Glance() for sitting in sittings}
    if not sittings:
        return found
    ids = list(found)
    for sitting_id, count in session.execute(
        select(Finding.sitting_id, func.count())
        .where(Finding.sitting_id.in_(ids), Finding.withdrawn_at.is_(None))
        .group_by(Finding.sitting_id)
    ):
        found[sitting_id].open_findings = count

    required = {sitting.id: required_interval(sitting, settings) for sitting in sittings}
    rooms = {sitting.room_id for sitting in sittings}
    cameras = {
        camera_id: (room_id, code, position)
        for camera_id, room_id, code, position in session.execute(
            select(Camera.id, Camera.room_id, Camera.code, Camera.position).where(
                Camera.room_id.in_(rooms)
            )
        )
    }
    by_room: dict[int, list[int]] = defaultdict(list)
    for sitting in sittings:
        by_room[sitting.room_id].append(sitting.id)

    low = min(span.start for span in required.values())
    high = max(span.end for span in required.values())
    earliest = low - timedelta(seconds=settings.max_segment_seconds)
    flags: dict[int, list[HealthInterval]] = defaultdict(list)
    if cameras:
        for camera_id, start, end, kind in session.execute(
            select(HealthFlag.camera_id, HealthFlag.starts_at, HealthFlag.ends_at, HealthFlag.kind)
            .where(
                HealthFlag.camera_id.in_(list(cameras)),
                HealthFlag.starts_at > earliest,
                HealthFlag.starts_at < high,
                HealthFlag.ends_at > low,
            )
            .order_by(HealthFlag.camera_id, HealthFlag.starts_at)
        ):
            flags[camera_id].append(HealthInterval(start, end, kind))
    for camera_id, camera_flags in flags.items():
        room_id, code, position = cameras[camera_id]
        merged = merge_flags(camera_flags)
        for sitting_id in by_room[room_id]:
            span = required[sitting_id]
            seconds: dict[str, float] = defaultdict(float)
            for flag in merged:
                start, end = max(flag.start, span.start), min(flag.end, span.end)
                if end > start:
                    seconds[flag.kind] += (end - start).total_seconds()
            for kind, total in sorted(seconds.items()):
                found[sitting_id].health.append(
                    {"camera": code, "position": position, "kind": kind, "seconds": round(total)}
                )

    _count_holds(session, sittings, required, cameras, found)
    return found


def _count_holds(
    session: Session,
    sittings: Sequence[Sitting],
    required: dict[int, Interval],
    cameras: dict[int, tuple[int, str, str]],
    found: dict[int, Glance],
) -> None:
    """Active holds touching each sitting: placed on it, or frozen over one of its room's
    cameras (an interval, or a segment) overlapping its required interval."""
    ids = [sitting.id for sitting in sittings]
    held: dict[int, set[int]] = defaultdict(set)
    for hold_id, sitting_id in session.execute(
        select(Hold.id, Hold.sitting_id).where(Hold.released_at.is_(None), Hold.sitting_id.in_(ids))
    ):
        held[sitting_id].add(hold_id)
    if cameras:
        records = session.execute(
            select(
                HoldScopeRecord.hold_id,
                func.coalesce(HoldScopeRecord.camera_id, Segment.camera_id),
                func.coalesce(HoldScopeRecord.starts_at, Segment.starts_at),
                func.coalesce(HoldScopeRecord.ends_at, Segment.ends_at),
            )
            .join(Hold, Hold.id == HoldScopeRecord.hold_id)
            .outerjoin(Segment, Segment.id == HoldScopeRecord.segment_id)
            .where(
                Hold.released_at.is_(None),
                or_(
                    HoldScopeRecord.camera_id.in_(list(cameras)),
                    and_(
                        HoldScopeRecord.segment_id.is_not(None),
                        Segment.camera_id.in_(list(cameras)),
                    ),
                ),
            )
        ).all()
        for sitting in sittings:
            span = required[sitting.id]
            for hold_id, camera_id, start, end in records:
                if camera_id not in cameras or cameras[camera_id][0] != sitting.room_id:
                    continue
                if (start is None or start < span.end) and (end is None or end > span.start):
                    held[sitting.id].add(hold_id)
    for sitting_id, holds in held.items():
        found[sitting_id].active_holds = len(holds)


def missing_of(
    sitting: Sitting, settings: Settings, now: datetime
) -> tuple[list[dict[str, Any]], datetime, bool]:
    """The stored gap summary of one sitting as the list gives it: per camera its position,
    missing seconds and first gaps; the upload deadline (required end + grace); and whether
    the sitting has ended (before that, its "missing" footage is only not yet filmed)."""
    span = required_interval(sitting, settings)
    deadline = span.end + timedelta(hours=settings.upload_grace_hours)
    summary = sitting.coverage_summary or {}
    return list(summary.get("cameras", [])), deadline, now >= span.end


def iter_rows(
    session: Session,
    day: DayFilter,
    scope: ColumnElement[bool],
    *,
    sort: str,
    limit: int,
    chunk: int = 500,
) -> Iterator[Sequence[Row[Any]]]:
    """Up to `limit` rows of the filtered set in the page's order, a chunk at a time (CSV)."""
    offset = 0
    while offset < limit:
        rows = page_rows(
            session, day, scope, sort=sort, limit=min(chunk, limit - offset), offset=offset
        )
        if not rows:
            return
        yield rows
        offset += len(rows)
