"""The retention purge (docs/retention.md): plan what is past its expiry and not held, and,
only when asked, delete it, leaving a tombstone and a ledger entry per segment.

Crash safety: a batch's tombstones, `purged_at` marks and ledger entries commit in one
transaction *before* its blobs are deleted, and `blob_deleted_at` is set after. A kill leaves
every segment either untouched or tombstoned; a tombstone whose blob is not yet deleted is
finished by the next run (and reported by reconcile meanwhile).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from services.background import BackgroundThread
from services.coverage.spans import required_interval, sittings_touching
from services.retention.expiry import (
    PurgeDecision,
    SegmentFacts,
    expiry_for,
    holds_covering,
    purge_decision,
)
from services.retention.holds import active_scopes
from services.settings import Settings
from services.timefmt import rfc3339
from storage import ledger
from storage.blobs import BlobStore, BlobStoreError
from storage.db import Database
from storage.keys import CHECKPOINT_PREFIX, DERIVED_PREFIX
from storage.models import Camera, PurgeRun, Segment, Sitting, Tombstone

logger = logging.getLogger(__name__)

BATCH = 500
RETENTION_RULE = (
    "that is the retention period in calendar years after the latest of the segment's own end "
    "and the end of the required interval of every sitting it touches"
)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PlanItem:
    segment_id: int
    camera_id: int
    blob_key: str
    size_bytes: int
    starts_at: datetime
    ends_at: datetime
    expires_at: datetime
    sha256: str


@dataclass
class PurgePlan:
    as_of: datetime
    items: list[PlanItem] = field(default_factory=list)
    held: dict[int, list[int]] = field(default_factory=dict)  # segment id -> hold ids

    @property
    def bytes(self) -> int:
        return sum(item.size_bytes for item in self.items)

    def as_json(self, zone: tzinfo) -> dict[str, Any]:
        expiries = [item.expires_at for item in self.items]
        return {
            "as_of": rfc3339(self.as_of, zone),
            "rule": "a segment goes once its expiry (the end of the local day "
            f"{RETENTION_RULE}) is on or before as_of and no active hold covers it",
            "segments": len(self.items),
            "bytes": self.bytes,
            "oldest_expiry": rfc3339(min(expiries), zone) if expiries else None,
            "newest_expiry": rfc3339(max(expiries), zone) if expiries else None,
            "skipped_held": len(self.held),
            "held": [
                {"segment": segment_id, "holds": holds}
                for segment_id, holds in sorted(self.held.items())
            ],
            "items": [
                {
                    "segment": item.segment_id,
                    "key": item.blob_key,
                    "size": item.size_bytes,
                    "start": rfc3339(item.starts_at, zone),
                    "end": rfc3339(item.ends_at, zone),
                    "expires_at": rfc3339(item.expires_at, zone),
                }
                for item in self.items
            ],
        }


def plan_purge(session: Session, settings: Settings, as_of: datetime) -> PurgePlan:
    holds = active_scopes(session)
    plan = PurgePlan(as_of=as_of)
    rows = session.execute(
        select(
            Segment.id,
            Segment.camera_id,
            Segment.blob_key,
            Segment.size_bytes,
            Segment.starts_at,
            Segment.ends_at,
            Segment.expires_at,
            Segment.sha256,
        )
        .where(Segment.purged_at.is_(None), Segment.expires_at <= as_of)
        .order_by(Segment.expires_at, Segment.id)
    )
    for row in rows:
        item = PlanItem(*row)
        facts = SegmentFacts(
            item.segment_id, item.camera_id, item.starts_at, item.ends_at, item.expires_at
        )
        decision = purge_decision(facts, holds, as_of)
        if decision is PurgeDecision.PURGE:
            plan.items.append(item)
        elif decision is PurgeDecision.HELD:
            plan.held[item.segment_id] = holds_covering(facts, holds)
    return plan


@dataclass
class PurgeResult:
    """What a run did, not what it planned: a blob the store refused is not counted as gone."""

    run_id: str
    planned: int
    purged: int = 0  # tombstoned by this run
    bytes: int = 0  # of this run's purged segments whose blobs are deleted
    skipped: int = 0  # changed between plan and deletion (held, moved later, gone)
    finished_leftovers: int = 0  # earlier runs' tombstones whose blob this run deleted
    blobs_left: int = 0  # tombstoned (now or before) with the blob still stored: next run
    derived_dropped: int = 0  # cached thumbnail objects removed with the footage


def _delete_blobs(store: BlobStore, keys: list[str]) -> set[str]:
    """Delete what can be deleted; a blob the store refuses (a legal hold, a lock running late
    on a clock behind ours) is logged and left for the next run, never blocking the rest."""
    try:
        store.delete_many(keys)
        return set(keys)
    except BlobStoreError:
        deleted = set()
        for key in keys:
            try:
                store.delete(key)
                deleted.add(key)
            except BlobStoreError as exc:
                logger.error("purge: %s stays for now: %s", key, exc)
        return deleted


def finish_leftovers(db: Database, store: BlobStore) -> tuple[int, int]:
    """Delete the blobs of tombstones an interrupted (or refused) run left behind. Returns how
    many were deleted now and how many the store still refused."""
    with db.read() as session:
        pending = session.execute(
            select(Tombstone.id, Tombstone.blob_key).where(Tombstone.blob_deleted_at.is_(None))
        ).all()
    finished = 0
    for start in range(0, len(pending), BATCH):
        chunk = pending[start : start + BATCH]
        deleted = _delete_blobs(store, [key for _, key in chunk])
        done = [tid for tid, key in chunk if key in deleted]
        with db.write() as session:
            session.execute(
                update(Tombstone)
                # Only unmarked ones: a concurrent run may have marked some (the database
                # refuses a second mark, migration 0006).
                .where(Tombstone.id.in_(done), Tombstone.blob_deleted_at.is_(None))
                .values(blob_deleted_at=datetime.now(UTC))
            )
        finished += len(done)
    return finished, len(pending) - finished


def execute_purge(
    db: Database,
    store: BlobStore,
    settings: Settings,
    *,
    actor: str,
    progress: Progress | None = None,
    reason: str = "retention expired",
) -> PurgeResult:
    finished, refused = finish_leftovers(db, store)
    as_of = datetime.now(UTC)
    with db.read() as session:
        plan = plan_purge(session, settings, as_of)
    result = PurgeResult(
        run_id=str(uuid.uuid4()),
        planned=len(plan.items),
        finished_leftovers=finished,
        blobs_left=refused,
    )
    with db.write() as session:
        session.add(
            PurgeRun(
                id=result.run_id,
                as_of=as_of,
                started_at=as_of,
                finished_at=None,
                actor=actor,
                planned=len(plan.items),
                planned_bytes=plan.bytes,
            )
        )
    for batch in _batches(plan.items):
        done = db.run_write(
            lambda session, b=batch: _tombstone_batch(
                session, settings, b, run_id=result.run_id, actor=actor, reason=reason
            )
        )
        deleted = _delete_blobs(store, [item.blob_key for item in done])
        gone = [item for item in done if item.blob_key in deleted]
        with db.write() as session:
            session.execute(
                update(Tombstone)
                .where(
                    Tombstone.segment_id.in_([item.segment_id for item in gone]),
                    Tombstone.blob_deleted_at.is_(None),
                )
                .values(blob_deleted_at=datetime.now(UTC))
            )
        result.purged += len(done)
        result.bytes += sum(item.size_bytes for item in gone)
        result.blobs_left += len(done) - len(gone)
        result.skipped += len(batch) - len(done)
        if progress is not None:
            progress(result.purged + result.skipped, result.planned)
    with db.write() as session:
        run = session.get(PurgeRun, result.run_id)
        assert run is not None
        run.finished_at, run.purged = datetime.now(UTC), result.purged
    if result.purged:
        result.derived_dropped = drop_derived(store)
    return result


def drop_derived(store: BlobStore) -> int:
    """Empty the cache of derived pictures (thumbnail strips). They show faces like the footage
    they came from, so none may outlive footage the purge just removed; the cache rebuilds
    itself from what remains when next asked. Returns how many objects went."""
    # On S3 a strip is locked for minutes after it is made: what is refused goes next time.
    return len(_delete_blobs(store, list(store.keys(DERIVED_PREFIX))))


def _batches(items: list[PlanItem]) -> Iterator[list[PlanItem]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _tombstone_batch(
    session: Session,
    settings: Settings,
    batch: list[PlanItem],
    *,
    run_id: str,
    actor: str,
    reason: str,
) -> list[PlanItem]:
    """Re-check each item right before deleting: still unpurged, still expired, not held."""
    # Placing a hold appends to the ledger and so holds its lock until it commits; taking that
    # lock first makes this batch wait for, and then see, a hold placed while it ran.
    ledger.lock_head(session)
    now = datetime.now(UTC)
    holds = active_scopes(session)
    current = {
        row.id: row
        for row in session.execute(
            select(
                Segment.id,
                Segment.camera_id,
                Segment.starts_at,
                Segment.ends_at,
                Segment.expires_at,
                Segment.purged_at,
            )
            .where(Segment.id.in_([item.segment_id for item in batch]))
            .with_for_update()
        )
    }
    done: list[PlanItem] = []
    for item in batch:
        row = current.get(item.segment_id)
        if row is None:
            continue
        facts = SegmentFacts(
            row.id,
            row.camera_id,
            row.starts_at,
            row.ends_at,
            row.expires_at,
            purged=row.purged_at is not None,
        )
        if purge_decision(facts, holds, now) is not PurgeDecision.PURGE:
            continue
        done.append(item)
    if not done:
        return done
    session.execute(
        update(Segment)
        .where(Segment.id.in_([item.segment_id for item in done]))
        .values(purged_at=now)
    )
    # Core executemany: the ORM unit of work is the slowest part of a 500-segment batch.
    session.execute(
        insert(Tombstone),
        [
            {
                "segment_id": item.segment_id,
                "run_id": run_id,
                "sha256": item.sha256,
                "size_bytes": item.size_bytes,
                "blob_key": item.blob_key,
                "starts_at": item.starts_at,
                "ends_at": item.ends_at,
                "expires_at": item.expires_at,
                "purged_at": now,
                "reason": reason,
                "blob_deleted_at": None,
            }
            for item in done
        ],
    )
    ledger.append_many(
        session,
        [
            ledger.Event(
                actor,
                "segment.purged",
                "segment",
                item.segment_id,
                {
                    "sha256": item.sha256,
                    "size": item.size_bytes,
                    "key": item.blob_key,
                    "expires_at": item.expires_at.isoformat(),
                    "run": run_id,
                    "reason": reason,
                },
            )
            for item in done
        ],
        recorded_at=now,
    )
    return done


@dataclass
class Reconciliation:
    blobs_without_rows: list[str] = field(default_factory=list)
    # Evidence loss: a segment still under retention whose bytes are gone.
    missing_before_expiry: list[int] = field(default_factory=list)
    missing_after_expiry: list[int] = field(default_factory=list)
    tombstoned_blob_present: list[int] = field(default_factory=list)

    @property
    def evidence_lost(self) -> bool:
        return bool(self.missing_before_expiry)

    def as_json(self) -> dict[str, Any]:
        return {
            "blobs_without_rows": self.blobs_without_rows,
            "missing_before_expiry": self.missing_before_expiry,
            "missing_after_expiry": self.missing_after_expiry,
            "tombstoned_blob_present": self.tombstoned_blob_present,
            "evidence_lost": self.evidence_lost,
        }


def segment_keys(store: BlobStore) -> set[str]:
    """Every object key in the store except the signed ledger checkpoints and the derived
    pictures (thumbnail strips) kept beside them."""
    every = store.keys()
    return {key for key in every if not key.startswith((CHECKPOINT_PREFIX, DERIVED_PREFIX))}


def reconcile(db: Database, store: BlobStore, *, now: datetime | None = None) -> Reconciliation:
    now = now or datetime.now(UTC)
    report = Reconciliation()
    stored = segment_keys(store)
    known: set[str] = set()
    with db.read() as session:
        for segment_id, key, expires_at, purged_at in session.execute(
            select(Segment.id, Segment.blob_key, Segment.expires_at, Segment.purged_at)
        ):
            known.add(key)
            present = key in stored
            if purged_at is not None:
                if present:
                    report.tombstoned_blob_present.append(segment_id)
            elif not present:
                target = (
                    report.missing_before_expiry
                    if expires_at > now
                    else report.missing_after_expiry
                )
                target.append(segment_id)
    report.blobs_without_rows = sorted(stored - known)
    return report


def expiry_of_span(
    session: Session, settings: Settings, camera_code: str, start: datetime, end: datetime
) -> datetime:
    """The expiry of footage of this camera over [start, end), from the sittings it touches
    now: the one computation ingest and the schedule import share, so the order in which
    footage and sittings arrive cannot change the answer."""
    touched = sittings_touching(session, camera_code, start, end, settings)
    return expiry_for(
        end,
        [required_interval(sitting, settings).end for sitting in touched],
        zone=settings.zone,
        years=settings.retention_years,
    )


def extend_expiries(
    session: Session, store: BlobStore, settings: Settings, sitting: Sitting, *, actor: str
) -> int:
    """A sitting imported or moved after its footage arrived: every segment it touches keeps
    its bytes at least three years after the sitting; expiry only ever moves later."""
    interval = required_interval(sitting, settings)
    cameras = {
        camera_id: code
        for camera_id, code in session.execute(
            select(Camera.id, Camera.code).where(Camera.room_id == sitting.room_id)
        )
    }
    segments = session.scalars(
        select(Segment).where(
            Segment.camera_id.in_(list(cameras)),
            Segment.starts_at < interval.end,
            Segment.ends_at > interval.start,
            Segment.purged_at.is_(None),
        )
    ).all()
    extended = 0
    for segment in segments:
        expiry = expiry_of_span(
            session, settings, cameras[segment.camera_id], segment.starts_at, segment.ends_at
        )
        if expiry <= segment.expires_at:
            continue
        lock = store.extend_retention(segment.blob_key, expiry)
        ledger.append(
            session,
            actor=actor,
            action="segment.expiry_extended",
            subject_type="segment",
            subject_id=segment.id,
            details={
                "from": segment.expires_at.isoformat(),
                "to": expiry.isoformat(),
                "sitting": sitting.code,
                "object_lock_until": lock.isoformat() if lock else None,
            },
        )
        segment.expires_at = expiry
        extended += 1
    return extended


def next_daily_run(after: datetime, at: str, zone: tzinfo) -> datetime:
    """The first local HH:MM strictly after `after`, in UTC. Pure."""
    hours, minutes = (int(part) for part in at.split(":"))
    local = after.astimezone(zone)
    candidate = datetime.combine(local.date(), time(hours, minutes), tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(
            local.date() + timedelta(days=1), time(hours, minutes), tzinfo=zone
        )
    return candidate.astimezone(UTC)


class PurgeScheduler(BackgroundThread):
    """Runs the purge daily at EXAMVAULT_PURGE_SCHEDULE (local time) inside `serve`."""

    name = "purge-schedule"

    def __init__(self, db: Database, store: BlobStore, settings: Settings) -> None:
        super().__init__()
        assert settings.purge_schedule is not None
        self.db, self.store, self.settings = db, store, settings
        self.at = settings.purge_schedule
        self._due: datetime | None = None

    def run_once(self) -> float:
        now = datetime.now(UTC)
        if self._due is not None and now >= self._due:
            result = execute_purge(self.db, self.store, self.settings, actor="schedule")
            logger.info(
                "scheduled purge: %d of %d segment(s) purged, %d bytes deleted, "
                "%d blob(s) left for the next run",
                result.purged,
                result.planned,
                result.bytes,
                result.blobs_left,
            )
            self._due = None
        if self._due is None:
            self._due = next_daily_run(now, self.at, self.settings.zone)
            logger.info("next scheduled purge at %s", self._due.isoformat())
        return max(1.0, (self._due - now).total_seconds())
