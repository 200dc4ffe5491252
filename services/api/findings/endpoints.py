"""Findings (督导记录): supervisors' notes on a sitting, and the centre closing its review.

Who may do what is decided once per route by the dependency in its signature:
`FindingsReader` (admin, district officer, supervisor), `FindingsAuthor` (supervisor, admin),
`ReviewCloser` (admin). Each first resolves the sitting within the caller's scope, so a sitting
the caller may not know answers 404 and a known one with a role that may not act answers 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.access.scopes import NO_FOOTAGE_ZH, Subject, sitting_scope, visible_sitting
from services.api.deps import (
    CurrentSubject,
    RowId,
    ServicesDep,
    SittingReader,
    instant_param,
)
from services.api.errors import ApiError
from services.api.findings.schemas import (
    FindingIn,
    FindingList,
    FindingOut,
    InstitutionChoice,
    ListedFindingOut,
    ReviewIn,
    ReviewOut,
    ScopedFindingList,
    WithdrawIn,
)
from services.evidence.findings import (
    FindingCategory,
    FindingDraft,
    FindingError,
    FindingFilter,
    FindingStatus,
    findings_of,
    record_finding,
    revise_finding,
    scoped_findings,
    set_review,
    withdraw_finding,
)
from services.timefmt import rfc3339, rfc3339_or_none
from storage.models import Finding, Institution, Sitting

router = APIRouter(tags=["findings"])

_STATUS = {
    "invalid_finding": 422,
    "not_found": 404,
    "forbidden": 403,
    "review_closed": 409,
    "withdrawn": 409,
    "review_unchanged": 409,
}


@dataclass(frozen=True)
class SittingAccess:
    """A sitting the caller may act on, and who the caller is."""

    code: str
    subject: Subject


def _sitting_for(roles: tuple[str, ...], doing: str) -> Callable[..., SittingAccess]:
    def dependency(code: str, services: ServicesDep, subject: SittingReader) -> SittingAccess:
        with services.db.read() as session:
            if visible_sitting(session, code, subject, datetime.now(UTC)) is None:
                raise ApiError(404, "not_found", f"no sitting {code!r}")
        if subject.role not in roles:
            raise ApiError(
                403,
                "forbidden",
                f"role {subject.role!r} may not {doing}",
                message_zh=NO_FOOTAGE_ZH if subject.role == "institution" else None,
            )
        return SittingAccess(code, subject)

    return dependency


FindingsReader = Annotated[
    SittingAccess,
    Depends(_sitting_for(("admin", "district_officer", "supervisor"), "read findings")),
]
FindingsAuthor = Annotated[
    SittingAccess, Depends(_sitting_for(("admin", "supervisor"), "record findings"))
]
ReviewCloser = Annotated[
    SittingAccess, Depends(_sitting_for(("admin",), "close or reopen a review"))
]


def _in_scope(session: Session, access: SittingAccess) -> Sitting:
    """Re-read inside the write transaction: the assignment may have ended meanwhile."""
    sitting = visible_sitting(session, access.code, access.subject, datetime.now(UTC))
    if sitting is None:
        raise ApiError(404, "not_found", f"no sitting {access.code!r}")
    return sitting


def _out(
    finding: Finding, camera: str, sitting: Sitting, subject: Subject, services: ServicesDep
) -> FindingOut:
    zone = services.settings.zone
    return FindingOut(
        id=finding.id,
        sitting=sitting.code,
        camera=camera,
        category=FindingCategory(finding.category),
        observed_from=rfc3339(finding.observed_from, zone),
        observed_until=rfc3339_or_none(finding.observed_until, zone),
        text=finding.text,
        author=finding.author,
        created_at=rfc3339(finding.created_at, zone),
        updated_at=rfc3339(finding.updated_at, zone),
        revision=finding.revision,
        withdrawn_at=rfc3339_or_none(finding.withdrawn_at, zone),
        editable=(
            finding.author == subject.actor
            and finding.author_user_id == subject.user_id
            and finding.withdrawn_at is None
            and sitting.review_closed_at is None
        ),
    )


def _draft(body: FindingIn) -> FindingDraft:
    return FindingDraft(
        camera=body.camera,
        category=body.category,
        observed_from=body.observed_from,
        observed_until=body.observed_until,
        text=body.text,
    )


T = TypeVar("T")


_AUTHOR_ONLY_ZH = "只有记录的填写人可以修改或撤回该督导记录。"


def _write(services: ServicesDep, work: Callable[[Session], T]) -> T:
    try:
        return services.db.run_write(work)
    except FindingError as exc:
        zh = _AUTHOR_ONLY_ZH if exc.code == "forbidden" else None
        raise ApiError(_STATUS.get(exc.code, 422), exc.code, str(exc), message_zh=zh) from exc


@router.get(
    "/api/v1/sittings/{code}/findings",
    response_model=FindingList,
    summary="A sitting's findings, withdrawn ones marked",
)
def list_findings(services: ServicesDep, access: FindingsReader) -> FindingList:
    zone = services.settings.zone
    with services.db.read() as session:
        sitting = _in_scope(session, access)
        return FindingList(
            sitting=sitting.code,
            review_closed_at=rfc3339_or_none(sitting.review_closed_at, zone),
            review_closed_by=sitting.review_closed_by,
            findings=[
                _out(finding, camera, sitting, access.subject, services)
                for finding, camera in findings_of(session, sitting)
            ],
        )


@router.post(
    "/api/v1/sittings/{code}/findings",
    status_code=201,
    response_model=FindingOut,
    summary="Record a finding at a camera, at an instant or over an interval",
)
def post_finding(body: FindingIn, services: ServicesDep, access: FindingsAuthor) -> FindingOut:
    def work(session: Session) -> FindingOut:
        sitting = _in_scope(session, access)
        finding = record_finding(session, sitting, _draft(body), access.subject, services.settings)
        return _out(finding, body.camera, sitting, access.subject, services)

    return _write(services, work)


@router.put(
    "/api/v1/sittings/{code}/findings/{finding_id}",
    response_model=FindingOut,
    summary="Revise one's own finding while the review is open",
)
def put_finding(
    finding_id: RowId, body: FindingIn, services: ServicesDep, access: FindingsAuthor
) -> FindingOut:
    def work(session: Session) -> FindingOut:
        sitting = _in_scope(session, access)
        finding = revise_finding(
            session, sitting, finding_id, _draft(body), access.subject, services.settings
        )
        return _out(finding, body.camera, sitting, access.subject, services)

    return _write(services, work)


@router.post(
    "/api/v1/sittings/{code}/findings/{finding_id}/withdraw",
    response_model=FindingOut,
    summary="Withdraw one's own finding while the review is open (it stays, marked)",
)
def withdraw(
    finding_id: RowId, body: WithdrawIn, services: ServicesDep, access: FindingsAuthor
) -> FindingOut:
    def work(session: Session) -> FindingOut:
        sitting = _in_scope(session, access)
        finding = withdraw_finding(session, sitting, finding_id, access.subject, body.reason)
        camera = next(code for row, code in findings_of(session, sitting) if row.id == finding.id)
        return _out(finding, camera, sitting, access.subject, services)

    return _write(services, work)


def _review(
    services: ServicesDep, access: SittingAccess, body: ReviewIn, closed: bool
) -> ReviewOut:
    def work(session: Session) -> ReviewOut:
        sitting = _in_scope(session, access)
        set_review(session, sitting, closed=closed, actor=access.subject.actor, reason=body.reason)
        return ReviewOut(
            sitting=sitting.code,
            review_closed_at=rfc3339_or_none(sitting.review_closed_at, services.settings.zone),
            review_closed_by=sitting.review_closed_by,
        )

    return _write(services, work)


@router.post(
    "/api/v1/sittings/{code}/review/close",
    response_model=ReviewOut,
    summary="Close a sitting's review: its findings become final",
)
def close_review(body: ReviewIn, services: ServicesDep, access: ReviewCloser) -> ReviewOut:
    return _review(services, access, body, closed=True)


@router.post(
    "/api/v1/sittings/{code}/review/reopen",
    response_model=ReviewOut,
    summary="Reopen a closed review (the centre, with a reason)",
)
def reopen_review(body: ReviewIn, services: ServicesDep, access: ReviewCloser) -> ReviewOut:
    return _review(services, access, body, closed=False)


# Who oversees supervisors' findings across sittings: the centre, and district officers (their
# district, by sitting_scope). Supervisors read them per sitting; institutions not at all.
_OVERSEERS = ("admin", "district_officer")
MAX_PAGE = 200
# Far beyond any city's findings; bounds the OFFSET the database is asked to skip.
MAX_OFFSET = 1_000_000


def _overseer(subject: CurrentSubject) -> Subject:
    if subject.role not in _OVERSEERS:
        raise ApiError(
            403,
            "forbidden",
            f"role {subject.role!r} may not list findings across sittings",
            message_zh="只有市职鉴中心和区县人社部门可以查看督导记录汇总。",
        )
    return subject


FindingsOverseer = Annotated[Subject, Depends(_overseer)]


def _local_day(
    value: date | None, name: str, services: ServicesDep, *, days_after: int = 0
) -> datetime | None:
    """The start of the local calendar day `days_after` days after `value` (the configured
    zone), in UTC; 400 outside 1970..8999, clear of the calendar's limits."""
    if value is None:
        return None
    if not date(1970, 1, 2) <= value <= date(8999, 12, 31):
        raise ApiError(400, "invalid_request", f"{name}: {value} is outside 1970..8999")
    day = value + timedelta(days=days_after)
    return datetime.combine(day, time(), tzinfo=services.settings.zone).astimezone(UTC)


@router.get(
    "/api/v1/findings",
    response_model=ScopedFindingList,
    summary="Findings across the sittings the caller may see (admin; district officers: "
    "their district), filterable, newest observation first",
)
def list_scoped_findings(
    services: ServicesDep,
    subject: FindingsOverseer,
    district: Annotated[str | None, Query(max_length=100)] = None,
    institution: Annotated[str | None, Query(max_length=64, description="code")] = None,
    sitting: Annotated[str | None, Query(max_length=200, description="sitting code")] = None,
    camera: Annotated[str | None, Query(max_length=64, description="camera code")] = None,
    category: Annotated[FindingCategory | None, Query()] = None,
    status: Annotated[FindingStatus | None, Query()] = None,
    author: Annotated[str | None, Query(max_length=200, description="supervisor:NAME")] = None,
    from_: Annotated[
        str | None, Query(alias="from", description="RFC 3339: observed at or after")
    ] = None,
    to: Annotated[str | None, Query(description="RFC 3339: observed before")] = None,
    date_from: Annotated[
        date | None, Query(description="first local day (YYYY-MM-DD, the configured zone)")
    ] = None,
    date_to: Annotated[date | None, Query(description="last local day, inclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ScopedFindingList:
    begin = instant_param(from_, "from")
    end = instant_param(to, "to")
    day_begin = _local_day(date_from, "date_from", services)
    day_end = _local_day(date_to, "date_to", services, days_after=1)
    starts = [moment for moment in (begin, day_begin) if moment is not None]
    ends = [moment for moment in (end, day_end) if moment is not None]
    wanted = FindingFilter(
        district=district or None,
        institution=institution or None,
        sitting=sitting or None,
        camera=camera or None,
        category=category,
        status=status,
        author=author or None,
        observed_from=max(starts) if starts else None,
        observed_before=min(ends) if ends else None,
    )
    now = datetime.now(UTC)
    zone = services.settings.zone
    with services.db.read() as session:
        total, rows = scoped_findings(session, subject, now, wanted, limit=limit, offset=offset)
        choices = session.execute(
            select(Institution.code, Institution.name, Institution.district)
            .where(sitting_scope(subject, now))
            .order_by(Institution.district, Institution.code)
        ).all()
        return ScopedFindingList(
            findings=[
                ListedFindingOut(
                    id=row.finding.id,
                    sitting=row.sitting.code,
                    sitting_starts_at=rfc3339(row.sitting.starts_at, zone),
                    sitting_ends_at=rfc3339(row.sitting.ends_at, zone),
                    institution=row.institution,
                    institution_name=row.institution_name,
                    district=row.district,
                    camera=row.camera,
                    position=row.position,
                    category=FindingCategory(row.finding.category),
                    observed_from=rfc3339(row.finding.observed_from, zone),
                    observed_until=rfc3339_or_none(row.finding.observed_until, zone),
                    text=row.finding.text,
                    author=row.finding.author,
                    created_at=rfc3339(row.finding.created_at, zone),
                    updated_at=rfc3339(row.finding.updated_at, zone),
                    revision=row.finding.revision,
                    withdrawn_at=rfc3339_or_none(row.finding.withdrawn_at, zone),
                    status=row.status,
                )
                for row in rows
            ],
            total=total,
            limit=limit,
            offset=offset,
            institutions=[
                InstitutionChoice(code=code, name=name, district=where)
                for code, name, where in choices
            ],
        )
