"""The pipeline with evidence on S3 (moto's server as a real endpoint): the object is locked
COMPLIANCE until at least the expiry, read back before the ingest is acknowledged; a store that
drops the lock fails the ingest and the file stays in the spool to be retried."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from services.context import Services
from services.demo.footage import classroom_scene
from services.ingest.pipeline import Arrival, IngestPipeline, Outcome
from services.registry import import_registry
from services.retention.purge import segment_keys
from services.settings import Settings
from storage.blobs import BlobStoreError
from storage.models import LedgerEntry, QuarantineRecord, Segment
from storage.s3 import MiB, S3BlobStore, _ObjectState
from storage.stores import init_blob_store
from tests.conftest import CAMERA_FRONT, REGISTRY, VideoFactory
from tests.s3server import ACCESS_KEY, SECRET_KEY

NAME = "20261124T090000+0800.mp4"


@pytest.fixture
def s3_settings(settings: Settings, s3_endpoint: str) -> Settings:
    settings.storage_url = f"s3://ev-{uuid.uuid4().hex[:12]}?endpoint={s3_endpoint}&secure=false"
    settings.s3_access_key = ACCESS_KEY
    settings.s3_secret_key = SECRET_KEY
    init_blob_store(settings.storage_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    return settings


@pytest.fixture
def s3_services(s3_settings: Settings) -> Iterator[Services]:
    built = Services.from_settings(s3_settings)
    built.db.run_write(lambda session: import_registry(session, json.dumps(REGISTRY), actor="t"))
    yield built
    built.close()


def _arrival(services: Services, data: bytes) -> Arrival:
    folder = services.settings.resolved_spool_dir / CAMERA_FRONT
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / NAME
    path.write_bytes(data)
    return Arrival(
        path=path,
        camera_code=CAMERA_FRONT,
        file_name=NAME,
        source="spool",
        received_at=datetime(2026, 11, 24, 1, 10, tzinfo=UTC),
    )


def test_segment_on_s3_is_locked_until_its_expiry(
    s3_services: Services, make_video: VideoFactory
) -> None:
    data = make_video("a.mp4").read_bytes()
    result = s3_services.pipeline.ingest(_arrival(s3_services, data))
    assert result.outcome is Outcome.STORED and result.segment is not None
    segment = result.segment
    info = s3_services.store.stat(segment.blob_key)
    assert info is not None and info.retain_until is not None
    assert info.retain_until >= segment.expires_at
    assert (
        hashlib.sha256(b"".join(s3_services.store.read(segment.blob_key))).hexdigest()
        == hashlib.sha256(data).hexdigest()
    )
    with s3_services.db.read() as session:
        entry = session.scalar(select(LedgerEntry).where(LedgerEntry.action == "segment.ingested"))
        assert entry is not None
        assert json.loads(entry.details)["object_lock_until"] is not None


class _LockDroppingStore(S3BlobStore):
    """Simulates an S3 service that accepts lock headers and silently ignores them."""

    def _head(self, key: str, *, version_id: str | None = None) -> _ObjectState | None:
        state = super()._head(key, version_id=version_id)
        return (
            None if state is None else dataclasses.replace(state, lock_mode=None, retain_until=None)
        )


def test_missing_lock_fails_the_ingest_and_keeps_the_file(
    s3_services: Services, s3_endpoint: str, make_video: VideoFactory
) -> None:
    assert isinstance(s3_services.store, S3BlobStore)
    dropping = _LockDroppingStore(
        bucket=s3_services.store.bucket,
        endpoint=s3_endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
    )
    pipeline = IngestPipeline(
        db=s3_services.db,
        store=dropping,
        quarantine=s3_services.quarantine,
        settings=s3_services.settings,
    )
    arrival = _arrival(s3_services, make_video("a.mp4").read_bytes())
    with pytest.raises(BlobStoreError):
        pipeline.ingest(arrival)
    assert arrival.path.exists()
    with s3_services.db.read() as session:
        assert session.scalars(select(QuarantineRecord)).all() == []
        assert (
            session.scalar(select(LedgerEntry).where(LedgerEntry.action == "segment.ingested"))
            is None
        )

    # With a store that keeps its locks, the retry completes the ingest.
    assert s3_services.pipeline.ingest(arrival).outcome is Outcome.STORED
    assert not arrival.path.exists()


def test_a_multipart_upload_stored_wrong_fails_the_ingest_and_the_retry_stores_it(
    s3_services: Services,
    s3_endpoint: str,
    make_video: VideoFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(s3_services.store, S3BlobStore)
    store = S3BlobStore(
        bucket=s3_services.store.bucket,
        endpoint=s3_endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
        multipart_threshold=5 * MiB + 1,
    )
    pipeline = IngestPipeline(
        db=s3_services.db,
        store=store,
        quarantine=s3_services.quarantine,
        settings=s3_services.settings,
    )
    data = make_video(
        "large.mp4",
        seconds=4,
        width=640,
        height=480,
        scene=classroom_scene(640, 480, seed=1),
        bit_rate=30_000_000,
    ).read_bytes()
    assert len(data) > 5 * MiB + 1
    arrival = _arrival(s3_services, data)
    # A fake at the edge (the client's part upload), the one way to make the stored bytes differ
    # from the ones read: the last part arrives with one byte flipped.
    upload_part = store._client._upload_part

    def corrupt_last_part(*args: object) -> str:
        bucket, name, part, headers, upload_id, number = args
        assert isinstance(part, bytes)
        if number == 2:
            part = part[:-1] + bytes([part[-1] ^ 0xFF])
        return upload_part(bucket, name, part, headers, upload_id, number)

    monkeypatch.setattr(store._client, "_upload_part", corrupt_last_part)
    with pytest.raises(BlobStoreError, match="read back with SHA-256"):
        pipeline.ingest(arrival)
    assert arrival.path.exists()
    assert segment_keys(store) == set()
    with s3_services.db.read() as session:
        assert session.scalars(select(Segment)).all() == []

    monkeypatch.undo()
    result = pipeline.ingest(arrival)
    assert result.outcome is Outcome.STORED and result.segment is not None
    stored = b"".join(store.read(result.segment.blob_key))
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    assert not arrival.path.exists()
