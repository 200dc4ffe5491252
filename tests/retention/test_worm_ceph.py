"""The WORM promises proven on a real engine, Ceph RGW (tests/ceph.py): a locked object cannot
be purged before its retain-until, a legal hold blocks deletion, a retention cannot be
shortened, and the purge and reconcile say what really happened.

examvault checks locks itself before it asks the store (storage/s3.py), so a refusal by
examvault alone would prove nothing about the store. Here the purge and the retention change go
through a `_LockBlindStore`: the same S3 client on the same bucket, whose own view of locks and
holds is blanked, as if examvault's checks were wrong (a clock ahead of the store's, a hold
placed with the store's own tools). The only guard left is RGW, and the tests assert that it
holds, and that examvault records the refusal instead of a deletion. What the store really
holds is then read with an ordinary S3BlobStore and a bare client.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.retention import Retention
from sqlalchemy import select, update

from services.cli import main
from services.context import Services
from services.registry import import_registry
from services.retention.purge import COMPLETED, STORE_FAILURES, execute_purge, reconcile
from services.settings import Settings
from storage.blobs import WormViolation
from storage.models import PurgeRun, Segment, Tombstone
from storage.s3 import S3BlobStore, _ObjectState
from storage.stores import init_blob_store
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY
from tests.retention.test_purge import T0, MadeSegment, SegmentSpec, make_segments
from tests.s3server import ACCESS_KEY, SECRET_KEY

pytestmark = pytest.mark.ceph

SLOT = timedelta(minutes=10)


class _LockBlindStore(S3BlobStore):
    """examvault's S3 store with its own lock checks blinded: HEAD reports no lock and no hold,
    so `delete` and `extend_retention` go straight to the store's own rules."""

    def _head(self, key: str, *, version_id: str | None = None) -> _ObjectState | None:
        state = super()._head(key, version_id=version_id)
        if state is None:
            return None
        return dataclasses.replace(state, lock_mode=None, retain_until=None, legal_hold=False)


@pytest.fixture
def ceph_services(settings: Settings, ceph_endpoint: str) -> Iterator[Services]:
    settings.storage_url = f"s3://ev-{uuid.uuid4().hex[:12]}?endpoint={ceph_endpoint}&secure=false"
    settings.s3_access_key, settings.s3_secret_key = ACCESS_KEY, SECRET_KEY
    init_blob_store(settings.storage_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    built = Services.from_settings(settings)
    built.db.run_write(lambda session: import_registry(session, json.dumps(REGISTRY), actor="t"))
    yield built
    built.close()


@pytest.fixture
def blind_store(ceph_services: Services, ceph_endpoint: str) -> S3BlobStore:
    store = ceph_services.store
    assert isinstance(store, S3BlobStore)
    return _LockBlindStore(
        bucket=store.bucket,
        endpoint=ceph_endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
    )


@pytest.fixture
def raw_client(ceph_endpoint: str) -> Minio:
    return Minio(endpoint=ceph_endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)


@pytest.fixture
def ceph_cli_env(monkeypatch: pytest.MonkeyPatch, ceph_services: Services) -> None:
    """Point `examvault` at the same data dir, database and bucket as `ceph_services`."""
    settings = ceph_services.settings
    monkeypatch.delenv("EXAMVAULT_RETENTION_YEARS", raising=False)
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("EXAMVAULT_STORAGE_URL", str(settings.storage_url))
    monkeypatch.setenv("EXAMVAULT_S3_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("EXAMVAULT_S3_SECRET_KEY", SECRET_KEY)


def _segments(services: Services, tmp_path: Path, expiries: list[datetime]) -> list[MadeSegment]:
    cameras = (CAMERA_FRONT, CAMERA_BACK)
    specs = [
        SegmentSpec(cameras[n % 2], T0 + n * SLOT, T0 + (n + 1) * SLOT, expires)
        for n, expires in enumerate(expiries)
    ]
    return make_segments(services, specs, tmp_path / "blobs")


def _expire_rows(services: Services, segments: list[MadeSegment], expired: datetime) -> None:
    """The database says these segments expired, while the store's locks run on: what a row
    whose expiry was computed on a clock ahead of the store's would look like."""
    with services.db.write() as session:
        session.execute(
            update(Segment)
            .where(Segment.id.in_([segment.id for segment in segments]))
            .values(expires_at=expired)
        )


def _sleep_past(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.5)


def _versions(client: Minio, bucket: str, key: str) -> list[str | None]:
    return [
        item.version_id
        for item in client.list_objects(
            bucket_name=bucket, prefix=key, recursive=True, include_version=True
        )
        if item.object_name == key and not item.is_delete_marker
    ]


def _assert_stored_as_made(services: Services, segment: MadeSegment) -> None:
    """The object is still there and still holds the bytes it was made with."""
    content = b"".join(services.store.read(segment.blob_key))
    assert hashlib.sha256(content).hexdigest() == segment.sha256


def _tombstones(services: Services, run_id: str) -> list[tuple[int, datetime | None]]:
    with services.db.read() as session:
        rows = session.execute(
            select(Tombstone.segment_id, Tombstone.blob_deleted_at)
            .where(Tombstone.run_id == run_id)
            .order_by(Tombstone.segment_id)
        )
        return [(row.segment_id, row.blob_deleted_at) for row in rows]


def test_rgw_refuses_a_purge_of_locked_objects_and_the_purge_records_no_deletion(
    ceph_services: Services,
    blind_store: S3BlobStore,
    raw_client: Minio,
    tmp_path: Path,
    ceph_cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Rows expired, objects locked for a day: the purge (blind to the locks) asks RGW to
    delete each version and RGW refuses. The run tombstones the segments as its rule says,
    but records no deleted bytes and leaves every blob for the next run; it completes rather
    than stopping, because a refusal is the store answering (three refusals in a row would
    trip the circuit breaker if they counted as failures). Reconcile and the store agree:
    each object is present, COMPLIANCE-locked until the date it was given.

    Fails if the store deleted a locked version (bytes, version or lock gone), or if examvault
    counted a refused deletion as done or as an outage (before RGW's AccessDenied was read as
    a WormViolation, this run stopped: "the blob store failed 3 times in a row"). moto refuses
    these deletions too (the Object Lock rule it does enforce), so this passes there as well."""
    services = ceph_services
    locked_until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    made = _segments(services, tmp_path, [locked_until] * STORE_FAILURES)
    _expire_rows(services, made, datetime.now(UTC) - timedelta(days=1))

    result = execute_purge(services.db, blind_store, services.settings, actor="test")

    assert result.status == COMPLETED, result.stop_reason
    assert (result.planned, result.purged, result.bytes) == (len(made), len(made), 0)
    assert result.blobs_left == len(made)
    assert _tombstones(services, result.run_id) == [(segment.id, None) for segment in made]
    with services.db.read() as session:
        run = session.get_one(PurgeRun, result.run_id)
        assert (run.status, run.purged, run.purged_bytes) == (COMPLETED, len(made), 0)
    for segment in made:
        _assert_stored_as_made(services, segment)
        info = services.store.stat(segment.blob_key)
        assert info is not None and info.retain_until == locked_until and not info.legal_hold
        headers = raw_client.stat_object(
            bucket_name=blind_store.bucket, object_name=segment.blob_key
        ).metadata
        assert headers["x-amz-object-lock-mode"] == "COMPLIANCE"
        assert len(_versions(raw_client, blind_store.bucket, segment.blob_key)) == 1

    report = reconcile(services.db, services.store).as_json()
    assert report["tombstoned_blob_present"] == sorted(segment.id for segment in made)
    assert report["missing_before_expiry"] == report["missing_after_expiry"] == []
    assert report["evidence_lost"] is False
    capsys.readouterr()
    assert main(["retention", "reconcile", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == report

    # The next run, by examvault's own checks this time, still deletes nothing and says so.
    assert main(["retention", "purge", "--execute", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["finished_from_earlier_runs"] == 0
    assert summary["blobs_left_for_next_run"] == len(made)


def test_a_legal_hold_on_the_object_blocks_its_deletion_after_the_retention_ran_out(
    ceph_services: Services,
    blind_store: S3BlobStore,
    raw_client: Minio,
    tmp_path: Path,
) -> None:
    """A legal hold set on the object with the store's own tools (examvault's database knows
    nothing of it), and a two-second lock that has run out: RGW refuses the purge's delete,
    and the purge records the blob as still stored. Once the hold is released at the store,
    the next run finishes the deletion: the refusal was the hold, nothing else.

    Fails if the store deleted a held version, or examvault recorded a refused one as gone.
    moto enforces legal holds on delete too, so this passes there as well."""
    services = ceph_services
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    (segment,) = _segments(services, tmp_path, [soon])
    raw_client.enable_object_legal_hold(
        bucket_name=blind_store.bucket, object_name=segment.blob_key
    )
    _sleep_past(soon)

    refused = execute_purge(services.db, blind_store, services.settings, actor="test")

    assert (refused.status, refused.purged, refused.bytes) == (COMPLETED, 1, 0)
    assert refused.blobs_left == 1
    assert _tombstones(services, refused.run_id) == [(segment.id, None)]
    _assert_stored_as_made(services, segment)
    info = services.store.stat(segment.blob_key)
    assert info is not None and info.legal_hold
    assert info.retain_until is not None and info.retain_until <= datetime.now(UTC)
    report = reconcile(services.db, services.store)
    assert report.tombstoned_blob_present == [segment.id] and not report.evidence_lost

    raw_client.disable_object_legal_hold(
        bucket_name=blind_store.bucket, object_name=segment.blob_key
    )
    finished = execute_purge(services.db, blind_store, services.settings, actor="test")

    assert (finished.finished_leftovers, finished.finished_bytes) == (1, segment.size)
    assert finished.blobs_left == 0
    assert services.store.stat(segment.blob_key) is None
    assert _versions(raw_client, blind_store.bucket, segment.blob_key) == []
    assert reconcile(services.db, services.store).as_json()["tombstoned_blob_present"] == []


def test_rgw_refuses_to_shorten_a_retention_and_the_lock_reads_back_as_stored(
    ceph_services: Services, blind_store: S3BlobStore, raw_client: Minio, tmp_path: Path
) -> None:
    """Moving a COMPLIANCE lock earlier, by examvault blind to the lock and by a bare client:
    RGW refuses both (AccessDenied, which examvault reports as a WormViolation), and the lock
    reads back as stored. Extending still works.

    Fails against moto, which accepts the shorter date (examvault's own check is what stops
    it there: tried, this test fails on moto); fails if the store shortened the lock."""
    services = ceph_services
    locked_until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    (segment,) = _segments(services, tmp_path, [locked_until])

    with pytest.raises(WormViolation, match="refused"):
        blind_store.extend_retention(segment.blob_key, locked_until - timedelta(days=29))
    with pytest.raises(S3Error) as bare:
        raw_client.set_object_retention(
            bucket_name=blind_store.bucket,
            object_name=segment.blob_key,
            config=Retention(COMPLIANCE, locked_until - timedelta(days=29)),
        )
    assert bare.value.code == "AccessDenied"

    info = services.store.stat(segment.blob_key)
    assert info is not None and info.retain_until == locked_until
    _assert_stored_as_made(services, segment)
    assert not reconcile(services.db, services.store).as_json()["missing_before_expiry"]

    later = locked_until + timedelta(days=365)
    assert services.store.extend_retention(segment.blob_key, later) == later


def test_rgw_refuses_to_delete_a_locked_version_and_examvault_says_it_was_refused(
    ceph_services: Services, blind_store: S3BlobStore, raw_client: Minio, tmp_path: Path
) -> None:
    """`delete` blind to the lock, and a bare client removing the version: both refused by
    RGW; the object, its one version and its lock stay.

    moto refuses the deletion too, with another message: the match on RGW's "forbidden by
    object lock" is what makes this fail there. It fails if the store lets a locked version go."""
    services = ceph_services
    locked_until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    (segment,) = _segments(services, tmp_path, [locked_until])
    (version,) = _versions(raw_client, blind_store.bucket, segment.blob_key)

    with pytest.raises(WormViolation, match="forbidden by object lock"):
        blind_store.delete(segment.blob_key)
    with pytest.raises(S3Error) as bare:
        raw_client.remove_object(
            bucket_name=blind_store.bucket, object_name=segment.blob_key, version_id=version
        )
    assert bare.value.code == "AccessDenied"

    assert _versions(raw_client, blind_store.bucket, segment.blob_key) == [version]
    info = services.store.stat(segment.blob_key)
    assert info is not None and info.retain_until == locked_until
    _assert_stored_as_made(services, segment)
