"""How the retention purge is doing, for /metrics and the alerts on it: runs by how they ended,
when one last completed, and tombstoned blobs the store still holds (a refusal or a stopped run
leaves them for the next one).

Read by a thread of its own, like the ledger watch: `purge_runs` has a row per run (one a day
and its retries) and the pending tombstones are found by their own index, so a read stays
small however much evidence is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from services.background import BackgroundThread
from storage.db import Database
from storage.models import PurgeRun, Tombstone


@dataclass(frozen=True)
class PurgeFigures:
    runs: dict[str, int]  # by status: running, completed, stopped, interrupted
    last_completed_at: datetime | None
    blobs_pending_deletion: int


class PurgeWatch(BackgroundThread):
    """Reads `PurgeFigures` every `interval` seconds; `latest` is None until the first read."""

    name = "purge-watch"

    def __init__(self, db: Database, interval: float) -> None:
        super().__init__()
        self.db = db
        self.interval = interval
        self.latest: PurgeFigures | None = None

    def run_once(self) -> float:
        self.latest = self.read()
        return self.interval

    def read(self) -> PurgeFigures:
        with self.db.read() as session:
            runs = {
                status: count
                for status, count in session.execute(
                    select(PurgeRun.status, func.count()).group_by(PurgeRun.status)
                )
            }
            last_completed = session.scalar(
                select(func.max(PurgeRun.finished_at)).where(PurgeRun.status == "completed")
            )
            pending = session.scalar(
                select(func.count())
                .select_from(Tombstone)
                .where(Tombstone.blob_deleted_at.is_(None))
            )
        return PurgeFigures(runs, last_completed, pending or 0)
