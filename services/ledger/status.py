"""The ledger as the centre's page shows it, without reading a ledger of 10^7 entries on load.

- `ledger_status`: length, latest checkpoint and its age, its witnesses' cosignatures, the last
  recorded checks, and the tree-root check: the latest recorded checkpoint's root against the
  stored tree's root at its size, O(log n) stored hashes (docs/ledger.md "Stored tree").
- `check_recent`: a bounded check of the newest entries (at most RECENT_MAX): each one's hash
  recomputed, its link to the one before, and its leaf in the stored tree; together with the
  tree-root check it covers what no checkpoint vouches for yet. The full linear check stays
  `examvault ledger verify` (minutes at 10^7 entries); both record their result (`LedgerCheck`).
- `entries_query`: the search of who did what (actor, action or kind, sitting or camera, time),
  newest first or oldest first, by keyset pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Select, String, and_, cast, false, or_, select
from sqlalchemy.orm import Session

from services.ledger.checkpoints import ledger_size
from storage import merkle, tree
from storage.ledger import ENTRY_COLUMNS, GENESIS_HASH, canonical_json, entry_hash
from storage.models import (
    Camera,
    LedgerCheck,
    LedgerCheckpointRecord,
    LedgerCosignature,
    LedgerEntry,
    Segment,
)

# The page's check reads at most this many entries within the request. Measured on the shared
# 2-core machine at a load average of 18 (SQLite, a 2*10^5-entry ledger): 10^4 entries in
# 1.9-3.5 s, 5*10^4 in 12-17 s, nearly all of it the entry hashing `ledger verify` does too.
RECENT_MAX = 20_000
FULL, RECENT = "full", "recent"


@dataclass(frozen=True)
class TreeRootCheck:
    """The latest recorded checkpoint's root against the stored tree at its size."""

    size: int
    ok: bool
    problem: str | None = None


@dataclass
class LedgerStatus:
    size: int
    tree_size: int
    checkpoint: LedgerCheckpointRecord | None
    cosignatures: list[LedgerCosignature] = field(default_factory=list)
    cosigned_sizes: dict[str, int] = field(default_factory=dict)  # witness key id -> size
    tree_root: TreeRootCheck | None = None
    last_full: LedgerCheck | None = None
    last_recent: LedgerCheck | None = None


def tree_root_check(session: Session, record: LedgerCheckpointRecord) -> TreeRootCheck:
    try:
        stored = tree.root(session, record.size).hex()
    except LookupError as exc:
        return TreeRootCheck(record.size, False, f"the stored tree cannot give its root: {exc}")
    if stored != record.root:
        return TreeRootCheck(
            record.size,
            False,
            f"the stored tree's root over entries 1..{record.size} differs from the signed "
            "checkpoint's: run `examvault ledger verify`",
        )
    return TreeRootCheck(record.size, True)


def _last_check(session: Session, kind: str) -> LedgerCheck | None:
    return session.scalar(
        select(LedgerCheck).where(LedgerCheck.kind == kind).order_by(LedgerCheck.id.desc()).limit(1)
    )


def ledger_status(session: Session, witness_key_ids: Sequence[str] = ()) -> LedgerStatus:
    record = session.scalar(
        select(LedgerCheckpointRecord).order_by(LedgerCheckpointRecord.size.desc()).limit(1)
    )
    status = LedgerStatus(
        size=ledger_size(session), tree_size=tree.stored_size(session), checkpoint=record
    )
    if record is not None:
        status.cosignatures = list(
            session.scalars(
                select(LedgerCosignature)
                .where(LedgerCosignature.checkpoint_size == record.size)
                .order_by(LedgerCosignature.witness_key_id)
            )
        )
        status.tree_root = tree_root_check(session, record)
    for key_id in witness_key_ids:
        # The key is (checkpoint_size, witness_key_id): read backwards, the first row of this
        # witness is its largest, without grouping a table that grows by one row a minute.
        size = session.scalar(
            select(LedgerCosignature.checkpoint_size)
            .where(LedgerCosignature.witness_key_id == key_id)
            .order_by(LedgerCosignature.checkpoint_size.desc())
            .limit(1)
        )
        if size is not None:
            status.cosigned_sizes[key_id] = size
    status.last_full = _last_check(session, FULL)
    status.last_recent = _last_check(session, RECENT)
    return status


@dataclass(frozen=True)
class CheckResult:
    first_seq: int
    last_seq: int
    ok: bool
    problem: str | None


def check_entries(session: Session, first: int, last: int) -> CheckResult:
    """Entries first..last: none missing, each hash recomputed from its content, each linked to
    the one before (entry first-1's stored hash, or the genesis), each equal to its stored
    leaf. Reads last - first + 2 entries and their leaves."""
    if last < first:
        return CheckResult(first, last, True, None)
    prev = GENESIS_HASH
    if first > 1:
        prev = session.scalar(select(LedgerEntry.entry_hash).where(LedgerEntry.seq == first - 1))
        if prev is None:
            return CheckResult(first, last, False, f"entry {first - 1} is missing")
    leaves = tree.read_range(session, {0: (first - 1, last - 1)})
    expected = first
    batch = 5000
    while expected <= last:
        # Plain rows, not ORM objects: the mapper's bookkeeping cost as much as the hashing.
        rows = session.execute(
            select(*(getattr(LedgerEntry, column) for column in ENTRY_COLUMNS))
            .where(LedgerEntry.seq >= expected, LedgerEntry.seq <= last)
            .order_by(LedgerEntry.seq)
            .limit(batch)
        ).all()
        if not rows:
            break
        for entry in rows:
            if entry.seq != expected:
                return CheckResult(first, last, False, f"entry {expected} is missing")
            if entry.prev_hash != prev:
                return CheckResult(
                    first,
                    last,
                    False,
                    f"entry {entry.seq}: prev_hash does not match entry {entry.seq - 1}",
                )
            recomputed = entry_hash(
                seq=entry.seq,
                recorded_at=entry.recorded_at,
                actor=entry.actor,
                action=entry.action,
                subject_type=entry.subject_type,
                subject_id=entry.subject_id,
                details=entry.details,
                prev_hash=entry.prev_hash,
            )
            if recomputed != entry.entry_hash:
                return CheckResult(
                    first, last, False, f"entry {entry.seq}: content does not match its entry_hash"
                )
            try:
                leaf = merkle.leaf_hash(bytes.fromhex(entry.entry_hash))
            except ValueError:
                leaf = None
            if leaves.get((0, entry.seq - 1)) != leaf:
                return CheckResult(
                    first,
                    last,
                    False,
                    f"entry {entry.seq} differs from its leaf in the stored tree",
                )
            prev = entry.entry_hash
            expected += 1
    if expected <= last:
        return CheckResult(first, last, False, f"entry {expected} is missing")
    return CheckResult(first, last, True, None)


def check_recent(session: Session, count: int, *, actor: str) -> LedgerCheck:
    """Check the newest `count` entries (at most RECENT_MAX) and the latest checkpoint's root
    against the stored tree; record the result in the caller's transaction."""
    started = datetime.now(UTC)
    count = max(1, min(count, RECENT_MAX))
    size = ledger_size(session)
    result = check_entries(session, max(1, size - count + 1), size)
    problem = result.problem
    record = session.scalar(
        select(LedgerCheckpointRecord).order_by(LedgerCheckpointRecord.size.desc()).limit(1)
    )
    if problem is None and record is not None:
        if record.size > size:
            problem = f"checkpoint {record.size} covers more entries than the ledger holds ({size})"
        else:
            root = tree_root_check(session, record)
            problem = root.problem
    check = LedgerCheck(
        kind=RECENT,
        actor=actor,
        started_at=started,
        finished_at=datetime.now(UTC),
        first_seq=result.first_seq,
        last_seq=result.last_seq,
        ok=problem is None,
        problem=problem,
    )
    session.add(check)
    session.flush()
    return check


def record_full_check(
    session: Session, *, actor: str, started_at: datetime, entries: int, problem: str | None
) -> LedgerCheck:
    """`examvault ledger verify`'s result, for the page."""
    check = LedgerCheck(
        kind=FULL,
        actor=actor,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        first_seq=1,
        last_seq=entries,
        ok=problem is None,
        problem=problem,
    )
    session.add(check)
    session.flush()
    return check


def seq_from(session: Session, moment: datetime) -> int:
    """The first seq recorded at or after `moment` (size + 1 when none): a binary search over
    primary-key lookups, since `recorded_at` never runs backwards against `seq`
    (storage/ledger.py). About 2·log2(n) lookups instead of a scan of recorded_at."""
    low, high = 1, ledger_size(session) + 1
    while low < high:
        middle = (low + high) // 2
        found = session.execute(
            select(LedgerEntry.seq, LedgerEntry.recorded_at)
            .where(LedgerEntry.seq >= middle)
            .order_by(LedgerEntry.seq)
            .limit(1)
        ).first()
        if found is None or found.recorded_at >= moment:
            high = middle
        else:
            low = found.seq + 1
    return low


@dataclass(frozen=True)
class SittingScope:
    """A sitting as the search needs it, resolved by the caller (the ledger knows no rules):
    its code, its room's cameras and its required interval."""

    code: str
    camera_ids: tuple[int, ...]
    camera_codes: tuple[str, ...]
    start: datetime
    end: datetime


@dataclass(frozen=True)
class EntryFilter:
    actor: str | None = None
    action: str | None = None
    kind: str | None = None  # an action's prefix: footage, export, hold, ...
    subject_type: str | None = None
    subject_id: str | None = None
    sitting: SittingScope | None = None
    camera: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _segment_ids_text(condition: object) -> Select[tuple[str]]:
    return select(cast(Segment.id, String)).where(condition)  # type: ignore[arg-type]


def entries_query(session: Session, wanted: EntryFilter) -> Select[tuple[LedgerEntry]]:
    """The entries matching `wanted`, not yet ordered or paged. A sitting matches the entries
    about it (exports, findings, review), the footage reads of its cameras that name it
    (playback, thumbnails) and the byte reads of its cameras' segments in its required
    interval; a camera matches its playback and thumbnail reads and its segments' entries."""
    query = select(LedgerEntry)
    for column, value in (
        (LedgerEntry.actor, wanted.actor),
        (LedgerEntry.action, wanted.action),
        (LedgerEntry.subject_type, wanted.subject_type),
        (LedgerEntry.subject_id, wanted.subject_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if wanted.kind is not None:
        query = query.where(LedgerEntry.action.startswith(f"{wanted.kind}.", autoescape=True))
    if wanted.since is not None:
        query = query.where(LedgerEntry.seq >= seq_from(session, wanted.since))
    if wanted.until is not None:
        query = query.where(LedgerEntry.seq < seq_from(session, wanted.until))
    if wanted.camera is not None:
        camera = session.scalar(select(Camera).where(Camera.code == wanted.camera))
        if camera is None:
            return query.where(false())
        query = query.where(
            or_(
                and_(LedgerEntry.subject_type == "camera", LedgerEntry.subject_id == camera.code),
                and_(
                    LedgerEntry.subject_type == "segment",
                    LedgerEntry.subject_id.in_(_segment_ids_text(Segment.camera_id == camera.id)),
                ),
            )
        )
    if wanted.sitting is not None:
        sitting = wanted.sitting
        named = f'"sitting":{canonical_json(sitting.code)}'
        query = query.where(
            or_(
                and_(LedgerEntry.subject_type == "sitting", LedgerEntry.subject_id == sitting.code),
                and_(
                    LedgerEntry.subject_type == "camera",
                    LedgerEntry.subject_id.in_(sitting.camera_codes),
                    LedgerEntry.details.contains(named, autoescape=True),
                ),
                and_(
                    LedgerEntry.subject_type == "segment",
                    LedgerEntry.subject_id.in_(
                        _segment_ids_text(
                            and_(
                                Segment.camera_id.in_(sitting.camera_ids),
                                Segment.starts_at < sitting.end,
                                Segment.ends_at > sitting.start,
                            )
                        )
                    ),
                ),
            )
        )
    return query
