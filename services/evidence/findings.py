"""Findings (督导记录): supervisors' notes on a sitting, and the centre closing its review.

A finding names a camera of the sitting's room, an instant or an interval inside the sitting's
required interval, a category and free text. Only its author changes it, and only while the
review is open; each version is a ledger entry, so an edit never erases what was first written
(Article 22). Withdrawing keeps the row, marked, for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from services.access.scopes import Subject, sitting_scope
from services.coverage.spans import required_interval
from services.settings import Settings
from storage import ledger
from storage.models import Camera, Finding, Institution, Room, Site, Sitting

MAX_TEXT = 4000


class FindingCategory(StrEnum):
    substitution = "substitution"  # 代考
    absent_assessor = "absent_assessor"  # 考评员缺席
    camera_blocked = "camera_blocked"  # 画面遮挡
    off_site = "off_site"  # 非备案场所
    other = "other"  # 其他


class FindingError(ValueError):
    """A finding that cannot be recorded as asked; `code` is the API's stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FindingDraft:
    camera: str
    category: FindingCategory
    observed_from: datetime
    observed_until: datetime | None
    text: str


def _ledger_view(finding: Finding, camera_code: str) -> dict[str, Any]:
    return {
        "camera": camera_code,
        "category": finding.category,
        "observed_from": ledger.format_instant(finding.observed_from),
        "observed_until": (
            ledger.format_instant(finding.observed_until) if finding.observed_until else None
        ),
        "text": finding.text,
        "revision": finding.revision,
    }


def _checked(session: Session, sitting: Sitting, draft: FindingDraft, settings: Settings) -> Camera:
    camera = session.scalar(
        select(Camera).where(Camera.code == draft.camera, Camera.room_id == sitting.room_id)
    )
    if camera is None:
        raise FindingError(
            "invalid_finding", f"camera {draft.camera!r} is not in the room of {sitting.code}"
        )
    text = draft.text.strip()
    if not text or len(text) > MAX_TEXT:
        raise FindingError("invalid_finding", f"text must be 1 to {MAX_TEXT} characters")
    for moment in (draft.observed_from, draft.observed_until):
        if moment is not None and moment.tzinfo is None:
            raise FindingError("invalid_finding", "give every instant with its UTC offset")
    window = required_interval(sitting, settings)
    start = draft.observed_from.astimezone(UTC)
    end = draft.observed_until.astimezone(UTC) if draft.observed_until else start
    if end < start:
        raise FindingError("invalid_finding", "observed_until is before observed_from")
    if start < window.start or end > window.end:
        raise FindingError(
            "invalid_finding",
            f"the finding must lie inside the sitting's required interval "
            f"{window.start.isoformat()} to {window.end.isoformat()}",
        )
    return camera


def _review_open(sitting: Sitting) -> None:
    if sitting.review_closed_at is not None:
        raise FindingError(
            "review_closed", f"the review of {sitting.code} is closed; findings are final"
        )


def record_finding(
    session: Session, sitting: Sitting, draft: FindingDraft, subject: Subject, settings: Settings
) -> Finding:
    _review_open(sitting)
    camera = _checked(session, sitting, draft, settings)
    now = datetime.now(UTC)
    finding = Finding(
        sitting_id=sitting.id,
        camera_id=camera.id,
        category=draft.category.value,
        observed_from=draft.observed_from.astimezone(UTC),
        observed_until=draft.observed_until.astimezone(UTC) if draft.observed_until else None,
        text=draft.text.strip(),
        author_user_id=subject.user_id,
        author=subject.actor,
        created_at=now,
        updated_at=now,
        revision=1,
        withdrawn_at=None,
    )
    session.add(finding)
    session.flush()
    ledger.append(
        session,
        actor=subject.actor,
        action="finding.created",
        subject_type="finding",
        subject_id=finding.id,
        details={"sitting": sitting.code, **_ledger_view(finding, camera.code)},
        recorded_at=now,
    )
    return finding


def _own(session: Session, sitting: Sitting, finding_id: int, subject: Subject) -> Finding:
    finding = session.get(Finding, finding_id)
    if finding is None or finding.sitting_id != sitting.id:
        raise FindingError("not_found", f"no finding {finding_id} on sitting {sitting.code}")
    if finding.author != subject.actor or finding.author_user_id != subject.user_id:
        raise FindingError("forbidden", "only the author of a finding may change it")
    if finding.withdrawn_at is not None:
        raise FindingError("withdrawn", f"finding {finding_id} was withdrawn")
    _review_open(sitting)
    return finding


def revise_finding(
    session: Session,
    sitting: Sitting,
    finding_id: int,
    draft: FindingDraft,
    subject: Subject,
    settings: Settings,
) -> Finding:
    finding = _own(session, sitting, finding_id, subject)
    previous_camera = session.get(Camera, finding.camera_id)
    before = _ledger_view(finding, previous_camera.code if previous_camera else "?")
    camera = _checked(session, sitting, draft, settings)
    finding.camera_id = camera.id
    finding.category = draft.category.value
    finding.observed_from = draft.observed_from.astimezone(UTC)
    finding.observed_until = draft.observed_until.astimezone(UTC) if draft.observed_until else None
    finding.text = draft.text.strip()
    finding.revision += 1
    finding.updated_at = datetime.now(UTC)
    session.flush()
    ledger.append(
        session,
        actor=subject.actor,
        action="finding.revised",
        subject_type="finding",
        subject_id=finding.id,
        details={
            "sitting": sitting.code,
            "before": before,
            "after": _ledger_view(finding, camera.code),
        },
        recorded_at=finding.updated_at,
    )
    return finding


def withdraw_finding(
    session: Session, sitting: Sitting, finding_id: int, subject: Subject, reason: str
) -> Finding:
    finding = _own(session, sitting, finding_id, subject)
    finding.withdrawn_at = datetime.now(UTC)
    finding.updated_at = finding.withdrawn_at
    session.flush()
    ledger.append(
        session,
        actor=subject.actor,
        action="finding.withdrawn",
        subject_type="finding",
        subject_id=finding.id,
        details={"sitting": sitting.code, "reason": reason, "revision": finding.revision},
        recorded_at=finding.withdrawn_at,
    )
    return finding


def findings_of(session: Session, sitting: Sitting) -> Sequence[tuple[Finding, str]]:
    """Every finding of the sitting with its camera code, withdrawn ones included (marked)."""
    rows = session.execute(
        select(Finding, Camera.code)
        .join(Camera, Finding.camera_id == Camera.id)
        .where(Finding.sitting_id == sitting.id)
        .order_by(Finding.observed_from, Finding.id)
    ).all()
    return [(finding, code) for finding, code in rows]


def set_review(
    session: Session, sitting: Sitting, *, closed: bool, actor: str, reason: str
) -> None:
    """Close (findings become final) or reopen a sitting's review; both are ledgered."""
    if closed == (sitting.review_closed_at is not None):
        state = "closed" if closed else "open"
        raise FindingError("review_unchanged", f"the review of {sitting.code} is already {state}")
    now = datetime.now(UTC)
    sitting.review_closed_at = now if closed else None
    sitting.review_closed_by = actor if closed else None
    session.flush()
    ledger.append(
        session,
        actor=actor,
        action="review.closed" if closed else "review.reopened",
        subject_type="sitting",
        subject_id=sitting.code,
        details={"reason": reason},
        recorded_at=now,
    )


class FindingStatus(StrEnum):
    """Where a finding stands: `open` while its sitting's review is open, `final` once the
    centre closed it, `withdrawn` when its author took it back (the row stays)."""

    open = "open"
    final = "final"
    withdrawn = "withdrawn"


def status_of(finding: Finding, sitting: Sitting) -> FindingStatus:
    if finding.withdrawn_at is not None:
        return FindingStatus.withdrawn
    if sitting.review_closed_at is not None:
        return FindingStatus.final
    return FindingStatus.open


@dataclass(frozen=True)
class FindingFilter:
    """What the findings list narrows to; None means any. `observed_from`/`observed_before`
    bound the finding's instant (its start), UTC."""

    district: str | None = None
    institution: str | None = None
    sitting: str | None = None
    camera: str | None = None
    category: FindingCategory | None = None
    status: FindingStatus | None = None
    author: str | None = None
    observed_from: datetime | None = None
    observed_before: datetime | None = None


@dataclass(frozen=True)
class ListedFinding:
    finding: Finding
    sitting: Sitting
    camera: str
    position: str
    institution: str
    institution_name: str
    district: str
    status: FindingStatus


def scoped_findings(
    session: Session,
    subject: Subject,
    now: datetime,
    wanted: FindingFilter,
    *,
    limit: int,
    offset: int,
) -> tuple[int, list[ListedFinding]]:
    """The findings of every sitting `subject` may see (sitting_scope: a district officer
    their district's), narrowed by `wanted`, newest observation first; with the total count.
    A filter outside the caller's scope (another district) narrows to nothing, as a list of
    sittings does."""
    conditions = [sitting_scope(subject, now)]
    if wanted.district is not None:
        conditions.append(Institution.district == wanted.district)
    if wanted.institution is not None:
        conditions.append(Institution.code == wanted.institution)
    if wanted.sitting is not None:
        conditions.append(Sitting.code == wanted.sitting)
    if wanted.camera is not None:
        conditions.append(Camera.code == wanted.camera)
    if wanted.category is not None:
        conditions.append(Finding.category == wanted.category.value)
    if wanted.author is not None:
        conditions.append(Finding.author == wanted.author)
    if wanted.status is FindingStatus.withdrawn:
        conditions.append(Finding.withdrawn_at.is_not(None))
    elif wanted.status is FindingStatus.final:
        conditions.append(
            and_(Finding.withdrawn_at.is_(None), Sitting.review_closed_at.is_not(None))
        )
    elif wanted.status is FindingStatus.open:
        conditions.append(and_(Finding.withdrawn_at.is_(None), Sitting.review_closed_at.is_(None)))
    if wanted.observed_from is not None:
        conditions.append(Finding.observed_from >= wanted.observed_from)
    if wanted.observed_before is not None:
        conditions.append(Finding.observed_from < wanted.observed_before)

    def joined(query: Any) -> Any:
        return (
            query.join(Sitting, Finding.sitting_id == Sitting.id)
            .join(Camera, Finding.camera_id == Camera.id)
            .join(Room, Sitting.room_id == Room.id)
            .join(Site, Room.site_id == Site.id)
            .join(Institution, Site.institution_id == Institution.id)
            .where(*conditions)
        )

    total = session.scalar(joined(select(func.count(Finding.id)).select_from(Finding))) or 0
    rows = session.execute(
        joined(
            select(
                Finding,
                Sitting,
                Camera.code,
                Camera.position,
                Institution.code,
                Institution.name,
                Institution.district,
            ).select_from(Finding)
        )
        .order_by(Finding.observed_from.desc(), Finding.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return total, [
        ListedFinding(
            finding=finding,
            sitting=sitting,
            camera=camera,
            position=position,
            institution=code,
            institution_name=name,
            district=district,
            status=status_of(finding, sitting),
        )
        for finding, sitting, camera, position, code, name, district in rows
    ]
