"""The wiring: one place that turns settings into a database, a blob store and a pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.ingest.pipeline import IngestPipeline
from services.ingest.quarantine import Quarantine
from services.settings import Settings
from storage.blobs import BlobStore, open_blob_store
from storage.db import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    store: BlobStore
    quarantine: Quarantine
    pipeline: IngestPipeline = field(init=False)

    def __post_init__(self) -> None:
        self.pipeline = IngestPipeline(
            db=self.db, store=self.store, quarantine=self.quarantine, settings=self.settings
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
