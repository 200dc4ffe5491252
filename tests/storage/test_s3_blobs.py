"""S3BlobStore against a real S3 endpoint (moto's server over HTTP), no mocks of the client."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.retention import Retention

from storage.blobs import BlobStoreError, WormViolation
from storage.s3 import MiB, S3BlobStore, _ObjectState
from storage.stores import init_blob_store, open_blob_store
from tests.s3server import ACCESS_KEY, SECRET_KEY


def _key_for(sha256: str) -> str:
    return f"cam-0101/2026-06-07/{sha256}.mp4"


def _fresh_bucket() -> str:
    return f"ev-{uuid.uuid4().hex}"


def _days_ahead(days: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


@pytest.fixture
def raw_client(s3_endpoint: str) -> Minio:
    """A bare client, to look at what the store really holds behind S3BlobStore's back."""
    return Minio(endpoint=s3_endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)


@pytest.fixture
def make_store(s3_endpoint: str) -> Callable[..., S3BlobStore]:
    # create=True is what `examvault storage init` does; every other opening passes False.
    def make(bucket: str | None = None, *, create: bool = True, **options: int) -> S3BlobStore:
        return S3BlobStore(
            bucket=bucket or _fresh_bucket(),
            endpoint=s3_endpoint,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            secure=False,
            create_bucket=create,
            **options,
        )

    return make


@pytest.fixture
def store(make_store: Callable[..., S3BlobStore]) -> S3BlobStore:
    return make_store()


@pytest.fixture
def segment(tmp_path: Path) -> Path:
    path = tmp_path / "segment.mp4"
    path.write_bytes(os.urandom(300_000))
    return path


def _versions(client: Minio, bucket: str, key: str) -> list[str | None]:
    return [
        item.version_id
        for item in client.list_objects(
            bucket_name=bucket, prefix=key, recursive=True, include_version=True
        )
        if item.object_name == key
    ]


def _sleep_past(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.2)


def test_put_then_read_returns_the_same_bytes_and_sha256(store: S3BlobStore, segment: Path):
    stored = store.put_file(segment, _key_for, retain_until=_days_ahead(30))

    content = b"".join(store.read(stored.key))
    assert content == segment.read_bytes()
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert stored.key == _key_for(stored.sha256)
    assert stored.size == len(content)


def test_put_locks_in_compliance_until_at_least_the_requested_date(
    store: S3BlobStore, segment: Path, raw_client: Minio
):
    # Microseconds on purpose: minio sends milliseconds, so the store must round up, not down.
    requested = _days_ahead(30).replace(microsecond=123_456)

    stored = store.put_file(segment, _key_for, retain_until=requested)

    assert stored.retain_until is not None
    assert stored.retain_until.tzinfo is not None
    assert stored.retain_until.utcoffset() == timedelta(0)
    assert stored.retain_until >= requested
    headers = raw_client.stat_object(bucket_name=store.bucket, object_name=stored.key).metadata
    assert headers["x-amz-object-lock-mode"] == "COMPLIANCE"


def test_put_of_the_same_bytes_twice_keeps_one_version(
    store: S3BlobStore, segment: Path, raw_client: Minio
):
    first = store.put_file(segment, _key_for, retain_until=_days_ahead(30))
    second = store.put_file(segment, _key_for, retain_until=_days_ahead(30))

    assert second == first
    assert len(_versions(raw_client, store.bucket, first.key)) == 1


def test_put_of_the_same_bytes_with_a_later_date_extends_the_lock(
    store: S3BlobStore, segment: Path
):
    store.put_file(segment, _key_for, retain_until=_days_ahead(30))
    later = _days_ahead(400)

    again = store.put_file(segment, _key_for, retain_until=later)

    assert again.retain_until is not None and again.retain_until >= later


def test_put_of_other_bytes_under_an_existing_key_is_a_worm_violation(
    store: S3BlobStore, tmp_path: Path
):
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    first.write_bytes(b"a" * 100)
    second.write_bytes(b"b" * 200)
    store.put_file(first, lambda _: "fixed/key.mp4", retain_until=_days_ahead(30))

    with pytest.raises(WormViolation):
        store.put_file(second, lambda _: "fixed/key.mp4", retain_until=_days_ahead(30))


def test_put_above_the_threshold_uploads_in_parts_and_still_locks(
    make_store: Callable[..., S3BlobStore], tmp_path: Path, raw_client: Minio
):
    store = make_store(multipart_threshold=5 * MiB + 1)
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(11 * MiB))
    requested = _days_ahead(30)

    stored = store.put_file(big, _key_for, retain_until=requested)

    found = raw_client.stat_object(bucket_name=store.bucket, object_name=stored.key)
    assert found.etag is not None and found.etag.endswith("-3")  # a 3-part multipart ETag
    assert found.metadata["x-amz-object-lock-mode"] == "COMPLIANCE"
    assert stored.retain_until is not None and stored.retain_until >= requested
    assert stored.size == 11 * MiB
    assert hashlib.sha256(b"".join(store.read(stored.key))).hexdigest() == stored.sha256


def test_ranged_read_returns_exactly_the_requested_slice(store: S3BlobStore, segment: Path):
    stored = store.put_file(segment, _key_for, retain_until=_days_ahead(30))

    part = b"".join(store.read(stored.key, start=1000, length=4321))

    assert part == segment.read_bytes()[1000:5321]


def test_read_from_an_offset_to_the_end_returns_the_tail(store: S3BlobStore, segment: Path):
    stored = store.put_file(segment, _key_for, retain_until=_days_ahead(30))

    assert b"".join(store.read(stored.key, start=299_990)) == segment.read_bytes()[299_990:]


def test_read_of_zero_bytes_returns_nothing(store: S3BlobStore, segment: Path):
    stored = store.put_file(segment, _key_for, retain_until=_days_ahead(30))

    assert b"".join(store.read(stored.key, start=10, length=0)) == b""


def test_extend_retention_to_a_later_date_reads_back_that_date(store: S3BlobStore, segment: Path):
    stored = store.put_file(segment, _key_for, retain_until=_days_ahead(30))
    later = _days_ahead(365 * 4)

    locked_until = store.extend_retention(stored.key, later)

    assert locked_until is not None and locked_until >= later
    info = store.stat(stored.key)
    assert info is not None and info.retain_until == locked_until


def test_extend_retention_to_an_earlier_date_is_refused_and_keeps_the_lock(
    store: S3BlobStore, segment: Path
):
    stored = store.put_file(segment, _key_for, retain_until=_days_ahead(30))

    with pytest.raises(WormViolation):
        store.extend_retention(stored.key, _days_ahead(1))

    info = store.stat(stored.key)
    assert info is not None and info.retain_until == stored.retain_until


def test_delete_of_a_locked_object_is_refused_and_the_object_remains(
    store: S3BlobStore, segment: Path
):
    stored = store.put_file(segment, _key_for, retain_until=_days_ahead(30))

    with pytest.raises(WormViolation):
        store.delete(stored.key)

    assert store.stat(stored.key) is not None


def test_delete_after_the_lock_date_removes_every_version(
    store: S3BlobStore, segment: Path, raw_client: Minio
):
    stored = store.put_file(
        segment, _key_for, retain_until=datetime.now(UTC) + timedelta(seconds=1)
    )
    assert stored.retain_until is not None
    _sleep_past(stored.retain_until)

    store.delete(stored.key)

    assert store.stat(stored.key) is None
    assert _versions(raw_client, store.bucket, stored.key) == []


def test_legal_hold_blocks_delete_after_the_lock_date(store: S3BlobStore, segment: Path):
    stored = store.put_file(
        segment, _key_for, retain_until=datetime.now(UTC) + timedelta(seconds=1)
    )
    store.set_legal_hold(stored.key, True)
    assert stored.retain_until is not None
    _sleep_past(stored.retain_until)

    with pytest.raises(WormViolation):
        store.delete(stored.key)

    assert store.stat(stored.key) is not None


def test_legal_hold_reads_back_on_then_off(store: S3BlobStore, segment: Path):
    stored = store.put_file(segment, _key_for, retain_until=_days_ahead(30))

    store.set_legal_hold(stored.key, True)
    held = store.stat(stored.key)
    store.set_legal_hold(stored.key, False)
    released = store.stat(stored.key)

    assert held is not None and held.legal_hold
    assert released is not None and not released.legal_hold


def test_stat_of_a_missing_key_returns_none(store: S3BlobStore):
    assert store.stat("cam-0101/2026-06-07/nothing.mp4") is None


def test_keys_lists_the_objects_under_a_prefix(store: S3BlobStore, tmp_path: Path):
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(name.encode())
        store.put_file(tmp_path / name, lambda sha: f"cam-1/{sha}", retain_until=_days_ahead(1))
    (tmp_path / "c").write_bytes(b"c")
    store.put_file(tmp_path / "c", lambda sha: f"cam-2/{sha}", retain_until=_days_ahead(1))

    first, second = sorted(store.keys("cam-1/"))
    assert len(list(store.keys())) == 3
    assert list(store.keys("cam-1/", start_after=first)) == [second]


def test_an_existing_locked_bucket_is_reused(make_store: Callable[..., S3BlobStore], segment: Path):
    bucket = _fresh_bucket()
    stored = make_store(bucket).put_file(segment, _key_for, retain_until=_days_ahead(30))

    assert make_store(bucket, create=False).stat(stored.key) is not None


def test_a_bucket_without_object_lock_is_refused(
    make_store: Callable[..., S3BlobStore], raw_client: Minio
):
    bucket = _fresh_bucket()
    raw_client.make_bucket(bucket_name=bucket)

    with pytest.raises(BlobStoreError, match="no Object Lock"):
        make_store(bucket)


def test_open_blob_store_with_an_s3_url_gives_a_working_store(
    s3_endpoint: str,
    segment: Path,
):
    url = f"s3://{_fresh_bucket()}?endpoint={s3_endpoint}&secure=false"
    init_blob_store(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)

    store = open_blob_store(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    stored = store.put_file(segment, _key_for, retain_until=_days_ahead(30))

    assert isinstance(store, S3BlobStore)
    assert b"".join(store.read(stored.key)) == segment.read_bytes()


class _LockDroppingStore(S3BlobStore):
    """Simulates a store that accepts lock headers and silently ignores them."""

    def _head(self, key: str, *, version_id: str | None = None) -> _ObjectState | None:
        state = super()._head(key, version_id=version_id)
        if state is None:
            return None
        return dataclasses.replace(state, lock_mode=None, retain_until=None)


def test_put_fails_when_the_lock_does_not_read_back(s3_endpoint: str, segment: Path):
    store = _LockDroppingStore(
        bucket=_fresh_bucket(),
        endpoint=s3_endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
        create_bucket=True,
    )

    with pytest.raises(BlobStoreError, match="not locked"):
        store.put_file(segment, _key_for, retain_until=_days_ahead(30))


def _big(tmp_path: Path, name: str = "big.mp4") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(11 * MiB))
    return path


def test_multipart_object_whose_stored_bytes_differ_is_refused_and_removed(
    make_store: Callable[..., S3BlobStore],
    tmp_path: Path,
    raw_client: Minio,
    monkeypatch: pytest.MonkeyPatch,
):
    store = make_store(multipart_threshold=5 * MiB + 1)
    big = _big(tmp_path)
    key = _key_for(hashlib.sha256(big.read_bytes()).hexdigest())
    # A fake at the edge, the one way to make stored bytes differ from the bytes read: the
    # client's part upload flips a byte of part 2, as a faulty proxy, link or disk would.
    upload_part = store._client._upload_part

    def corrupt_part_2(*args: object) -> str:
        bucket, name, data, headers, upload_id, number = args
        assert isinstance(data, bytes) and isinstance(number, int)
        if number == 2:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return upload_part(bucket, name, data, headers, upload_id, number)

    monkeypatch.setattr(store._client, "_upload_part", corrupt_part_2)

    with pytest.raises(BlobStoreError, match="read back with SHA-256"):
        store.put_file(big, _key_for, retain_until=_days_ahead(30))

    assert store.stat(key) is None
    assert _versions(raw_client, store.bucket, key) == []


def test_multipart_upload_of_a_file_changed_after_staging_is_refused(
    make_store: Callable[..., S3BlobStore], tmp_path: Path, raw_client: Minio
):
    store = make_store(multipart_threshold=5 * MiB + 1)
    big = _big(tmp_path)
    staged = store.stage(big)
    big.write_bytes(os.urandom(11 * MiB))  # the camera host rewrote the file meanwhile

    with pytest.raises(BlobStoreError, match="read back with SHA-256"):
        store.commit(staged, _key_for(staged.sha256), retain_until=_days_ahead(30))

    assert _versions(raw_client, store.bucket, _key_for(staged.sha256)) == []


def _put_unchecked(client: Minio, bucket: str, key: str, data: bytes, **options: object) -> None:
    """Another writer's object at `key`, as a run killed before verifying it would leave."""
    client.put_object(
        bucket_name=bucket,
        object_name=key,
        data=io.BytesIO(data),
        length=len(data),
        metadata={
            "x-amz-sdk-checksum-algorithm": "SHA256",
            "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        },
        **options,
    )


def test_an_unlocked_object_with_other_bytes_of_the_same_size_is_replaced(
    make_store: Callable[..., S3BlobStore], tmp_path: Path, raw_client: Minio
):
    store = make_store(multipart_threshold=5 * MiB + 1)
    big = _big(tmp_path)
    key = _key_for(hashlib.sha256(big.read_bytes()).hexdigest())
    _put_unchecked(raw_client, store.bucket, key, os.urandom(11 * MiB))

    stored = store.put_file(big, _key_for, retain_until=_days_ahead(30))

    assert stored.key == key
    assert b"".join(store.read(key)) == big.read_bytes()
    assert stored.retain_until is not None
    assert len(_versions(raw_client, store.bucket, key)) == 1


def test_a_locked_object_with_other_bytes_of_the_same_size_is_a_worm_violation(
    make_store: Callable[..., S3BlobStore], segment: Path, raw_client: Minio
):
    store = make_store()
    key = _key_for(hashlib.sha256(segment.read_bytes()).hexdigest())
    until = _days_ahead(30).replace(microsecond=0)
    _put_unchecked(
        raw_client, store.bucket, key, os.urandom(300_000), retention=Retention(COMPLIANCE, until)
    )

    with pytest.raises(WormViolation, match="cannot be replaced"):
        store.put_file(segment, _key_for, retain_until=_days_ahead(30))


def test_storage_url_sets_the_multipart_sizes(s3_endpoint: str):
    url = (
        f"s3://{_fresh_bucket()}?endpoint={s3_endpoint}&secure=false"
        f"&multipart_threshold={6 * MiB}&part_size={5 * MiB}"
    )
    init_blob_store(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)

    store = open_blob_store(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)

    assert isinstance(store, S3BlobStore)
    assert (store.multipart_threshold, store.part_size) == (6 * MiB, 5 * MiB)


def test_storage_url_with_a_size_that_is_not_bytes_is_refused():
    with pytest.raises(BlobStoreError, match="part_size='16M' must be a number of bytes"):
        open_blob_store("s3://bucket?endpoint=127.0.0.1:9&part_size=16M")


def test_opening_a_missing_bucket_refuses_and_creates_nothing(
    make_store: Callable[..., S3BlobStore], raw_client: Minio
):
    bucket = _fresh_bucket()

    with pytest.raises(BlobStoreError) as refused:
        make_store(bucket, create=False)

    assert repr(bucket) in str(refused.value)
    assert "examvault storage init" in str(refused.value)
    assert not raw_client.bucket_exists(bucket_name=bucket)


def test_open_blob_store_refuses_a_missing_bucket(s3_endpoint: str, raw_client: Minio):
    bucket = _fresh_bucket()
    url = f"s3://{bucket}?endpoint={s3_endpoint}&secure=false"

    with pytest.raises(BlobStoreError, match=r"does not exist.*examvault storage init"):
        open_blob_store(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)

    assert not raw_client.bucket_exists(bucket_name=bucket)


def test_init_creates_the_bucket_with_object_lock_once(
    s3_endpoint: str, raw_client: Minio, segment: Path
):
    bucket = _fresh_bucket()
    url = f"s3://{bucket}?endpoint={s3_endpoint}&secure=false"

    _, created = init_blob_store(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    _, again = init_blob_store(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)

    assert (created, again) == (True, False)
    assert raw_client.get_object_lock_config(bucket_name=bucket) is not None
    store = open_blob_store(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    stored = store.put_file(segment, _key_for, retain_until=_days_ahead(30))
    info = store.stat(stored.key)
    assert info is not None and info.retain_until is not None


def test_a_bucket_wiped_after_opening_is_not_ready(
    make_store: Callable[..., S3BlobStore], raw_client: Minio
):
    store = make_store()
    store.check_ready()
    raw_client.remove_bucket(bucket_name=store.bucket)

    with pytest.raises(BlobStoreError, match="examvault storage init"):
        store.check_ready()


def test_put_with_a_retention_already_past_stores_the_bytes_without_a_lock(
    store: S3BlobStore, segment: Path
):
    # Footage already past its expiry: Ceph RGW (like AWS) refuses a lock date in the past,
    # moto accepted one; either way there is nothing left to lock.
    stored = store.put_file(segment, _key_for, retain_until=_days_ahead(-1))

    info = store.stat(stored.key)
    assert info is not None and info.retain_until is None and not info.legal_hold
    assert b"".join(store.read(stored.key)) == segment.read_bytes()
    assert store.extend_retention(stored.key, _days_ahead(-1)) is None
    locked_until = store.extend_retention(stored.key, _days_ahead(30))
    assert locked_until is not None and locked_until >= _days_ahead(29)
