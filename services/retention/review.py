"""What the centre reviews on the retention page, read only: the purge plan for a chosen day
(the dry run of `examvault retention purge --as-of`, grouped and explained), the purge runs, and
their tombstones. Nothing here deletes: the purge stays a job (docs/retention.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.coverage.spans import required_interval, sittings_touching
from services.retention.expiry import end_of_local_day, expiry_for
from services.retention.purge import PlanItem, plan_purge
from services.settings import Settings
from storage.models import Camera, Hold, PurgeRun, Segment, Tombstone

# Segment ids per IN (...) query: well inside SQLite's and PostgreSQL's parameter limits.
_ID_CHUNK = 500


def day_as_of(day: date, settings: Settings) -> datetime:
    """The instant a plan for local day `day` is taken at: its last microsecond. Expiries are
    local midnights, so this is what a purge run at any time of that day deletes."""
    return end_of_local_day(day, settings.zone) - timedelta(microseconds=1)


@dataclass(frozen=True)
class ExpiryReason:
    """Why a group expires when it does: `sitting` (three years after the required interval of
    the named sittings ends, the latest of them) or `segment_end` (after the footage's own end:
    it touches no sitting, or every sitting it touches ended earlier)."""

    anchor: str
    sittings: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanGroup:
    """The plan's segments of one camera that share one expiry (one local day of footage)."""

    camera: str
    expires_at: datetime
    segments: int
    bytes: int
    first_start: datetime
    last_end: datetime
    reason: ExpiryReason | None = None


@dataclass(frozen=True)
class HeldSegment:
    segment_id: int
    camera: str
    starts_at: datetime
    ends_at: datetime
    size_bytes: int
    expires_at: datetime
    holds: tuple[Hold, ...]


@dataclass
class DayPlan:
    day: date
    as_of: datetime
    segments: int = 0
    bytes: int = 0
    oldest_expiry: datetime | None = None
    newest_expiry: datetime | None = None
    groups_total: int = 0
    groups: list[PlanGroup] = field(default_factory=list)
    held_segments: int = 0
    held_bytes: int = 0
    held: list[HeldSegment] = field(default_factory=list)


def _group(
    items: Sequence[PlanItem], cameras: dict[int, str], offset: int, limit: int
) -> tuple[list[PlanGroup], int]:
    """One page of the plan's groups, in expiry order, and how many groups there are: one pass
    over the items, so grouping costs well under the plan's own query."""
    totals: dict[tuple[int, datetime], list[Any]] = {}
    for item in items:
        key = (item.camera_id, item.expires_at)
        total = totals.get(key)
        if total is None:
            totals[key] = [1, item.size_bytes, item.starts_at, item.ends_at]
            continue
        total[0] += 1
        total[1] += item.size_bytes
        if item.starts_at < total[2]:
            total[2] = item.starts_at
        if item.ends_at > total[3]:
            total[3] = item.ends_at
    ordered = sorted(
        totals.items(), key=lambda pair: (pair[0][1], cameras.get(pair[0][0], ""), pair[0][0])
    )
    # Objects only for the page asked for: a plan may hold 10^5 groups (one per segment, at
    # worst), of which the page shows 50.
    return [
        PlanGroup(
            camera=cameras.get(camera_id, f"#{camera_id}"),
            expires_at=expires_at,
            segments=count,
            bytes=size,
            first_start=first,
            last_end=last,
        )
        for (camera_id, expires_at), (count, size, first, last) in ordered[offset : offset + limit]
    ], len(ordered)


def expiry_reason(session: Session, settings: Settings, group: PlanGroup) -> ExpiryReason:
    """Which rule set the group's expiry: the sittings its footage touches whose three years
    end exactly then, or else the footage's own end (docs/retention.md)."""
    touched = sittings_touching(session, group.camera, group.first_start, group.last_end, settings)
    governing = tuple(
        sitting.code
        for sitting in touched
        if expiry_for(
            required_interval(sitting, settings).end,
            [],
            zone=settings.zone,
            years=settings.retention_years,
        )
        == group.expires_at
    )
    return ExpiryReason("sitting", governing) if governing else ExpiryReason("segment_end")


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    return [list(ids[start : start + _ID_CHUNK]) for start in range(0, len(ids), _ID_CHUNK)]


def plan_for_day(
    session: Session,
    settings: Settings,
    day: date,
    *,
    group_offset: int = 0,
    group_limit: int = 50,
    held_limit: int = 50,
) -> DayPlan:
    """The purge plan for local day `day` (plan_purge, as `retention purge --as-of` prints it):
    totals, one page of groups with the rule behind each expiry, and the held segments with
    their holds. Reads; never deletes."""
    as_of = day_as_of(day, settings)
    plan = plan_purge(session, settings, as_of)
    cameras = {a: b for a, b in session.execute(select(Camera.id, Camera.code))}
    result = DayPlan(day=day, as_of=as_of, segments=len(plan.items), bytes=plan.bytes)
    if plan.items:
        result.oldest_expiry = plan.items[0].expires_at
        result.newest_expiry = plan.items[-1].expires_at
    groups, result.groups_total = _group(plan.items, cameras, group_offset, group_limit)
    result.groups = [
        replace(group, reason=expiry_reason(session, settings, group)) for group in groups
    ]
    held_ids = sorted(plan.held)
    result.held_segments = len(held_ids)
    for chunk in _chunks(held_ids):
        result.held_bytes += int(
            session.scalar(select(func.sum(Segment.size_bytes)).where(Segment.id.in_(chunk))) or 0
        )
    shown = held_ids[:held_limit]
    if shown:
        hold_ids = sorted({hold for segment in shown for hold in plan.held[segment]})
        holds = {
            hold.id: hold for hold in session.scalars(select(Hold).where(Hold.id.in_(hold_ids)))
        }
        for segment in session.scalars(
            select(Segment).where(Segment.id.in_(shown)).order_by(Segment.expires_at, Segment.id)
        ):
            result.held.append(
                HeldSegment(
                    segment_id=segment.id,
                    camera=cameras.get(segment.camera_id, f"#{segment.camera_id}"),
                    starts_at=segment.starts_at,
                    ends_at=segment.ends_at,
                    size_bytes=segment.size_bytes,
                    expires_at=segment.expires_at,
                    holds=tuple(holds[h] for h in plan.held[segment.id] if h in holds),
                )
            )
    return result


def purge_runs(session: Session, *, offset: int = 0, limit: int = 20) -> tuple[int, list[PurgeRun]]:
    """The purge runs, newest first, one page; and how many there are."""
    total = int(session.scalar(select(func.count(PurgeRun.id))) or 0)
    rows = session.scalars(
        select(PurgeRun)
        .order_by(PurgeRun.started_at.desc(), PurgeRun.id)
        .offset(offset)
        .limit(limit)
    ).all()
    return total, list(rows)


@dataclass(frozen=True)
class TombstoneRow:
    tombstone: Tombstone
    camera: str


def tombstones(
    session: Session,
    *,
    run: str | None = None,
    camera: str | None = None,
    search: str | None = None,
    purged_from: datetime | None = None,
    purged_until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> tuple[list[TombstoneRow], int | None]:
    """Tombstones, newest first, filtered; one keyset page and the cursor for the next
    (`before_id`), or None when this page is the last. `search` is a SHA-256 prefix (hex), a
    segment id, or a part of the blob key."""
    query = (
        select(Tombstone, Camera.code)
        .join(Segment, Segment.id == Tombstone.segment_id)
        .join(Camera, Camera.id == Segment.camera_id)
    )
    if run is not None:
        query = query.where(Tombstone.run_id == run)
    if camera is not None:
        query = query.where(Camera.code == camera)
    if purged_from is not None:
        query = query.where(Tombstone.purged_at >= purged_from.astimezone(UTC))
    if purged_until is not None:
        query = query.where(Tombstone.purged_at < purged_until.astimezone(UTC))
    if before_id is not None:
        query = query.where(Tombstone.id < before_id)
    if search:
        text = search.strip()
        if text.isdigit() and len(text) < 10:
            query = query.where(Tombstone.segment_id == int(text))
        elif len(text) >= 4 and all(c in "0123456789abcdef" for c in text.lower()):
            query = query.where(Tombstone.sha256.startswith(text.lower(), autoescape=True))
        else:
            query = query.where(Tombstone.blob_key.contains(text, autoescape=True))
    rows = session.execute(query.order_by(Tombstone.id.desc()).limit(limit + 1)).all()
    page = [TombstoneRow(tombstone, code) for tombstone, code in rows[:limit]]
    more = len(rows) > limit
    return page, (page[-1].tombstone.id if more and page else None)
