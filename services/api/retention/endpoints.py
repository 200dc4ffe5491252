"""The retention page's reads (centre only): the purge plan for a chosen day, the purge runs and
their tombstones. There is no route that deletes: the purge stays a job (`examvault retention
purge --execute` or EXAMVAULT_PURGE_SCHEDULE), never a button."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.api.deps import MAX_ROW_ID, AdminSubject, ServicesDep, instant_param
from services.api.errors import ApiError
from services.retention.purge import RETENTION_RULE
from services.retention.review import plan_for_day, purge_runs, tombstones
from services.timefmt import rfc3339, rfc3339_or_none

router = APIRouter(prefix="/api/v1/retention", tags=["retention"])

MAX_PAGE = 200
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def day_param(value: str) -> date:
    """YYYY-MM-DD: 400 when it is not of that form, 422 when it names no day of 1970..8999
    (2026-02-30: well-formed, refused by the calendar)."""
    if not _DAY.match(value):
        raise ApiError(400, "invalid_request", f"date: {value!r} is not YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise ApiError(
            422, "invalid_date", f"date: {value!r} is not a day of the calendar"
        ) from exc
    if not 1970 <= day.year < 9000:
        raise ApiError(422, "invalid_date", f"date: {value!r} is outside 1970..8999")
    return day


class HoldRef(BaseModel):
    id: int
    scope: str
    reason: str
    case_reference: str | None
    placed_by: str
    placed_at: str


class PlanGroupOut(BaseModel):
    camera: str
    expires_at: str
    segments: int
    bytes: int
    first_start: str
    last_end: str
    anchor: str = Field(description="sitting | segment_end: what the expiry is counted from")
    sittings: list[str] = Field(description="the sittings whose end sets the expiry")


class HeldOut(BaseModel):
    segment: int
    camera: str
    start: str
    end: str
    size: int
    expires_at: str
    holds: list[HoldRef]


class PlanOut(BaseModel):
    date: str
    as_of: str
    retention_years: int
    rule: str
    segments: int
    bytes: int
    oldest_expiry: str | None
    newest_expiry: str | None
    groups_total: int
    offset: int
    groups: list[PlanGroupOut]
    held_segments: int
    held_bytes: int
    held: list[HeldOut] = Field(description="the first held segments, with the holds keeping them")


class RunOut(BaseModel):
    id: str
    actor: str
    as_of: str
    started_at: str
    finished_at: str | None
    status: str = Field(description="running | completed | stopped | interrupted")
    stop_reason: str | None
    planned: int
    planned_bytes: int
    purged: int
    purged_bytes: int


class RunList(BaseModel):
    total: int
    offset: int
    runs: list[RunOut]


class TombstoneOut(BaseModel):
    id: int
    segment: int
    camera: str
    run: str
    sha256: str
    size: int
    key: str
    start: str
    end: str
    expires_at: str
    purged_at: str
    blob_deleted_at: str | None = Field(description="null: the bytes go with the next run")
    reason: str


class TombstoneList(BaseModel):
    tombstones: list[TombstoneOut]
    next_before: int | None = Field(description="pass as `before` for the next page; null: done")


@router.get("/plan", response_model=PlanOut, summary="The purge plan for a day (a dry run)")
def get_plan(
    services: ServicesDep,
    _subject: AdminSubject,
    date_: Annotated[str, Query(alias="date", description="YYYY-MM-DD, local day")],
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    held_limit: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 50,
) -> PlanOut:
    day = day_param(date_)
    settings = services.settings
    zone = settings.zone
    with services.db.read() as session:
        plan = plan_for_day(
            session, settings, day, group_offset=offset, group_limit=limit, held_limit=held_limit
        )
    return PlanOut(
        date=day.isoformat(),
        as_of=rfc3339(plan.as_of, zone),
        retention_years=settings.retention_years,
        rule=f"a segment goes once its expiry (the end of the local day {RETENTION_RULE}) has "
        "passed and no active hold covers it",
        segments=plan.segments,
        bytes=plan.bytes,
        oldest_expiry=rfc3339_or_none(plan.oldest_expiry, zone),
        newest_expiry=rfc3339_or_none(plan.newest_expiry, zone),
        groups_total=plan.groups_total,
        offset=offset,
        groups=[
            PlanGroupOut(
                camera=group.camera,
                expires_at=rfc3339(group.expires_at, zone),
                segments=group.segments,
                bytes=group.bytes,
                first_start=rfc3339(group.first_start, zone),
                last_end=rfc3339(group.last_end, zone),
                anchor=group.reason.anchor if group.reason else "segment_end",
                sittings=list(group.reason.sittings) if group.reason else [],
            )
            for group in plan.groups
        ],
        held_segments=plan.held_segments,
        held_bytes=plan.held_bytes,
        held=[
            HeldOut(
                segment=held.segment_id,
                camera=held.camera,
                start=rfc3339(held.starts_at, zone),
                end=rfc3339(held.ends_at, zone),
                size=held.size_bytes,
                expires_at=rfc3339(held.expires_at, zone),
                holds=[
                    HoldRef(
                        id=hold.id,
                        scope=hold.scope,
                        reason=hold.reason,
                        case_reference=hold.case_reference,
                        placed_by=hold.placed_by,
                        placed_at=rfc3339(hold.placed_at, zone),
                    )
                    for hold in held.holds
                ],
            )
            for held in plan.held
        ],
    )


@router.get("/runs", response_model=RunList, summary="Purge runs, newest first")
def get_runs(
    services: ServicesDep,
    _subject: AdminSubject,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
) -> RunList:
    zone = services.settings.zone
    with services.db.read() as session:
        total, rows = purge_runs(session, offset=offset, limit=limit)
    return RunList(
        total=total,
        offset=offset,
        runs=[
            RunOut(
                id=run.id,
                actor=run.actor,
                as_of=rfc3339(run.as_of, zone),
                started_at=rfc3339(run.started_at, zone),
                finished_at=rfc3339_or_none(run.finished_at, zone),
                status=run.status,
                stop_reason=run.stop_reason,
                planned=run.planned,
                planned_bytes=run.planned_bytes,
                purged=run.purged,
                purged_bytes=run.purged_bytes,
            )
            for run in rows
        ],
    )


@router.get(
    "/tombstones",
    response_model=TombstoneList,
    summary="What purged segments were (sha256, size, key, times), newest first",
)
def get_tombstones(
    services: ServicesDep,
    _subject: AdminSubject,
    run: Annotated[str | None, Query(max_length=36)] = None,
    camera: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[
        str | None, Query(max_length=400, description="sha256 prefix, segment id or key part")
    ] = None,
    from_: Annotated[str | None, Query(alias="from", description="purged at or after")] = None,
    until: Annotated[str | None, Query(description="purged before")] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> TombstoneList:
    zone = services.settings.zone
    with services.db.read() as session:
        rows, next_before = tombstones(
            session,
            run=run or None,
            camera=camera or None,
            search=q or None,
            purged_from=instant_param(from_, "from"),
            purged_until=instant_param(until, "until"),
            before_id=before,
            limit=limit,
        )
    return TombstoneList(
        tombstones=[
            TombstoneOut(
                id=row.tombstone.id,
                segment=row.tombstone.segment_id,
                camera=row.camera,
                run=row.tombstone.run_id,
                sha256=row.tombstone.sha256,
                size=row.tombstone.size_bytes,
                key=row.tombstone.blob_key,
                start=rfc3339(row.tombstone.starts_at, zone),
                end=rfc3339(row.tombstone.ends_at, zone),
                expires_at=rfc3339(row.tombstone.expires_at, zone),
                purged_at=rfc3339(row.tombstone.purged_at, zone),
                blob_deleted_at=rfc3339_or_none(row.tombstone.blob_deleted_at, zone),
                reason=row.tombstone.reason,
            )
            for row in rows
        ],
        next_before=next_before,
    )
