"""Findings (督导记录): supervisors' notes on a sitting, and the centre closing its review.

Who may do what is decided once per route by the dependency in its signature:
`FindingsReader` (admin, district officer, supervisor), `FindingsAuthor` (supervisor, admin),
`ReviewCloser` (admin). Each first resolves the sitting within the caller's scope, so a sitting
the caller may not know answers 404 and a known one with a role that may not act answers 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from services.access.scopes import NO_FOOTAGE_ZH, Subject, visible_sitting
from services.api.deps import RowId, ServicesDep, SittingReader
from services.api.errors import ApiError
from services.api.findings.schemas import (
    FindingIn,
    FindingList,
    FindingOut,
    ReviewIn,
    ReviewOut,
    WithdrawIn,
)
from services.evidence.findings import (
    FindingCategory,
    FindingDraft,
    FindingError,
    findings_of,
    record_finding,
    revise_finding,
    set_review,
    withdraw_finding,
)
from services.timefmt import rfc3339, rfc3339_or_none
from storage.models import Finding, Sitting

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
