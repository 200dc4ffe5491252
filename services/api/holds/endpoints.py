"""Legal holds (保全) over HTTP: list, place, release. Each act is a ledger entry.

The centre (admin) holds anything and releases; a district officer places holds on what is
in their district (SPEC.md "Security model") and sees those holds, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.access.scopes import Subject, visible_camera, visible_segment, visible_sitting
from services.api.deps import (
    MAX_ROW_ID,
    AdminSubject,
    BoundedDatetime,
    CurrentSubject,
    RowId,
    ServicesDep,
)
from services.api.errors import ApiError
from services.retention.holds import (
    MAX_CASE_REFERENCE,
    MAX_REASON,
    HoldError,
    HoldRequest,
    place_hold,
    protection,
    release_hold,
)
from services.timefmt import rfc3339, rfc3339_or_none
from storage.models import Camera, Hold, Sitting

router = APIRouter(tags=["holds"])


class HoldIn(BaseModel):
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    case_reference: str | None = Field(default=None, max_length=MAX_CASE_REFERENCE)
    sitting: str | None = Field(default=None, description="sitting code")
    camera: str | None = Field(default=None, description="camera code, with from and until")
    from_: BoundedDatetime | None = Field(default=None, alias="from", description="RFC 3339")
    until: BoundedDatetime | None = Field(default=None, description="RFC 3339")
    segment: int | None = Field(default=None, ge=1, le=MAX_ROW_ID, description="segment id")


class ReleaseIn(BaseModel):
    reason: str = Field(min_length=1, max_length=MAX_REASON)


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
    sitting: str | None = Field(default=None, description="sitting code")
    camera: str | None = Field(default=None, description="camera code")
    protects: ProtectsOut | None = None


class ProtectsOut(BaseModel):
    segments: int = Field(description="stored segments the hold covers now")
    bytes: int
    until: str = Field(default="released", description="a hold lasts until it is released")
    earliest_expiry: str | None = Field(
        description="when the first of them would go without the hold (RFC 3339)"
    )
    latest_expiry: str | None = Field(description="when the last of them would go")


class HoldList(BaseModel):
    holds: list[HoldOut]


def _out(hold: Hold, services: ServicesDep, session: Session | None = None) -> HoldOut:
    zone = services.settings.zone
    out = _plain(hold, services)
    if session is None:
        return out
    sitting = session.get(Sitting, hold.sitting_id) if hold.sitting_id else None
    camera = session.get(Camera, hold.camera_id) if hold.camera_id else None
    kept = protection(session, hold.id)
    out.sitting = sitting.code if sitting else None
    out.camera = camera.code if camera else None
    out.protects = ProtectsOut(
        segments=kept.segments,
        bytes=kept.bytes,
        until="released" if hold.released_at is None else "released already",
        earliest_expiry=rfc3339_or_none(kept.earliest_expiry, zone),
        latest_expiry=rfc3339_or_none(kept.latest_expiry, zone),
    )
    return out


def _plain(hold: Hold, services: ServicesDep) -> HoldOut:
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


def _hold_keeper(subject: CurrentSubject) -> Subject:
    if subject.role not in ("admin", "district_officer"):
        raise ApiError(403, "forbidden", f"role {subject.role!r} may not place or see holds")
    return subject


HoldKeeper = Annotated[Subject, Depends(_hold_keeper)]


def _visible(session: Session, hold: Hold, subject: Subject, services: ServicesDep) -> bool:
    """Whether the hold's target lies in the caller's scope (always, for the centre)."""
    if subject.role == "admin":
        return True
    now = datetime.now(UTC)
    if hold.sitting_id is not None:
        sitting = session.get(Sitting, hold.sitting_id)
        return (
            sitting is not None and visible_sitting(session, sitting.code, subject, now) is not None
        )
    if hold.camera_id is not None:
        camera = session.get(Camera, hold.camera_id)
        return camera is not None and visible_camera(session, camera.code, subject, now) is not None
    if hold.segment_id is not None:
        found = visible_segment(session, hold.segment_id, subject, services.settings, now)
        return found is not None
    return False


def _check_target(
    session: Session, request: HoldRequest, subject: Subject, services: ServicesDep
) -> None:
    """A district officer may only name what they may see; anything else is unknown to them."""
    if subject.role == "admin":
        return
    now = datetime.now(UTC)
    if request.sitting_code is not None and (
        visible_sitting(session, request.sitting_code, subject, now) is None
    ):
        raise ApiError(404, "not_found", f"no sitting {request.sitting_code!r}")
    if request.camera_code is not None and (
        visible_camera(session, request.camera_code, subject, now) is None
    ):
        raise ApiError(404, "not_found", f"no camera {request.camera_code!r}")
    if request.segment_id is not None and (
        visible_segment(session, request.segment_id, subject, services.settings, now) is None
    ):
        raise ApiError(404, "not_found", f"no segment {request.segment_id}")


@router.get("/api/v1/holds", response_model=HoldList, summary="Active holds (all=true: history)")
def list_holds(
    services: ServicesDep, subject: HoldKeeper, all_: Annotated[bool, Query(alias="all")] = False
) -> HoldList:
    query = select(Hold).order_by(Hold.id)
    if not all_:
        query = query.where(Hold.released_at.is_(None))
    with services.db.read() as session:
        return HoldList(
            holds=[
                _out(hold, services, session)
                for hold in session.scalars(query)
                if _visible(session, hold, subject, services)
            ]
        )


@router.post("/api/v1/holds", status_code=201, response_model=HoldOut, summary="Place a hold")
def post_hold(body: HoldIn, services: ServicesDep, subject: HoldKeeper) -> HoldOut:
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
        _check_target(session, request, subject, services)
        hold = place_hold(session, services.store, services.settings, request, actor=subject.actor)
        return _out(hold, services, session)

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
    hold_id: RowId, body: ReleaseIn, services: ServicesDep, subject: AdminSubject
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
        return _out(hold, services, session)

    try:
        return services.db.run_write(work)
    except HoldError as exc:
        raise ApiError(409, "already_released", str(exc)) from exc
