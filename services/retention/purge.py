"""The retention purge (docs/retention.md): plan what is past its expiry and not held, and,
only when asked, delete it, leaving a tombstone and a ledger entry per segment.

Crash safety: a batch's tombstones, `purged_at` marks and ledger entries commit in one
transaction *before* its blobs are deleted, and `blob_deleted_at` is set after. A kill leaves
every segment either untouched or tombstoned; a tombstone whose blob is not yet deleted is
finished by the next run (and reported by reconcile meanwhile). Deleted blobs are recorded in
groups of at most MARK_GROUP (or MARK_SECONDS), so a kill leaves at most MARK_GROUP deletions
unrecorded, each redone by the next run.

Faults: a store that fails STORE_FAILURES times in a row stops the run (a circuit breaker),
instead of costing the client's retries for every key; SIGINT/SIGTERM stop it between two
blobs. Either way the run is closed with its status and reason. A run whose process was
killed is closed as `interrupted` by the next run or at `serve` start-up.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from time import monotonic
from typing import Any

import pybreaker
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from services.background import BackgroundThread
from services.coverage.spans import required_interval, sittings_touching
from services.liveness import owner_is_gone, process_owner
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
from storage.blobs import BlobStore, BlobStoreError, WormViolation
from storage.db import Database
from storage.keys import CHECKPOINT_PREFIX, DERIVED_PREFIX
from storage.models import Camera, PurgeRun, Segment, Sitting, Tombstone

logger = logging.getLogger(__name__)

BATCH = 500
# Consecutive store failures after which a run stops (docs/retention.md).
STORE_FAILURES = 3
# Deleted blobs are recorded in groups: at most MARK_GROUP, and no later than MARK_SECONDS after
# the group's first deletion. A transaction per blob (pool checkout, BEGIN IMMEDIATE, UPDATE,
# COMMIT) cost ~2.5 ms on the loaded 2-core bench machine, as much as the unlink itself, and more
# than halved the purge's speed; 50 blobs share one. A kill leaves at most MARK_GROUP deletions
# unrecorded, each redone by the next run (a no-op unlink, then the mark). MARK_SECONDS bounds
# how far the record lags on a slow store (S3: ~10 ms a delete), where a group fills slowly.
MARK_GROUP = 50
MARK_SECONDS = 0.2
# How often a run records that it is alive, and after how long without a sign of life a run
# of another host is taken for dead (a run on this host is checked by its process).
HEARTBEAT_SECONDS = 10.0
STALE_RUN = timedelta(minutes=30)
RUNNING, COMPLETED, STOPPED, INTERRUPTED = "running", "completed", "stopped", "interrupted"
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
    finished_bytes: int = 0  # ... and their bytes
    blobs_left: int = 0  # tombstoned (now or before) with the blob still stored: next run
    derived_dropped: int = 0  # cached thumbnail objects removed with the footage
    status: str = RUNNING  # completed, stopped (store failing) or interrupted (asked to stop)
    stop_reason: str | None = None
    remaining: int = 0  # planned segments this run did not reach: still expired, untouched
    closed_runs: list[str] = field(default_factory=list)  # killed runs this one closed


class PurgeStopped(Exception):
    """The run stops before it is done; the message says why, in one sentence."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class _StoreBreaker:
    """Stops the run after STORE_FAILURES consecutive store failures: during an outage every
    call costs the client's own retries (about 6 s each with minio's defaults), so going on
    key after key would take hours and delete nothing. A refusal of a locked object
    (WormViolation) is the store answering, not failing: it resets the count."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.last_error: BaseException | None = None
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=failures,
            # A run never waits for the breaker to close again: the next run starts afresh.
            reset_timeout=24 * 3600,
            exclude=[WormViolation],
        )

    def call(self, work: Callable[..., Any], *args: Any) -> Any:
        try:
            return self._breaker.call(work, *args)
        except pybreaker.CircuitBreakerError as exc:
            # The failure that tripped the breaker is the one being handled when it raised.
            last = exc.__context__ if isinstance(exc.__context__, Exception) else self.last_error
            raise PurgeStopped(
                STOPPED,
                f"the blob store failed {self.failures} times in a row "
                f"(last: {last or exc}); the purge stopped",
            ) from exc
        except Exception as exc:
            if not isinstance(exc, WormViolation):
                self.last_error = exc
            raise


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise PurgeStopped(INTERRUPTED, "the purge was asked to stop (SIGINT or SIGTERM)")


@dataclass
class _Tally:
    """Blobs deleted and recorded so far, and their bytes: kept up to date group by group, so
    a run that stops half-way still reports what it did."""

    blobs: int = 0
    bytes: int = 0


def _record_deleted(
    db: Database,
    marks: list[tuple[int, int, datetime]],
    *,
    run_id: str,
    beat: bool,
) -> None:
    """Set `blob_deleted_at` of each (tombstone id, size, deleted at) in one transaction."""
    # Neither the marks nor (on a local disk) the unlinks are synced one by one: both survive
    # a kill of this process, and the directories are synced at the end of the list. A power
    # cut in between can at worst leave a marked tombstone whose blob came back, which
    # reconcile reports (tombstoned_blob_present).
    table = Tombstone.__table__
    with db.progress_write() as session:
        session.connection().execute(
            update(table)
            # Only unmarked ones: a concurrent run may have marked it (the database refuses a
            # second mark, migration 0006).
            .where(table.c.id == bindparam("tombstone"), table.c.blob_deleted_at.is_(None))
            .values(blob_deleted_at=bindparam("deleted_at")),
            [{"tombstone": tombstone, "deleted_at": at} for tombstone, _, at in marks],
        )
        if beat:
            _beat(session, run_id, datetime.now(UTC))


def _delete_and_mark(
    db: Database,
    breaker: _StoreBreaker,
    store: BlobStore,
    pending: list[tuple[int, str, int]],
    *,
    run_id: str,
    stop: threading.Event | None,
    tally: _Tally,
) -> None:
    """Delete each (tombstone id, key, size) and record the deletions in small groups (at most
    MARK_GROUP blobs, recorded once the first of them is MARK_SECONDS old): a kill leaves at most
    MARK_GROUP deletions unrecorded, which the next run redoes (deleting an absent blob is a
    no-op). A blob the store refuses (a legal hold, a lock running late on a clock behind ours)
    is logged and left for the next run."""
    group: list[tuple[int, int, datetime]] = []
    opened = last_beat = monotonic()

    def record() -> None:
        nonlocal group, last_beat
        # Taken first: a group whose write fails is not written again (the next run redoes it).
        marks, group = group, []
        beat = monotonic() - last_beat > HEARTBEAT_SECONDS
        _record_deleted(db, marks, run_id=run_id, beat=beat)
        if beat:
            last_beat = monotonic()
        tally.blobs += len(marks)
        tally.bytes += sum(size for _, size, _ in marks)

    try:
        try:
            for tombstone_id, key, size in pending:
                if group and (len(group) >= MARK_GROUP or monotonic() - opened >= MARK_SECONDS):
                    record()
                _check_stop(stop)
                try:
                    breaker.call(store.delete_deferred, key)
                except BlobStoreError as exc:
                    logger.error("purge: %s stays for now: %s", key, exc)
                    continue
                if not group:
                    opened = monotonic()
                group.append((tombstone_id, size, datetime.now(UTC)))
        finally:
            # Stopped, refused or done: what was deleted is recorded before the run ends.
            if group:
                record()
    finally:
        store.flush_deletions()


def _until_store_answers(
    breaker: _StoreBreaker, store: BlobStore, stop: threading.Event | None
) -> None:
    """No more tombstones while the store does not answer: they would only add blobs for the
    next run to finish. Each failed probe counts towards the breaker, which ends the wait."""
    while True:
        _check_stop(stop)
        try:
            breaker.call(store.check_ready)
            return
        except BlobStoreError as exc:
            logger.warning("purge: the blob store does not answer: %s", exc)


def _beat(session: Session, run_id: str, now: datetime) -> None:
    session.execute(update(PurgeRun).where(PurgeRun.id == run_id).values(heartbeat_at=now))


def _pending_blobs(db: Database) -> list[tuple[int, str, int]]:
    with db.read() as session:
        return [
            (row.id, row.blob_key, row.size_bytes)
            for row in session.execute(
                select(Tombstone.id, Tombstone.blob_key, Tombstone.size_bytes)
                .where(Tombstone.blob_deleted_at.is_(None))
                .order_by(Tombstone.id)
            )
        ]


def close_abandoned_runs(db: Database, *, now: datetime | None = None) -> list[str]:
    """Close the runs whose process died without finishing them (SIGKILL, a power cut): each
    is marked `interrupted` with a finish time and what it had tombstoned. Called by every
    run and at `serve` start-up; a run still alive (in this or another process) is left."""
    now = now or datetime.now(UTC)
    with db.write() as session:
        open_runs = session.scalars(
            select(PurgeRun).where(PurgeRun.finished_at.is_(None)).with_for_update()
        ).all()
        closed = []
        for run in open_runs:
            if not owner_is_gone(
                run.owner, run.heartbeat_at or run.started_at, now=now, stale=STALE_RUN
            ):
                continue
            tombstoned, gone_bytes = session.execute(
                select(
                    func.count(Tombstone.id),
                    func.coalesce(
                        func.sum(Tombstone.size_bytes).filter(
                            Tombstone.blob_deleted_at.is_not(None)
                        ),
                        0,
                    ),
                ).where(Tombstone.run_id == run.id)
            ).one()
            run.finished_at, run.status = now, INTERRUPTED
            run.purged, run.purged_bytes = int(tombstoned), int(gone_bytes)
            run.stop_reason = (
                f"the process running it ({run.owner or 'unknown'}) ended before it finished; "
                f"closed by a later run, which finishes the blobs it left"
            )
            closed.append(run.id)
    for run_id in closed:
        logger.warning("purge run %s was interrupted (its process is gone): closed", run_id)
    return closed


def finish_leftovers(
    db: Database,
    store: BlobStore,
    *,
    breaker: _StoreBreaker | None = None,
    run_id: str = "",
    stop: threading.Event | None = None,
    tally: _Tally | None = None,
) -> tuple[int, int]:
    """Delete the blobs of tombstones an interrupted (or refused) run left behind. Returns how
    many were deleted now and how many the store still refused."""
    pending = _pending_blobs(db)
    tally = tally if tally is not None else _Tally()
    _delete_and_mark(
        db,
        breaker or _StoreBreaker(STORE_FAILURES),
        store,
        pending,
        run_id=run_id,
        stop=stop,
        tally=tally,
    )
    return tally.blobs, len(pending) - tally.blobs


def execute_purge(
    db: Database,
    store: BlobStore,
    settings: Settings,
    *,
    actor: str,
    progress: Progress | None = None,
    reason: str = "retention expired",
    stop: threading.Event | None = None,
    store_failures: int = STORE_FAILURES,
) -> PurgeResult:
    """Run the purge; never raises for a failing store or a stop request: the result (and the
    run's row) says how far it got and why it stopped (`status`, `stop_reason`)."""
    closed = close_abandoned_runs(db)
    as_of = datetime.now(UTC)
    result = PurgeResult(run_id=str(uuid.uuid4()), planned=0, closed_runs=closed)
    with db.write() as session:
        session.add(
            PurgeRun(
                id=result.run_id,
                as_of=as_of,
                started_at=as_of,
                finished_at=None,
                actor=actor,
                planned=0,
                planned_bytes=0,
                status=RUNNING,
                owner=process_owner(),
                heartbeat_at=as_of,
            )
        )
    breaker = _StoreBreaker(store_failures)
    plan: PurgePlan | None = None
    reached = 0
    leftovers, deleted = _Tally(), _Tally()
    try:
        finish_leftovers(
            db, store, breaker=breaker, run_id=result.run_id, stop=stop, tally=leftovers
        )
        with db.read() as session:
            plan = plan_purge(session, settings, as_of)
        result.planned = len(plan.items)
        with db.write() as session:
            run = session.get_one(PurgeRun, result.run_id)
            run.planned, run.planned_bytes = len(plan.items), plan.bytes
        for batch in _batches(plan.items):
            _check_stop(stop)
            _until_store_answers(breaker, store, stop)
            done = db.run_write(
                lambda session, b=batch: _tombstone_batch(
                    session, settings, b, run_id=result.run_id, actor=actor, reason=reason
                )
            )
            reached += len(batch)
            result.purged += len(done)
            result.skipped += len(batch) - len(done)
            with db.read() as session:
                tombstones = {
                    row.segment_id: row.id
                    for row in session.execute(
                        select(Tombstone.id, Tombstone.segment_id).where(
                            Tombstone.run_id == result.run_id,
                            Tombstone.segment_id.in_([item.segment_id for item in done]),
                        )
                    )
                }
            _delete_and_mark(
                db,
                breaker,
                store,
                [(tombstones[item.segment_id], item.blob_key, item.size_bytes) for item in done],
                run_id=result.run_id,
                stop=stop,
                tally=deleted,
            )
            if progress is not None:
                progress(result.purged + result.skipped, result.planned)
        result.status = COMPLETED
    except PurgeStopped as exc:
        result.status, result.stop_reason = exc.status, str(exc)
        logger.error("purge run %s: %s", result.run_id, exc)
    result.finished_leftovers, result.finished_bytes = leftovers.blobs, leftovers.bytes
    result.bytes = deleted.bytes
    if plan is None:
        # Stopped before planning (while finishing earlier runs' blobs): what is due anyway.
        with db.read() as session:
            result.remaining = len(plan_purge(session, settings, as_of).items)
    else:
        result.remaining = result.planned - reached
    result.blobs_left = len(_pending_blobs(db))
    with db.write() as session:
        run = session.get_one(PurgeRun, result.run_id)
        run.finished_at, run.purged, run.purged_bytes = (
            datetime.now(UTC),
            result.purged,
            result.bytes,
        )
        run.status, run.stop_reason = result.status, result.stop_reason
    if result.purged and result.status == COMPLETED:
        try:
            result.derived_dropped = drop_derived(store)
        except BlobStoreError as exc:
            # The footage is gone and recorded; the cache goes with the next run.
            logger.warning("purge: derived pictures not dropped this time: %s", exc)
    return result


def describe_result(result: PurgeResult) -> str:
    """The run's summary in words: what was done, what remains, and why it stopped."""
    lines = []
    if result.closed_runs:
        lines.append(
            f"closed {len(result.closed_runs)} earlier run(s) whose process had died "
            f"({', '.join(result.closed_runs)}) as interrupted"
        )
    head = {
        COMPLETED: "purge run completed",
        STOPPED: "purge run STOPPED before it was done",
        INTERRUPTED: "purge run INTERRUPTED before it was done",
    }.get(result.status, f"purge run {result.status}")
    lines.append(f"{head}: run {result.run_id}")
    if result.stop_reason:
        lines.append(f"  why: {result.stop_reason}")
    lines.append(
        f"  done: {result.purged} of {result.planned} planned segment(s) tombstoned, "
        f"{result.bytes} bytes deleted; {result.skipped} skipped on re-check; "
        f"{result.finished_leftovers} blob(s) of earlier runs finished "
        f"({result.finished_bytes} bytes)"
    )
    lines.append(
        f"  remaining: {result.remaining} expired segment(s) not reached (untouched); "
        f"{result.blobs_left} blob(s) of tombstoned segments still stored"
        + (", for the next run" if result.blobs_left or result.remaining else "")
    )
    return "\n".join(lines)


def drop_derived(store: BlobStore) -> int:
    """Empty the cache of derived pictures (thumbnail strips). They show faces like the footage
    they came from, so none may outlive footage the purge just removed; the cache rebuilds
    itself from what remains when next asked. Returns how many objects went."""
    # On S3 a strip is locked for minutes after it is made: what is refused goes next time.
    dropped = 0
    for key in list(store.keys(DERIVED_PREFIX)):
        try:
            store.delete(key)
            dropped += 1
        except BlobStoreError as exc:
            logger.warning("purge: derived picture %s stays for now: %s", key, exc)
    return dropped


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
    """Runs the purge daily at EXAMVAULT_PURGE_SCHEDULE (local time) inside `serve`.

    A run the store stopped is tried again after RETRY_FIRST, doubling up to RETRY_MAX (and
    never later than the next daily run): during an outage the job neither spins nor waits a
    whole day once the store is back."""

    name = "purge-schedule"
    RETRY_FIRST = timedelta(minutes=5)
    RETRY_MAX = timedelta(hours=2)

    def __init__(self, db: Database, store: BlobStore, settings: Settings) -> None:
        super().__init__()
        assert settings.purge_schedule is not None
        self.db, self.store, self.settings = db, store, settings
        self.at = settings.purge_schedule
        self._due: datetime | None = None
        self._retry: timedelta | None = None
        self.last_result: PurgeResult | None = None

    def run_once(self) -> float:
        now = datetime.now(UTC)
        if self._due is None and self._retry is None:
            # Start-up: a run killed with the previous process is closed now, not next day.
            close_abandoned_runs(self.db)
        if self._due is not None and now >= self._due:
            result = execute_purge(
                self.db, self.store, self.settings, actor="schedule", stop=self.stop_event
            )
            self.last_result = result
            logger.info("scheduled purge: %s", describe_result(result).replace("\n", ";"))
            self._due = None
            if result.status == STOPPED:
                self._retry = min(self._retry * 2, self.RETRY_MAX) if self._retry else None
                self._retry = self._retry or self.RETRY_FIRST
                daily = next_daily_run(now, self.at, self.settings.zone)
                self._due = min(datetime.now(UTC) + self._retry, daily)
                logger.warning("scheduled purge stopped; trying again at %s", self._due.isoformat())
            else:
                self._retry = None
        if self._due is None:
            self._due = next_daily_run(now, self.at, self.settings.zone)
            logger.info("next scheduled purge at %s", self._due.isoformat())
        return max(1.0, (self._due - datetime.now(UTC)).total_seconds())
