"""Legal holds (保全, Article 29): evidence kept beyond its retention while a case is open.

Placing and releasing are separate acts, each with who, when and why, each a ledger entry; a
released hold stays in history. A hold's scope is frozen when it is placed (`hold_scopes`) and
only ever grows: when a held sitting moves, to the union of its old and new scope. On S3/MinIO
the affected objects carry a legal hold too, lifted only when no other active hold still covers
them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from services.coverage.spans import required_interval
from services.retention.expiry import (
    HoldScope,
    SegmentFacts,
    holds_covering,
    newly_covered,
    scopes_to_add,
    sitting_scopes,
)
from services.settings import Settings
from storage import ledger
from storage.blobs import BlobStore
from storage.db import Database
from storage.models import Camera, Hold, HoldScopeRecord, Segment, Sitting

logger = logging.getLogger(__name__)


class HoldError(ValueError):
    """A hold that cannot be placed or released as asked; the message says why."""


# A reason and a case number are kept in the ledger for good and shown on every holds page:
# bounded, as a finding's text is, so no one can grow the permanent record by megabytes.
MAX_REASON = 2000
MAX_CASE_REFERENCE = 200


def _check_texts(reason: str, case_reference: str | None = None) -> None:
    if not reason.strip():
        raise HoldError("a hold needs a reason")
    if len(reason) > MAX_REASON:
        raise HoldError(f"a reason is at most {MAX_REASON} characters, this one {len(reason)}")
    if case_reference is not None and len(case_reference) > MAX_CASE_REFERENCE:
        raise HoldError(f"a case number is at most {MAX_CASE_REFERENCE} characters")


@dataclass(frozen=True)
class HoldRequest:
    reason: str
    case_reference: str | None = None
    sitting_code: str | None = None
    camera_code: str | None = None
    held_from: datetime | None = None
    held_until: datetime | None = None
    segment_id: int | None = None


def active_scopes(session: Session, *, segment: Segment | None = None) -> list[HoldScope]:
    """Every active hold's frozen scope, as segment or camera-over-interval parts (only the
    parts that could cover `segment`, when one is given)."""
    query = (
        select(HoldScopeRecord)
        .join(Hold, Hold.id == HoldScopeRecord.hold_id)
        .where(Hold.released_at.is_(None))
        .order_by(HoldScopeRecord.id)
    )
    if segment is not None:
        query = query.where(
            or_(
                HoldScopeRecord.segment_id == segment.id,
                HoldScopeRecord.camera_id == segment.camera_id,
            )
        )
    return [_scope(record) for record in session.scalars(query)]


def frozen_scope(session: Session, hold_id: int) -> list[HoldScope]:
    """What one hold covers (released or not): the union of its scope records."""
    query = (
        select(HoldScopeRecord)
        .where(HoldScopeRecord.hold_id == hold_id)
        .order_by(HoldScopeRecord.id)
    )
    return [_scope(record) for record in session.scalars(query)]


def _scope(record: HoldScopeRecord) -> HoldScope:
    return HoldScope(
        record.hold_id,
        segment_id=record.segment_id,
        camera_id=record.camera_id,
        start=record.starts_at,
        end=record.ends_at,
    )


def _sitting_scope(
    session: Session, hold_id: int, sitting: Sitting, settings: Settings
) -> list[HoldScope]:
    interval = required_interval(sitting, settings)
    # Every camera the room ever had: a hold keeps all footage of the sitting's time.
    cameras = session.scalars(select(Camera.id).where(Camera.room_id == sitting.room_id))
    return sitting_scopes(hold_id, cameras, interval.start, interval.end)


def _freeze(session: Session, scopes: Sequence[HoldScope], *, cause: str) -> None:
    now = datetime.now(UTC)
    session.add_all(
        HoldScopeRecord(
            hold_id=scope.hold_id,
            segment_id=scope.segment_id,
            camera_id=scope.camera_id,
            starts_at=scope.start,
            ends_at=scope.end,
            cause=cause,
            added_at=now,
        )
        for scope in scopes
    )
    session.flush()


def _scope_json(session: Session, scope: HoldScope) -> dict[str, object]:
    camera = session.get(Camera, scope.camera_id) if scope.camera_id is not None else None
    return {
        "segment": scope.segment_id,
        "camera": camera.code if camera is not None else None,
        "from": scope.start.isoformat() if scope.start else None,
        "until": scope.end.isoformat() if scope.end else None,
    }


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


@dataclass(frozen=True)
class HoldProtection:
    """What a hold keeps right now: the stored (unpurged) segments its frozen scope covers,
    their bytes, and when their normal retention would have let them go."""

    segments: int
    bytes: int
    earliest_expiry: datetime | None
    latest_expiry: datetime | None


def protection(session: Session, hold_id: int) -> HoldProtection:
    """One query over the hold's scope records; a segment in two of them counts once."""
    parts = []
    for scope in frozen_scope(session, hold_id):
        if scope.segment_id is not None:
            parts.append(Segment.id == scope.segment_id)
            continue
        conditions = [Segment.camera_id == scope.camera_id]
        if scope.start is not None:
            conditions.append(Segment.ends_at > scope.start)
        if scope.end is not None:
            conditions.append(Segment.starts_at < scope.end)
        parts.append(and_(*conditions))
    if not parts:
        return HoldProtection(0, 0, None, None)
    count, size, earliest, latest = session.execute(
        select(
            func.count(Segment.id),
            func.coalesce(func.sum(Segment.size_bytes), 0),
            func.min(Segment.expires_at),
            func.max(Segment.expires_at),
        ).where(Segment.purged_at.is_(None), or_(*parts))
    ).one()
    return HoldProtection(int(count), int(size), earliest, latest)


def _facts(segment: Segment) -> SegmentFacts:
    return SegmentFacts(
        segment.id, segment.camera_id, segment.starts_at, segment.ends_at, segment.expires_at
    )


def place_hold(
    session: Session, store: BlobStore, settings: Settings, request: HoldRequest, *, actor: str
) -> Hold:
    _check_texts(request.reason, request.case_reference)
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
    held_sitting: Sitting | None = None
    if request.sitting_code is not None:
        held_sitting = session.scalar(select(Sitting).where(Sitting.code == request.sitting_code))
        if held_sitting is None:
            raise HoldError(f"no sitting {request.sitting_code!r}")
        hold.scope, hold.sitting_id, subject = "sitting", held_sitting.id, held_sitting.code
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
    if held_sitting is not None:
        scopes = _sitting_scope(session, hold.id, held_sitting, settings)
    elif hold.scope == "camera":
        scopes = [
            HoldScope(hold.id, camera_id=hold.camera_id, start=hold.held_from, end=hold.held_until)
        ]
    else:
        scopes = [HoldScope(hold.id, segment_id=hold.segment_id)]
    # Frozen now: moving the sitting later adds to this scope, never takes from it.
    _freeze(session, scopes, cause="placed")
    segments = _segments_in(session, scopes)
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
            "covers": [_scope_json(session, scope) for scope in scopes],
            "segments": sorted(segment.id for segment in segments),
        },
    )
    return hold


def release_hold(
    session: Session, store: BlobStore, settings: Settings, hold_id: int, *, actor: str, reason: str
) -> Hold:
    _check_texts(reason)
    ledger.lock_head(session)
    hold = session.get(Hold, hold_id)
    if hold is None:
        raise HoldError(f"no hold {hold_id}")
    if hold.released_at is not None:
        raise HoldError(f"hold {hold_id} was already released at {hold.released_at.isoformat()}")
    segments = _segments_in(session, frozen_scope(session, hold.id))
    hold.released_at, hold.released_by, hold.release_reason = datetime.now(UTC), actor, reason
    session.flush()
    remaining = active_scopes(session)
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


def widen_for_moved_sitting(
    session: Session, store: BlobStore, settings: Settings, sitting: Sitting, *, actor: str
) -> list[int]:
    """A held sitting was moved (or re-imported): each of its active holds now covers the union
    of its frozen scope and the sitting's new one; the footage newly covered gets the store's
    legal hold. Returns the ids of the holds that grew."""
    holds = session.scalars(
        select(Hold)
        .where(Hold.sitting_id == sitting.id, Hold.released_at.is_(None))
        .order_by(Hold.id)
    ).all()
    if not holds:
        return []
    # The same lock as placing a hold: a purge batch either sees the wider scope or is done.
    ledger.lock_head(session)
    grown = []
    for hold in holds:
        frozen = frozen_scope(session, hold.id)
        added = scopes_to_add(frozen, _sitting_scope(session, hold.id, sitting, settings))
        if not added:
            continue
        _freeze(session, added, cause="moved")
        segments = {segment.id: segment for segment in _segments_in(session, added)}
        covered = newly_covered([_facts(s) for s in segments.values()], frozen, added)
        for segment_id in covered:
            store.set_legal_hold(segments[segment_id].blob_key, True)
        ledger.append(
            session,
            actor=actor,
            action="hold.scope_added",
            subject_type="hold",
            subject_id=hold.id,
            details={
                "sitting": sitting.code,
                "added": [_scope_json(session, scope) for scope in added],
                "segments": covered,
            },
        )
        logger.info(
            "hold %d: sitting %s moved; %d scope part(s) and %d segment(s) added",
            hold.id,
            sitting.code,
            len(added),
            len(covered),
        )
        grown.append(hold.id)
    return grown


def hold_new_segment(db: Database, store: BlobStore, segment_id: int, *, actor: str) -> list[int]:
    """Footage stored after a hold was placed, inside its frozen scope, gets the store's legal
    hold too (the purge refuses it either way, through the database). Returns the hold ids."""
    with db.read() as session:
        segment = session.get(Segment, segment_id)
        if segment is None:
            return []
        holding = holds_covering(_facts(segment), active_scopes(session, segment=segment))
    if not holding:
        return []
    store.set_legal_hold(segment.blob_key, True)
    db.run_write(
        lambda session: ledger.append(
            session,
            actor=actor,
            action="hold.segment_covered",
            subject_type="segment",
            subject_id=segment_id,
            details={"holds": holding},
        )
    )
    return holding
