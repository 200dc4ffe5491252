"""How far the ledger's signatures lag behind its entries, for /metrics and the alerts on them:
the latest signed checkpoint, the oldest entry no checkpoint covers yet, and each configured
witness's newest cosignature and the oldest checkpoint it has not cosigned.

Read by a thread of its own every readiness interval with a few primary-key lookups, never a
pass over the ledger, and answered from the last result at scrape time. The figures are
instants, not ages: /metrics subtracts them from the clock when it is scraped, so an age keeps
growing while nothing new is signed, even if this thread or the database is stuck.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from services.background import BackgroundThread
from storage.db import Database
from storage.models import LedgerCheckpointRecord, LedgerCosignature, LedgerEntry


@dataclass(frozen=True)
class WitnessFigures:
    cosigned_size: int  # the newest checkpoint it cosigned; 0 when none yet
    cosigned_at: datetime | None  # when the centre kept that cosignature (the centre's clock)
    # When the oldest recorded checkpoint after `cosigned_size` was signed: how long the
    # witness has kept the ledger waiting. None when it cosigned the newest checkpoint.
    waiting_since: datetime | None


@dataclass(frozen=True)
class LedgerFigures:
    checkpoint_size: int  # entries the latest recorded checkpoint covers; 0 when none
    checkpoint_signed_at: datetime | None
    # recorded_at of the oldest entry no checkpoint covers; None when the latest covers all.
    unsigned_since: datetime | None
    witnesses: dict[str, WitnessFigures]  # by witness key_id


class LedgerWatch(BackgroundThread):
    """Reads `LedgerFigures` every `interval` seconds; `latest` is None until the first read."""

    name = "ledger-watch"

    def __init__(self, db: Database, witness_key_ids: tuple[str, ...], interval: float) -> None:
        super().__init__()
        self.db = db
        self.witness_key_ids = witness_key_ids
        self.interval = interval
        self.latest: LedgerFigures | None = None
        # Per witness, the checkpoint size of the newest cosignature found so far: cosignatures
        # are only ever added, so the next look starts there instead of at the table's end.
        self._floors: dict[str, int] = {}

    def run_once(self) -> float:
        self.latest = self.read()
        return self.interval

    def read(self) -> LedgerFigures:
        with self.db.read() as session:
            latest = session.execute(
                select(LedgerCheckpointRecord.size, LedgerCheckpointRecord.signed_at)
                .order_by(LedgerCheckpointRecord.size.desc())
                .limit(1)
            ).first()
            size, signed_at = (latest.size, latest.signed_at) if latest else (0, None)
            # Entries get seq head + 1 and a recorded_at never earlier than the previous one's,
            # so the entry right after the checkpoint is the oldest it does not cover.
            unsigned_since = session.scalar(
                select(LedgerEntry.recorded_at).where(LedgerEntry.seq == size + 1)
            )
            witnesses = {key_id: self._witness(session, key_id) for key_id in self.witness_key_ids}
        return LedgerFigures(size, signed_at, unsigned_since, witnesses)

    def _witness(self, session: Session, key_id: str) -> WitnessFigures:
        # A walk down the (checkpoint_size, witness_key_id) key from the newest checkpoint to
        # the floor: a handful of rows for a witness that keeps up. One that never cosigned
        # is looked for over the whole (small: one row per checkpoint and witness) table.
        floor = self._floors.get(key_id, 0)
        newest = self._newest_cosignature(session, key_id, floor)
        if newest is None and floor > 0:
            # The row it found before is gone: an older backup was restored under this process.
            newest = self._newest_cosignature(session, key_id, 0)
        cosigned_size, cosigned_at = (
            (newest.checkpoint_size, newest.recorded_at) if newest else (0, None)
        )
        self._floors[key_id] = cosigned_size
        waiting_since = session.scalar(
            select(LedgerCheckpointRecord.signed_at)
            .where(LedgerCheckpointRecord.size > cosigned_size)
            .order_by(LedgerCheckpointRecord.size)
            .limit(1)
        )
        return WitnessFigures(cosigned_size, cosigned_at, waiting_since)

    @staticmethod
    def _newest_cosignature(session: Session, key_id: str, floor: int) -> Row[Any] | None:
        return session.execute(
            select(LedgerCosignature.checkpoint_size, LedgerCosignature.recorded_at)
            .where(
                LedgerCosignature.witness_key_id == key_id,
                LedgerCosignature.checkpoint_size >= floor,
            )
            .order_by(LedgerCosignature.checkpoint_size.desc())
            .limit(1)
        ).first()
