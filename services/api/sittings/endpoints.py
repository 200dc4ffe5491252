"""Sittings (场次): the list with verdicts, one sitting, its coverage report, and the admin's
bulk upsert of the schedule for the exam-affairs system."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.access.scopes import Subject, sitting_scope, visible_sitting
from services.api.deps import AdminSubject, ServicesDep, SittingReader, instant_param
from services.api.errors import ApiError
from services.api.sittings.schemas import (
    CoverageOut,
    ScheduleIn,
    ScheduleOut,
    SittingList,
    SittingSummary,
)
from services.coverage.reports import CoverageReport
from services.coverage.rule import Verdict
from services.coverage.schedule import ScheduleError, parse_json
from services.coverage.verdicts import refresh_verdict
from services.timefmt import rfc3339, rfc3339_or_none
from storage.models import Institution, Room, Site, Sitting

router = APIRouter(tags=["sittings"])


def _find(session: Session, code: str, subject: Subject) -> Sitting:
    """The sitting if the caller may see it; otherwise 404, as for one that does not exist,
    so that a supervisor cannot learn which other sittings there are."""
    sitting = visible_sitting(session, code, subject, datetime.now(UTC))
    if sitting is None:
        raise ApiError(404, "not_found", f"no sitting {code!r}")
    return sitting


@router.get("/api/v1/sittings", response_model=SittingList, summary="Sittings with verdicts")
def list_sittings(
    services: ServicesDep,
    subject: SittingReader,
    from_: Annotated[str | None, Query(alias="from", description="RFC 3339")] = None,
    to: Annotated[str | None, Query(description="RFC 3339")] = None,
    status: Annotated[Verdict | None, Query()] = None,
    institution: Annotated[str | None, Query(description="institution code")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> SittingList:
    begin, end = instant_param(from_, "from"), instant_param(to, "to")
    query = (
        select(Sitting, Room.code, Institution.code)
        .join(Room, Sitting.room_id == Room.id)
        .join(Site, Room.site_id == Site.id)
        .join(Institution, Site.institution_id == Institution.id)
        .where(sitting_scope(subject, datetime.now(UTC)))
        .order_by(Sitting.starts_at.desc())
        .limit(limit)
    )
    if begin is not None:
        query = query.where(Sitting.ends_at > begin)
    if end is not None:
        query = query.where(Sitting.starts_at < end)
    if status is not None:
        query = query.where(Sitting.coverage_status == status.value)
    if institution is not None:
        query = query.where(Institution.code == institution)
    zone = services.settings.zone
    with services.db.read() as session:
        rows = session.execute(query).all()
    return SittingList(
        sittings=[
            SittingSummary(
                code=sitting.code,
                room=room_code,
                institution=institution_code,
                kind=sitting.kind,
                occupation=sitting.occupation,
                level=sitting.level,
                starts_at=rfc3339(sitting.starts_at, zone),
                ends_at=rfc3339(sitting.ends_at, zone),
                status=sitting.coverage_status,
                checked_at=rfc3339_or_none(sitting.coverage_checked_at, zone),
            )
            for sitting, room_code, institution_code in rows
        ]
    )


def _judged(services: ServicesDep, code: str, subject: Subject) -> CoverageReport:
    def work(session: Session) -> CoverageReport:
        return refresh_verdict(
            session,
            _find(session, code, subject),
            services.settings,
            actor="coverage",
            reason="report requested",
        )

    return services.db.run_write(work)


@router.get("/api/v1/sittings/{code}", response_model=SittingSummary, summary="One sitting")
def get_sitting(code: str, services: ServicesDep, subject: SittingReader) -> SittingSummary:
    report = _judged(services, code, subject)
    zone = services.settings.zone
    with services.db.read() as session:
        sitting = _find(session, code, subject)
        names = session.execute(
            select(Institution.name, Institution.district, Site.address)
            .join(Site, Site.institution_id == Institution.id)
            .join(Room, Room.site_id == Site.id)
            .where(Room.id == sitting.room_id)
        ).one()
        return SittingSummary(
            code=sitting.code,
            room=report.room,
            institution=report.institution,
            kind=sitting.kind,
            occupation=sitting.occupation,
            level=sitting.level,
            starts_at=rfc3339(sitting.starts_at, zone),
            ends_at=rfc3339(sitting.ends_at, zone),
            status=report.status.value,
            checked_at=rfc3339(report.computed_at, zone),
            institution_name=names.name,
            district=names.district,
            site_address=names.address,
        )


@router.get(
    "/api/v1/sittings/{code}/coverage",
    response_model=CoverageOut,
    summary="Coverage report: per camera covered seconds, gaps with causes, health flags",
)
def get_coverage(code: str, services: ServicesDep, subject: SittingReader) -> CoverageOut:
    report = _judged(services, code, subject)
    return CoverageOut.model_validate(report.as_json(services.settings.zone))


@router.put(
    "/api/v1/sittings",
    response_model=ScheduleOut,
    summary="Bulk upsert of the schedule (the exam-affairs system's push)",
)
def put_schedule(body: ScheduleIn, services: ServicesDep, subject: AdminSubject) -> ScheduleOut:
    notes: list[str] = []
    try:
        rows = parse_json(body.model_dump(), services.settings.zone, notes)

        def work(session: Session) -> ScheduleOut:
            summary = services.import_schedule(
                session,
                rows,
                actor=subject.actor,
                zone_assumed=notes,
            )
            return ScheduleOut(
                created=summary.created,
                updated=summary.updated,
                unchanged=summary.unchanged,
                zone_assumed=summary.zone_assumed,
            )

        return services.db.run_write(work)
    except ScheduleError as exc:
        raise ApiError(422, "invalid_schedule", f"{exc}; nothing was imported") from exc
