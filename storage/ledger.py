"""The ledger (台账): an append-only hash chain over everything done to evidence.

Format (docs/ledger.md): entry_hash = SHA-256 of the canonical JSON of
{seq, recorded_at, actor, action, subject_type, subject_id, details, prev_hash}; the first
entry's prev_hash is 64 zeros. Appends run inside the caller's transaction, so an entry exists
exactly when the change it records was committed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from storage.models import LedgerEntry

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
