"""The wiring: one place that turns settings into a database, a blob store and a pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from services.coverage.schedule import ScheduleSummary, SittingChanged, SittingRow, apply_schedule
from services.coverage.verdicts import VerdictSweeper, refresh_span
from services.health.checker import HealthChecker, HealthWorker
from services.ingest.pipeline import IngestPipeline, IngestResult, Outcome
from services.ingest.quarantine import Quarantine, QuarantineBounds
from services.ledger.checkpoints import CheckpointWriter
from services.operations.metrics import OperationsMetrics
from services.operations.readiness import Readiness
from services.retention.holds import hold_new_segment, widen_for_moved_sitting
from services.retention.purge import PurgeScheduler, extend_expiries
from services.settings import Settings
from services.witness.cosignatures import parse_witnesses
from services.witness.cosigning import WitnessCosigner
from storage.blobs import BlobStore
from storage.db import Database
from storage.models import Sitting
from storage.s3 import Timeouts
from storage.stores import open_blob_store

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from services.background import BackgroundJob


@dataclass
class Services:
    settings: Settings
    db: Database
    store: BlobStore
    quarantine: Quarantine
    pipeline: IngestPipeline = field(init=False)
    health: HealthChecker = field(init=False)
    readiness: Readiness = field(init=False)
    metrics: OperationsMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.pipeline = IngestPipeline(
            db=self.db, store=self.store, quarantine=self.quarantine, settings=self.settings
        )
        self.readiness = Readiness(
            self.settings,
            self.db,
            self.store,
            witness_key_ids=tuple(
                witness.key_id for witness in parse_witnesses(self.settings.witnesses)
            ),
        )
        self.metrics = OperationsMetrics(self.readiness)
        self.pipeline.failure_listeners.append(self.readiness.note_failure)
        self.pipeline.listeners.append(self._judge_coverage)
        self.pipeline.listeners.append(self._hold_new_footage)
        self.health = HealthChecker(db=self.db, store=self.store, settings=self.settings)
        # Schedule changes reach retention through here: coverage never imports it.
        self.schedule_listeners: list[SittingChanged] = [self._extend_expiries, self._widen_holds]

    def background_jobs(
        self, *, scheduled_purge: bool = False, queued: bool = False
    ) -> list[BackgroundJob]:
        """What runs beside ingest: health checks, the verdict sweep, and (in `serve` only,
        when EXAMVAULT_PURGE_SCHEDULE is set) the daily purge. `queued`: the PostgreSQL job
        queue's workers do all of that (services/jobs.py); only the witness cosigner stays."""
        jobs: list[BackgroundJob] = []
        if not queued:
            jobs += [
                VerdictSweeper(self.db, self.settings),
                CheckpointWriter(
                    self.db,
                    self.store,
                    self.settings.data_dir,
                    every_entries=self.settings.ledger_checkpoint_entries,
                    every_seconds=self.settings.ledger_checkpoint_seconds,
                ),
            ]
        witnesses = parse_witnesses(self.settings.witnesses)
        if witnesses:
            jobs.append(
                WitnessCosigner(
                    self.db,
                    self.store,
                    witnesses,
                    timeout=self.settings.witness_timeout_seconds,
                    retry_seconds=self.settings.witness_retry_seconds,
                )
            )
        if queued:
            return jobs
        if scheduled_purge and self.settings.purge_schedule:
            jobs.append(PurgeScheduler(self.db, self.store, self.settings))
        if self.settings.health_checks:
            health = HealthWorker(self.health)

            def check_stored(result: IngestResult) -> None:
                if result.outcome is Outcome.STORED and result.segment is not None:
                    health.enqueue(result.segment.id)

            self.pipeline.listeners.append(check_stored)
            jobs.append(health)
        return jobs

    def import_schedule(
        self, session: Session, rows: list[SittingRow], *, actor: str, zone_assumed: list[str]
    ) -> ScheduleSummary:
        """Upsert sittings inside the caller's transaction; each new or moved one extends the
        expiry of the footage it now covers, and is judged at once."""
        return apply_schedule(
            session,
            rows,
            self.settings,
            actor=actor,
            zone_assumed=zone_assumed,
            on_change=self.schedule_listeners,
        )

    def _extend_expiries(self, session: Session, sitting: Sitting, actor: str) -> None:
        extend_expiries(session, self.store, self.settings, sitting, actor=actor)

    def _widen_holds(self, session: Session, sitting: Sitting, actor: str) -> None:
        """A held sitting that moved: its holds cover the old and the new scope."""
        widen_for_moved_sitting(session, self.store, self.settings, sitting, actor=actor)

    def _hold_new_footage(self, result: IngestResult) -> None:
        """Footage stored inside an active hold's scope gets the store's legal hold too."""
        if result.outcome is Outcome.STORED and result.segment is not None:
            hold_new_segment(self.db, self.store, result.segment.id, actor="retention")

    def _judge_coverage(self, result: IngestResult) -> None:
        """Late footage is normal: re-judge every sitting the stored or rejected file touches."""
        if result.span is None or result.camera_code is None:
            return
        what = (
            f"segment {result.segment.id}"
            if result.segment
            else f"quarantine {result.quarantine_id}"
        )
        refresh_span(
            self.db,
            self.settings,
            camera_code=result.camera_code,
            start=result.span[0],
            end=result.span[1],
            actor="coverage",
            reason=f"{result.outcome.value}: {what}",
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, migrate: bool = True, store_may_be_down: bool = False
    ) -> Services:
        """`store_may_be_down` (serve, worker): start even if the object store does not
        answer; it is checked before the first write and readiness reports it meanwhile."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(
            settings.resolved_database_url,
            connect_timeout_seconds=settings.database_connect_timeout_seconds,
            pool_timeout_seconds=settings.database_pool_timeout_seconds,
        )
        if migrate:
            db.upgrade()
        store = open_blob_store(
            settings.resolved_storage_url,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            timeouts=Timeouts(
                connect_seconds=settings.s3_connect_timeout_seconds,
                read_seconds=settings.s3_read_timeout_seconds,
                retries=settings.s3_retries,
            ),
            allow_unreachable=store_may_be_down,
        )
        return cls(
            settings=settings,
            db=db,
            store=store,
            quarantine=Quarantine(settings.quarantine_dir, db, quarantine_bounds(settings)),
        )

    def close(self) -> None:
        self.db.dispose()


def quarantine_bounds(settings: Settings) -> QuarantineBounds:
    return QuarantineBounds(
        budget_bytes=settings.quarantine_budget_bytes,
        sample_bytes=settings.quarantine_sample_bytes,
        retention=timedelta(days=settings.quarantine_retention_days),
        # Twice the readiness floor: rejected files alone never make the server unready, and
        # real segments keep a floor's worth of room after the quarantine stops keeping bytes.
        keep_free_bytes=2 * settings.min_free_bytes,
    )
