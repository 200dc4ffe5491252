"""Who may see which sittings (SPEC.md "Security model"), as SQL conditions so lists are
filtered in the database and single lookups answer 404 for what the caller may not know of."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true

from storage.models import Assignment, Institution, Sitting


@dataclass(frozen=True)
class Subject:
    """Who is calling; `actor` goes into every ledger entry the call causes."""

    name: str
    role: str
    cameras: frozenset[str] = frozenset()
    user_id: int | None = None
    district: str | None = None
    institution_id: int | None = None

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"


def sitting_scope(subject: Subject, now: datetime) -> ColumnElement[bool]:
    """The sittings `subject` may see, for a query that joins Sitting and Institution."""
    if subject.role == "admin":
        return true()
    if subject.role == "district_officer":
        return Institution.district == subject.district
    if subject.role == "institution":
        return Institution.id == subject.institution_id
    if subject.role == "supervisor" and subject.user_id is not None:
        live = and_(
            Assignment.user_id == subject.user_id,
            Assignment.revoked_at.is_(None),
            Assignment.valid_from <= now,
            Assignment.valid_until > now,
        )
        by_sitting = exists(select(Assignment.id).where(live, Assignment.sitting_id == Sitting.id))
        by_institution = exists(
            select(Assignment.id).where(
                live,
                Assignment.institution_id == Institution.id,
                Assignment.covers_from <= Sitting.starts_at,
                Assignment.covers_until > Sitting.starts_at,
            )
        )
        return or_(by_sitting, by_institution)
    return false()


def may_watch_footage(subject: Subject) -> bool:
    """Institutions see their verdicts, not their candidates' faces (unless granted)."""
    return subject.role in ("admin", "district_officer", "supervisor")
