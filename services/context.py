"""The wiring: one place that turns settings into a database, a blob store and a pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.checkpoints import CheckpointWriter
from services.health_checks import HealthChecker, HealthWorker
from services.ingest.pipeline import IngestPipeline, IngestResult
from services.ingest.quarantine import Quarantine
from services.purge import PurgeScheduler
from services.settings import Settings
from services.sittings import VerdictSweeper, refresh_span
from storage.blobs import BlobStore, open_blob_store
from storage.db import Database

if TYPE_CHECKING:
    from services.api.app import BackgroundJob


@dataclass
class Services:
    settings: Settings
    db: Database
    store: BlobStore
    quarantine: Quarantine
    pipeline: IngestPipeline = field(init=False)
    health: HealthChecker = field(init=False)

    def __post_init__(self) -> None:
        self.pipeline = IngestPipeline(
            db=self.db, store=self.store, quarantine=self.quarantine, settings=self.settings
        )
        self.pipeline.listeners.append(self._judge_coverage)
        self.health = HealthChecker(db=self.db, store=self.store, settings=self.settings)

    def background_jobs(self, *, scheduled_purge: bool = False) -> list[BackgroundJob]:
        """What runs beside ingest: health checks, the verdict sweep, and (in `serve` only,
        when EXAMVAULT_PURGE_SCHEDULE is set) the daily purge."""
        jobs: list[BackgroundJob] = [
            VerdictSweeper(self.db, self.settings),
            CheckpointWriter(self.db, self.store, self.settings.data_dir),
        ]
        if scheduled_purge and self.settings.purge_schedule:
            jobs.append(PurgeScheduler(self.db, self.store, self.settings))
        if self.settings.health_checks:
            health = HealthWorker(self.health)
            self.pipeline.listeners.append(health.listen)
            jobs.append(health)
        return jobs

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
    def from_settings(cls, settings: Settings, *, migrate: bool = True) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        if migrate:
            db.upgrade()
        store = open_blob_store(
            settings.resolved_storage_url,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
        )
        return cls(
            settings=settings,
            db=db,
            store=store,
            quarantine=Quarantine(settings.quarantine_dir, db),
        )

    def close(self) -> None:
        self.db.dispose()
