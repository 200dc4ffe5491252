"""Fixtures the retention tests share: the instant a test starts, the `examvault` command
pointed at the test's database, and the services on an S3 endpoint (moto's server)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from services.context import Services
from services.registry import import_registry
from services.settings import Settings
from storage.stores import init_blob_store
from tests.conftest import REGISTRY
from tests.s3outage import switchable_s3  # noqa: F401  (fixture)
from tests.s3server import ACCESS_KEY, SECRET_KEY


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """Point `examvault` (services.cli.main) at the same data dir and database as `registered`."""
    for name in ("STORAGE_URL", "S3_ACCESS_KEY", "S3_SECRET_KEY", "RETENTION_YEARS"):
        monkeypatch.delenv(f"EXAMVAULT_{name}", raising=False)
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", settings.resolved_database_url)


@pytest.fixture
def s3_services(settings: Settings, s3_endpoint: str) -> Iterator[Services]:
    settings.storage_url = f"s3://ev-{uuid.uuid4().hex[:12]}?endpoint={s3_endpoint}&secure=false"
    settings.s3_access_key = ACCESS_KEY
    settings.s3_secret_key = SECRET_KEY
    init_blob_store(settings.storage_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    built = Services.from_settings(settings)
    built.db.run_write(lambda session: import_registry(session, json.dumps(REGISTRY), actor="t"))
    yield built
    built.close()
