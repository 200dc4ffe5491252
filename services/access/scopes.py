"""Who may see which sittings (SPEC.md "Security model"), as SQL conditions so lists are
filtered in the database and single lookups answer 404 for what the caller may not know of."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, exists, false, or_, select, true
from sqlalchemy.orm import Session

from services.coverage.rule import Interval
from services.coverage.spans import required_interval
from services.settings import Settings
from storage.models import Assignment, Camera, Institution, Room, Segment, Site, Sitting


@dataclass(frozen=True)
class Subject:
    """Who is calling; `actor` goes into every ledger entry the call causes."""

    name: str
    role: str
    cameras: frozenset[str] = frozenset()
    user_id: int | None = None
    district: str | None = None
    institution_id: int | None = None
    # The bearer token this call came with, so a person can end their own session.
    token_id: int | None = None

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


NO_FOOTAGE_ZH = (
    "鉴定机构账号只能查看本机构场次的覆盖结论，不能查看录像（如需查看请向市职鉴中心申请授权）。"
)


def may_watch_footage(subject: Subject) -> bool:
    """Institutions see their verdicts, not their candidates' faces (unless granted)."""
    return subject.role in ("admin", "district_officer", "supervisor")


def _scoped_sittings(subject: Subject, now: datetime) -> Select[tuple[Sitting]]:
    return (
        select(Sitting)
        .join(Room, Sitting.room_id == Room.id)
        .join(Site, Room.site_id == Site.id)
        .join(Institution, Site.institution_id == Institution.id)
        .where(sitting_scope(subject, now))
    )


def visible_sitting(session: Session, code: str, subject: Subject, now: datetime) -> Sitting | None:
    """The sitting if `subject` may see it; None both when it does not exist and when it is
    out of scope, so callers answer 404 alike and reveal nothing."""
    return session.scalar(_scoped_sittings(subject, now).where(Sitting.code == code))


def visible_camera(session: Session, code: str, subject: Subject, now: datetime) -> Camera | None:
    """The camera if `subject` may know of it: admins all; district officers and institutions
    those in their scope; supervisors the cameras of rooms of sittings they may see."""
    camera = session.scalar(select(Camera).where(Camera.code == code))
    if camera is None or subject.role == "admin":
        return camera
    if subject.role == "camera_host":
        return camera if camera.code in subject.cameras else None
    in_scope = _scoped_sittings(subject, now).where(Sitting.room_id == camera.room_id).limit(1)
    if subject.role in ("district_officer", "institution"):
        owner = session.scalar(
            select(Institution)
            .join(Site, Site.institution_id == Institution.id)
            .join(Room, Room.site_id == Site.id)
            .where(Room.id == camera.room_id, sitting_scope(subject, now))
        )
        return camera if owner is not None else None
    return camera if session.scalar(in_scope) is not None else None


def footage_windows(
    session: Session, subject: Subject, camera: Camera, settings: Settings, now: datetime
) -> list[Interval] | None:
    """When `subject` may watch `camera`: None for any time (admins; district officers in
    their district), else the required intervals of the sittings a supervisor may see in the
    camera's room, so an assignment never opens the room's other days."""
    if subject.role in ("admin", "district_officer"):
        return None
    if subject.role != "supervisor":
        return []
    sittings = session.scalars(
        _scoped_sittings(subject, now).where(Sitting.room_id == camera.room_id)
    ).all()
    return sorted(
        (required_interval(sitting, settings) for sitting in sittings), key=lambda w: w.start
    )


def within_windows(windows: list[Interval] | None, start: datetime, end: datetime) -> bool:
    """Whether [start, end) lies inside one window (None: no restriction)."""
    if windows is None:
        return True
    return any(w.start <= start and end <= w.end for w in windows)


def overlaps_windows(windows: list[Interval] | None, start: datetime, end: datetime) -> bool:
    if windows is None:
        return True
    return any(w.start < end and start < w.end for w in windows)


def visible_segment(
    session: Session, segment_id: int, subject: Subject, settings: Settings, now: datetime
) -> Segment | None:
    """The segment if `subject` may know of it: its camera is visible and, for a supervisor,
    it overlaps a sitting they may see. Purged segments are still known (their tombstone)."""
    segment = session.get(Segment, segment_id)
    if segment is None:
        return None
    camera = session.get(Camera, segment.camera_id)
    if camera is None or visible_camera(session, camera.code, subject, now) is None:
        return None
    windows = footage_windows(session, subject, camera, settings, now)
    if subject.role == "supervisor" and not overlaps_windows(
        windows, segment.starts_at, segment.ends_at
    ):
        return None
    return segment
