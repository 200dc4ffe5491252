"""Legal holds (保全, Article 29): evidence kept beyond its retention while a case is open.

Placing and releasing are separate acts, each with who, when and why, each a ledger entry; a
released hold stays in history. On S3/MinIO the affected objects carry a legal hold too, lifted
only when no other active hold still covers them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.coverage.rule import required_span
from services.retention.expiry import HoldScope, SegmentFacts, holds_covering
from services.settings import Settings
from storage import ledger
from storage.blobs import BlobStore
from storage.models import Camera, Hold, Segment, Sitting

logger = logging.getLogger(__name__)


class HoldError(ValueError):
    """A hold that cannot be placed or released as asked; the message says why."""


@dataclass(frozen=True)
class HoldRequest:
    reason: str
    case_reference: str | None = None
    sitting_code: str | None = None
    camera_code: str | None = None
    held_from: datetime | None = None
    held_until: datetime | None = None
    segment_id: int | None = None


def active_scopes(session: Session, settings: Settings) -> list[HoldScope]:
    """Every active hold, resolved to segment or camera-over-interval scopes."""
    scopes: list[HoldScope] = []
    for hold in session.scalars(select(Hold).where(Hold.released_at.is_(None))):
        scopes.extend(_scopes(session, hold, settings))
    return scopes


def _scopes(session: Session, hold: Hold, settings: Settings) -> list[HoldScope]:
    if hold.scope == "segment":
        return [HoldScope(hold.id, segment_id=hold.segment_id)]
    if hold.scope == "camera":
        return [
            HoldScope(hold.id, camera_id=hold.camera_id, start=hold.held_from, end=hold.held_until)
        ]
    sitting = session.get(Sitting, hold.sitting_id)
    assert sitting is not None
    interval = required_span(
        sitting.starts_at,
        sitting.ends_at,
        pre_margin=timedelta(seconds=settings.coverage_pre_margin_seconds),
        post_margin=timedelta(seconds=settings.coverage_post_margin_seconds),
    )
    # Every camera the room ever had: a hold keeps all footage of the sitting's time.
    return [
        HoldScope(hold.id, camera_id=camera_id, start=interval.start, end=interval.end)
        for camera_id in session.scalars(select(Camera.id).where(Camera.room_id == sitting.room_id))
    ]


def _segments_in(session: Session, scopes: Sequence[HoldScope]) -> list[Segment]:
    found: dict[int, Segment] = {}
    for scope in scopes:
        query = select(Segment).where(Segment.purged_at.is_(None))
        if scope.segment_id is not None:
            query = query.where(Segment.id == scope.segment_id)
        else:
            query = query.where(Segment.camera_id == scope.camera_id)
            if scope.start is not None:
                query = query.where(Segment.ends_at > scope.start)
            if scope.end is not None:
                query = query.where(Segment.starts_at < scope.end)
        for segment in session.scalars(query):
            found[segment.id] = segment
    return list(found.values())


def _facts(segment: Segment) -> SegmentFacts:
    return SegmentFacts(
        segment.id, segment.camera_id, segment.starts_at, segment.ends_at, segment.expires_at
    )


def place_hold(
    session: Session, store: BlobStore, settings: Settings, request: HoldRequest, *, actor: str
) -> Hold:
    if not request.reason.strip():
        raise HoldError("a hold needs a reason")
    # Taken first, so a purge batch and this hold run one after the other: the batch either
    # sees the hold, or has finished and this hold no longer finds the purged segments.
    ledger.lock_head(session)
    chosen = [request.sitting_code, request.camera_code, request.segment_id]
    if sum(value is not None for value in chosen) != 1:
        raise HoldError("name exactly one of a sitting, a camera (with --from/--to) or a segment")
    hold = Hold(
        reason=request.reason.strip(),
        case_reference=request.case_reference,
        placed_by=actor,
        placed_at=datetime.now(UTC),
        scope="",
    )
    subject: str
    if request.sitting_code is not None:
        sitting = session.scalar(select(Sitting).where(Sitting.code == request.sitting_code))
        if sitting is None:
            raise HoldError(f"no sitting {request.sitting_code!r}")
        hold.scope, hold.sitting_id, subject = "sitting", sitting.id, sitting.code
    elif request.camera_code is not None:
        camera = session.scalar(select(Camera).where(Camera.code == request.camera_code))
        if camera is None:
            raise HoldError(f"no camera {request.camera_code!r}")
        if request.held_from is None or request.held_until is None:
            raise HoldError("a camera hold needs both --from and --to")
        if request.held_until <= request.held_from:
            raise HoldError("--to must be later than --from")
        hold.scope, hold.camera_id, subject = "camera", camera.id, camera.code
        hold.held_from, hold.held_until = request.held_from, request.held_until
    else:
        segment = session.get(Segment, request.segment_id)
        if segment is None:
            raise HoldError(f"no segment {request.segment_id}")
        hold.scope, hold.segment_id, subject = "segment", segment.id, str(segment.id)
    session.add(hold)
    session.flush()
    segments = _segments_in(session, _scopes(session, hold, settings))
    for segment in segments:
        store.set_legal_hold(segment.blob_key, True)
    ledger.append(
        session,
        actor=actor,
        action="hold.placed",
        subject_type="hold",
        subject_id=hold.id,
        details={
            "scope": hold.scope,
            "subject": subject,
            "from": hold.held_from.isoformat() if hold.held_from else None,
            "until": hold.held_until.isoformat() if hold.held_until else None,
            "reason": hold.reason,
            "case_reference": hold.case_reference,
            "segments": sorted(segment.id for segment in segments),
        },
    )
    return hold


def release_hold(
    session: Session, store: BlobStore, settings: Settings, hold_id: int, *, actor: str, reason: str
) -> Hold:
    ledger.lock_head(session)
    hold = session.get(Hold, hold_id)
    if hold is None:
        raise HoldError(f"no hold {hold_id}")
    if hold.released_at is not None:
        raise HoldError(f"hold {hold_id} was already released at {hold.released_at.isoformat()}")
    segments = _segments_in(session, _scopes(session, hold, settings))
    hold.released_at, hold.released_by, hold.release_reason = datetime.now(UTC), actor, reason
    session.flush()
    remaining = active_scopes(session, settings)
    lifted = []
    for segment in segments:
        if not holds_covering(_facts(segment), remaining):
            store.set_legal_hold(segment.blob_key, False)
            lifted.append(segment.id)
    ledger.append(
        session,
        actor=actor,
        action="hold.released",
        subject_type="hold",
        subject_id=hold.id,
        details={"reason": reason, "segments_no_longer_held": sorted(lifted)},
    )
    return hold
