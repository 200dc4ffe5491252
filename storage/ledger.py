"""The ledger (台账): an append-only hash chain over everything done to evidence.

Format (docs/ledger.md): entry_hash = SHA-256 of the canonical JSON of
{seq, recorded_at, actor, action, subject_type, subject_id, details, prev_hash}; the first
entry's prev_hash is 64 zeros. Appends run inside the caller's transaction, so an entry exists
exactly when the change it records was committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, text
from sqlalchemy.orm import Session

from storage import merkle, tree
from storage.models import LedgerEntry

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
ENTRY_COLUMNS = (
    "seq",
    "recorded_at",
    "actor",
    "action",
    "subject_type",
    "subject_id",
    "details",
    "prev_hash",
    "entry_hash",
)
# Any fixed number: PostgreSQL's transaction-scoped advisory lock that serialises appenders.
_PG_LEDGER_LOCK = 0x45584C44


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    *,
    seq: int,
    recorded_at: datetime,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    details: str,
    prev_hash: str,
) -> str:
    payload = canonical_json(
        {
            "seq": seq,
            "recorded_at": format_instant(recorded_at),
            "actor": actor,
            "action": action,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "details": details,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Event:
    """One thing to record; `append_many` chains a batch of them in order."""

    actor: str
    action: str
    subject_type: str
    subject_id: str | int
    details: dict[str, Any] | None = None


def lock_head(session: Session) -> None:
    """Serialise with every other ledger writer until this transaction ends. PostgreSQL takes a
    transaction-scoped advisory lock (idempotent within it); SQLite writers already hold the
    database's write lock from BEGIN IMMEDIATE."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LEDGER_LOCK})


def append_many(
    session: Session, events: list[Event], *, recorded_at: datetime | None = None
) -> list[LedgerEntry]:
    """Chain the events after the current head, inside the caller's transaction.

    `recorded_at` never runs backwards against `seq`: the time is taken under the append lock,
    and a caller's earlier instant (taken before the lock, while another writer held it) is
    raised to the head's."""
    lock_head(session)
    head = session.execute(
        select(LedgerEntry.seq, LedgerEntry.entry_hash, LedgerEntry.recorded_at)
        .order_by(LedgerEntry.seq.desc())
        .limit(1)
    ).first()
    seq = head.seq if head else 0
    prev = head.entry_hash if head else GENESIS_HASH
    # Microseconds only: the stored value must round-trip exactly for the hash to verify.
    moment = (recorded_at or datetime.now(UTC)).astimezone(UTC)
    if head is not None and moment < head.recorded_at:
        moment = head.recorded_at
    entries = []
    for event in events:
        seq += 1
        detail_text = canonical_json(event.details or {})
        subject_id = str(event.subject_id)
        digest = entry_hash(
            seq=seq,
            recorded_at=moment,
            actor=event.actor,
            action=event.action,
            subject_type=event.subject_type,
            subject_id=subject_id,
            details=detail_text,
            prev_hash=prev,
        )
        entries.append(
            LedgerEntry(
                seq=seq,
                recorded_at=moment,
                actor=event.actor,
                action=event.action,
                subject_type=event.subject_type,
                subject_id=subject_id,
                details=detail_text,
                prev_hash=prev,
                entry_hash=digest,
            )
        )
        prev = digest
    # Core executemany, not the ORM unit of work: a purge batch appends hundreds at once.
    session.flush()
    session.execute(
        insert(LedgerEntry),
        [{column: getattr(entry, column) for column in ENTRY_COLUMNS} for entry in entries],
    )
    head_seq = head.seq if head else 0
    # The tree grows with the entries only when it holds exactly the entries before them. It is
    # behind while `build_stored_tree` catches up with an older ledger (it will add these), and
    # ahead only when entries were removed behind the triggers: then the tree keeps what was
    # committed, checkpoints refuse and `ledger verify` names the difference; ingest goes on.
    if entries and tree.stored_size(session) == head_seq:
        tree.extend(session, head_seq, [bytes.fromhex(entry.entry_hash) for entry in entries])
    return entries


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | int,
    details: dict[str, Any] | None = None,
    recorded_at: datetime | None = None,
) -> LedgerEntry:
    event = Event(actor, action, subject_type, subject_id, details)
    return append_many(session, [event], recorded_at=recorded_at)[0]


@dataclass(frozen=True)
class LedgerMismatch:
    seq: int
    reason: str


@dataclass(frozen=True)
class LedgerVerdict:
    entries: int
    head_hash: str
    mismatch: LedgerMismatch | None

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def entry_hash_batches(session: Session, batch: int) -> Iterator[Sequence[Row[tuple[int, str]]]]:
    """``(seq, entry_hash)`` of every entry in seq order, a keyset page at a time: what every
    linear pass over the leaves (verify, the checkpoint's rewrite check) reads."""
    last = 0
    while rows := session.execute(
        select(LedgerEntry.seq, LedgerEntry.entry_hash)
        .where(LedgerEntry.seq > last)
        .order_by(LedgerEntry.seq)
        .limit(batch)
    ).all():
        yield rows
        last = rows[-1].seq


def _iter_entries(session: Session, batch: int = 5000) -> Iterator[LedgerEntry]:
    last = 0
    while True:
        rows = session.scalars(
            select(LedgerEntry).where(LedgerEntry.seq > last).order_by(LedgerEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> LedgerVerdict:
    """Recompute the chain; report the first entry that is missing, edited or out of place."""
    expected_seq = 1
    prev = GENESIS_HASH
    count = 0
    for entry in _iter_entries(session):
        if entry.seq != expected_seq:
            return LedgerVerdict(
                count, prev, LedgerMismatch(expected_seq, f"entry {expected_seq} is missing")
            )
        if entry.prev_hash != prev:
            return LedgerVerdict(
                count,
                prev,
                LedgerMismatch(entry.seq, "prev_hash does not match the previous entry's hash"),
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
            return LedgerVerdict(
                count, prev, LedgerMismatch(entry.seq, "content does not match its entry_hash")
            )
        prev = entry.entry_hash
        expected_seq += 1
        count += 1
    return LedgerVerdict(count, prev, None)


class TreeBuildError(LookupError):
    """The stored tree cannot be built: an entry is missing or its hash is malformed."""


def _leaf_bytes(seq: int, digest: str) -> bytes:
    try:
        return bytes.fromhex(digest)
    except ValueError as exc:
        raise TreeBuildError(f"ledger entry {seq} has a malformed entry_hash") from exc


def _build_batch(session: Session, batch: int) -> tuple[int, int]:
    lock_head(session)
    size = tree.stored_size(session)
    head = session.scalar(select(func.max(LedgerEntry.seq))) or 0
    if size >= head:
        return size, head
    rows = session.execute(
        select(LedgerEntry.seq, LedgerEntry.entry_hash)
        .where(LedgerEntry.seq > size, LedgerEntry.seq <= size + batch)
        .order_by(LedgerEntry.seq)
    ).all()
    leaves = []
    for expected, (seq, digest) in enumerate(rows, start=size + 1):
        if seq != expected:
            raise TreeBuildError(
                f"ledger entry {expected} is missing; run `examvault ledger verify`"
            )
        leaves.append(_leaf_bytes(seq, digest))
    if len(leaves) < min(batch, head - size):
        raise TreeBuildError(f"ledger entry {size + len(leaves) + 1} is missing")
    tree.extend(session, size, leaves)
    return size + len(leaves), head


def build_stored_tree(
    run_write: Callable[[Callable[[Session], tuple[int, int]]], tuple[int, int]],
    *,
    batch: int = 20_000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Add to the stored tree the entries it does not hold yet, `batch` entries per committed
    transaction (under the append lock, so appends wait a batch at most), and return the tree's
    size. Killed midway, it loses one uncommitted batch at most: the next run starts from the
    stored tree's size, which is all it needs to resume."""
    while True:
        size, head = run_write(lambda session: _build_batch(session, batch))
        if progress is not None:
            progress(size, head)
        if size >= head:
            return size
        logger.info("ledger tree: %d of %d entries", size, head)


@dataclass(frozen=True)
class NodeMismatch:
    level: int
    position: int
    reason: str

    @property
    def name(self) -> str:
        first = self.position << self.level
        last = first + (1 << self.level) - 1
        covers = f"entry {first + 1}" if first == last else f"entries {first + 1}..{last + 1}"
        return f"node (level {self.level}, position {self.position}) over {covers}"


@dataclass(frozen=True)
class TreeVerdict:
    nodes: int  # stored nodes that matched
    mismatch: NodeMismatch | None

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def verify_stored_tree(session: Session, batch: int = 8192) -> TreeVerdict:
    """Recompute every node from the entries, in append order, and report the first one that is
    missing from the stored tree or differs from it, or a stored leaf beyond the last entry.
    Linear, for auditors; checkpoints and proofs only read the stored nodes."""
    accumulator = merkle.MerkleAccumulator()
    matched = 0
    for rows in entry_hash_batches(session, batch):
        expected: list[merkle.Node] = []
        for seq, digest in rows:
            if seq != accumulator.size + 1:
                # The chain check names the missing entry; nodes past a hole cannot be placed.
                break
            try:
                leaf = bytes.fromhex(digest)
            except ValueError:
                leaf = digest.encode("utf-8")  # never an honest leaf: its node will differ
            expected.extend(accumulator.append(leaf))
        ranges: dict[int, tuple[int, int]] = {}
        for node in expected:
            low, high = ranges.get(node.level, (node.position, node.position))
            ranges[node.level] = (min(low, node.position), max(high, node.position))
        stored = tree.read_range(session, ranges)
        for node in expected:
            found = stored.get((node.level, node.position))
            if found is None:
                return TreeVerdict(matched, NodeMismatch(node.level, node.position, "missing"))
            if found != node.digest:
                return TreeVerdict(
                    matched,
                    NodeMismatch(
                        node.level,
                        node.position,
                        f"stored {found.hex()}, recomputed from the entries {node.digest.hex()}",
                    ),
                )
            matched += 1
        if len(expected) == 0 or rows[-1].seq != accumulator.size:
            break
    size = tree.stored_size(session)
    if size > accumulator.size:
        return TreeVerdict(
            matched,
            NodeMismatch(
                0,
                accumulator.size,
                f"the stored tree holds {size} leaves but the ledger only {accumulator.size} "
                "entries in order: entries were removed",
            ),
        )
    return TreeVerdict(matched, None)
