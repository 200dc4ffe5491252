"""`examvault storage init` is the only thing that creates the bucket: every other command and
/readyz refuse a missing one loudly (against moto's real S3 server)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from minio import Minio

from services.api.app import create_app
from services.cli import main
from services.context import Services
from services.settings import Settings
from storage.stores import init_blob_store
from tests.s3server import ACCESS_KEY, SECRET_KEY

SCRAPER = "storage-init-scraper-0123456789"


@pytest.fixture
def raw_client(s3_endpoint: str) -> Minio:
    return Minio(endpoint=s3_endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)


@pytest.fixture
def bucket_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, s3_endpoint: str
) -> str:
    """The EXAMVAULT_* of a deployment whose bucket does not exist yet; returns its name."""
    bucket = f"ev-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", database_url)
    monkeypatch.setenv(
        "EXAMVAULT_STORAGE_URL", f"s3://{bucket}?endpoint={s3_endpoint}&secure=false"
    )
    monkeypatch.setenv("EXAMVAULT_S3_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("EXAMVAULT_S3_SECRET_KEY", SECRET_KEY)
    return bucket


def test_a_read_only_command_on_a_missing_bucket_exits_1_and_creates_nothing(
    bucket_env: str, raw_client: Minio, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["retention", "reconcile"]) == 1
    error = capsys.readouterr().err
    assert repr(bucket_env) in error and "examvault storage init" in error
    assert "Traceback" not in error
    assert not raw_client.bucket_exists(bucket_name=bucket_env)


def test_storage_init_creates_a_locked_bucket_once_then_commands_work(
    bucket_env: str, raw_client: Minio, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["storage", "init"]) == 0
    assert "created" in capsys.readouterr().out
    assert raw_client.bucket_exists(bucket_name=bucket_env)
    assert raw_client.get_object_lock_config(bucket_name=bucket_env) is not None

    assert main(["storage", "init"]) == 0  # idempotent
    assert "already set up" in capsys.readouterr().out
    assert main(["retention", "reconcile"]) == 0


def test_storage_init_refuses_a_bucket_without_object_lock(
    bucket_env: str, raw_client: Minio, capsys: pytest.CaptureFixture[str]
) -> None:
    raw_client.make_bucket(bucket_name=bucket_env)
    assert main(["storage", "init"]) == 1
    assert "no Object Lock" in capsys.readouterr().err


def test_readyz_is_not_ready_once_the_bucket_is_gone(
    settings: Settings, s3_endpoint: str, raw_client: Minio
) -> None:
    bucket = f"ev-{uuid.uuid4().hex[:12]}"
    settings.storage_url = f"s3://{bucket}?endpoint={s3_endpoint}&secure=false"
    settings.s3_access_key, settings.s3_secret_key = ACCESS_KEY, SECRET_KEY
    # /readyz answers from a background check: make it frequent, and wait for it below.
    settings.readiness_interval_seconds = 0.1
    settings.metrics_token = SCRAPER  # the problems are shown only to the operator's scraper
    init_blob_store(settings.storage_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    services = Services.from_settings(settings)
    as_scraper = {"Authorization": f"Bearer {SCRAPER}"}
    try:
        with TestClient(create_app(services)) as client:
            assert client.get("/readyz").status_code == 200
            raw_client.remove_bucket(bucket_name=bucket)  # the store wiped under a running server
            deadline = time.monotonic() + 10
            while (response := client.get("/readyz", headers=as_scraper)).status_code == 200:
                assert time.monotonic() < deadline, "/readyz still ready 10 s after the wipe"
                time.sleep(0.1)
    finally:
        services.close()
    assert response.status_code == 503
    (problem,) = response.json()["problems"]
    assert repr(bucket) in problem and "examvault storage init" in problem
    assert not raw_client.bucket_exists(bucket_name=bucket)
