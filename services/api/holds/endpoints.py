"""Legal holds (保全) over HTTP: list, place, release. Each act is a ledger entry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.deps import AdminSubject, ServicesDep
from services.api.errors import ApiError
from services.holds import HoldError, HoldRequest, place_hold, release_hold
from services.timefmt import rfc3339, rfc3339_or_none
from storage.models import Hold

router = APIRouter(tags=["holds"])


class HoldIn(BaseModel):
    reason: str = Field(min_length=1)
    case_reference: str | None = None
    sitting: str | None = Field(default=None, description="sitting code")
    camera: str | None = Field(default=None, description="camera code, with from and until")
    from_: datetime | None = Field(default=None, alias="from", description="RFC 3339")
    until: datetime | None = Field(default=None, description="RFC 3339")
    segment: int | None = Field(default=None, description="segment id")


class ReleaseIn(BaseModel):
    reason: str = Field(min_length=1)


class HoldOut(BaseModel):
    id: int
    scope: str
    sitting_id: int | None
    camera_id: int | None
    segment_id: int | None
    held_from: str | None
    held_until: str | None
    reason: str
    case_reference: str | None
    placed_by: str
    placed_at: str
    released_by: str | None
    released_at: str | None
    release_reason: str | None


class HoldList(BaseModel):
    holds: list[HoldOut]


def _out(hold: Hold, services: ServicesDep) -> HoldOut:
    zone = services.settings.zone
    return HoldOut(
        id=hold.id,
        scope=hold.scope,
        sitting_id=hold.sitting_id,
        camera_id=hold.camera_id,
        segment_id=hold.segment_id,
        held_from=rfc3339_or_none(hold.held_from, zone),
        held_until=rfc3339_or_none(hold.held_until, zone),
        reason=hold.reason,
        case_reference=hold.case_reference,
        placed_by=hold.placed_by,
        placed_at=rfc3339(hold.placed_at, zone),
        released_by=hold.released_by,
        released_at=rfc3339_or_none(hold.released_at, zone),
        release_reason=hold.release_reason,
    )


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ApiError(400, "invalid_request", f"{name}: give the instant with its UTC offset")
    return value


@router.get("/api/v1/holds", response_model=HoldList, summary="Active holds (all=true: history)")
def list_holds(
    services: ServicesDep, _subject: AdminSubject, all_: Annotated[bool, Query(alias="all")] = False
) -> HoldList:
    query = select(Hold).order_by(Hold.id)
    if not all_:
        query = query.where(Hold.released_at.is_(None))
    with services.db.read() as session:
        return HoldList(holds=[_out(hold, services) for hold in session.scalars(query)])


@router.post("/api/v1/holds", status_code=201, response_model=HoldOut, summary="Place a hold")
def post_hold(body: HoldIn, services: ServicesDep, subject: AdminSubject) -> HoldOut:
    request = HoldRequest(
        reason=body.reason,
        case_reference=body.case_reference,
        sitting_code=body.sitting,
        camera_code=body.camera,
        held_from=_aware(body.from_, "from"),
        held_until=_aware(body.until, "until"),
        segment_id=body.segment,
    )

    def work(session: Session) -> HoldOut:
        hold = place_hold(session, services.store, services.settings, request, actor=subject.actor)
        return _out(hold, services)

    try:
        return services.db.run_write(work)
    except HoldError as exc:
        raise ApiError(422, "invalid_hold", str(exc)) from exc


@router.post(
    "/api/v1/holds/{hold_id}/release",
    response_model=HoldOut,
    summary="Release a hold (it stays in history)",
)
def post_release(
    hold_id: int, body: ReleaseIn, services: ServicesDep, subject: AdminSubject
) -> HoldOut:
    def work(session: Session) -> HoldOut:
        if session.get(Hold, hold_id) is None:
            raise ApiError(404, "not_found", f"no hold {hold_id}")
        hold = release_hold(
            session,
            services.store,
            services.settings,
            hold_id,
            actor=subject.actor,
            reason=body.reason,
        )
        return _out(hold, services)

    try:
        return services.db.run_write(work)
    except HoldError as exc:
        raise ApiError(409, "already_released", str(exc)) from exc
