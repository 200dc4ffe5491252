"""S3/MinIO blob store: evidence bytes under Object Lock in COMPLIANCE mode.

The lock is the store's own guarantee that nobody, not even us with our keys, can delete or
shorten evidence before its expiry (docs/retention.md). So every write is read back: an object
whose lock did not take is an ingest failure, not a warning. Rules that a store might not
enforce itself (never shorten, never delete while locked or held) are also checked here, so a
lenient store (moto in tests, a misconfigured MinIO) cannot quietly weaken them. A store that
enforces them (Ceph RGW) may still refuse what passed our checks, by its own clock: such a
refusal is a WormViolation too.

The minio client stays inside this module; the rest of examvault sees only `BlobStore`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.retention import Retention

from storage.blobs import (
    CHUNK,
    BlobInfo,
    BlobStore,
    BlobStoreError,
    StagedBlob,
    StoredBlob,
    StoreUnavailable,
    WormViolation,
    check_key,
)
from storage.faults import fault_point

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
# S3's limits on multipart parts: at least 5 MiB (except the last), at most 5 GiB.
_MIN_PART_SIZE = 5 * MiB
_MAX_PART_SIZE = 5 * 1024 * MiB

_LOCK_MODE = "x-amz-object-lock-mode"
_LOCK_UNTIL = "x-amz-object-lock-retain-until-date"
_LEGAL_HOLD = "x-amz-object-lock-legal-hold"
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion"})
# Error codes with which a store says "not now" rather than "no".
_BUSY_CODES = frozenset({"ServiceUnavailable", "SlowDown", "InternalError", "RequestTimeout"})


@dataclass(frozen=True)
class Timeouts:
    """Bounds on every call to the store. minio's own defaults (5 minutes per connect and per
    read, 5 retries) would hold a request, and the thread serving it, for half an hour."""

    connect_seconds: float = 5.0
    # Per socket read: the wait for a response after a part went up counts, so not too short.
    read_seconds: float = 30.0
    retries: int = 2


@dataclass(frozen=True)
class _ObjectState:
    """One object version as the store reports it on HEAD."""

    size: int
    lock_mode: str | None
    retain_until: datetime | None
    legal_hold: bool
    version_id: str | None

    def is_locked_at(self, moment: datetime) -> bool:
        return self.legal_hold or (self.retain_until is not None and self.retain_until > moment)


class S3BlobStore(BlobStore):
    """A bucket with Object Lock enabled; every object is locked in COMPLIANCE mode.

    Objects up to `multipart_threshold` bytes go up in one PUT that carries the lock and the
    SHA-256 as its checksum, so they are never visible unlocked nor other than the staged bytes.
    Larger ones go up in `part_size` parts, are read back and hashed (S3's per-part checksums
    are not on every store, Ceph RGW 16 has none, and minio-py 7 does not send them), and only
    then locked: some stores (moto, Ceph RGW 16) drop lock headers on multipart uploads, and
    the explicit retention call plus the read-back is what makes the lock certain. An object
    already there is hashed too before it is acknowledged: a run killed between completing an
    upload and verifying it leaves one unlocked and unchecked, replaced if its bytes are wrong.
    A retain-until date that has already passed asks for no lock (a real store refuses one).
    """

    def __init__(
        self,
        *,
        bucket: str,
        endpoint: str,
        access_key: str,
        secret_key: str,
        secure: bool = True,
        region: str | None = None,
        multipart_threshold: int = 64 * MiB,
        part_size: int = 16 * MiB,
        create_bucket: bool = False,
        timeouts: Timeouts | None = None,
        allow_unreachable: bool = False,
        presign_endpoint: str | None = None,
        presign_secure: bool = True,
    ) -> None:
        """Open the store on an existing bucket with Object Lock, or refuse it.

        Only ``create_bucket=True`` (``examvault storage init``) creates a missing bucket: a
        process that made one whenever it found none would turn a wiped or mistyped store into
        a fresh, empty one and carry on as if the evidence were there.

        With ``allow_unreachable`` (``serve`` and ``worker``), a store that does not answer
        now is checked later instead: the first write, legal hold or readiness check that
        finds it up checks the bucket and its Object Lock, and nothing is written before.
        A store that answers and says the bucket is missing is still refused at once.
        """
        if not _MIN_PART_SIZE <= multipart_threshold <= _MAX_PART_SIZE:
            raise BlobStoreError(
                f"multipart_threshold {multipart_threshold} must be between 5 MiB and 5 GiB "
                "(the sizes S3 allows for one part)"
            )
        if part_size < _MIN_PART_SIZE:
            raise BlobStoreError(f"part_size {part_size} is below S3's minimum of 5 MiB")
        self.bucket = bucket
        self.multipart_threshold = multipart_threshold
        # Never larger than the threshold, so anything above it really is split into parts.
        self.part_size = min(part_size, multipart_threshold)
        query = f"endpoint={endpoint}&secure={str(secure).lower()}"
        self.url = f"s3://{bucket}?{query}" + (f"&region={region}" if region else "")
        self.timeouts = timeouts or Timeouts()
        try:
            self._client = Minio(
                endpoint=endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region,
                http_client=_http_client(self.timeouts),
            )
        except ValueError as exc:
            raise BlobStoreError(f"S3 endpoint {endpoint!r}: {exc}") from exc
        self._region = region
        # Presigned reads go to clients, who may reach the store under another name than we do
        # (https://objects.example.cn through the proxy, not ceph:7480): SigV4 signs the host.
        # Signing needs no request when the region is known.
        self._presigner = self._client
        if presign_endpoint:
            try:
                self._presigner = Minio(
                    endpoint=presign_endpoint,
                    access_key=access_key,
                    secret_key=secret_key,
                    secure=presign_secure,
                    region=region or "us-east-1",
                )
            except ValueError as exc:
                raise BlobStoreError(f"S3 presign endpoint {presign_endpoint!r}: {exc}") from exc
        # Whether this instance created the bucket (only ever with create_bucket=True).
        self.created_bucket = False
        # Whether the bucket was seen to exist with Object Lock; writes wait for it.
        self.verified = False
        try:
            self._ensure_locked_bucket(region, create=create_bucket)
        except StoreUnavailable as exc:
            if not allow_unreachable:
                raise
            logger.warning("object store unreachable; carrying on and checking later: %s", exc)

    def _require_verified(self) -> None:
        """Check the bucket now if the store was unreachable when this instance was made."""
        if not self.verified:
            self._ensure_locked_bucket(self._region, create=False)

    def _ensure_locked_bucket(self, region: str | None, *, create: bool) -> None:
        """Check (or, with ``create``, make) the bucket, and refuse one without Object Lock.

        Object Lock can only be chosen when a bucket is created; evidence written into an
        unlockable bucket could be deleted by anyone holding the keys, so we stop here.
        """
        with _translated(f"preparing bucket {self.bucket!r} at {self.url}"):
            try:
                if not self._client.bucket_exists(bucket_name=self.bucket):
                    if not create:
                        raise BlobStoreError(self._missing_bucket())
                    self._client.make_bucket(
                        bucket_name=self.bucket, location=region, object_lock=True
                    )
                    self.created_bucket = True
                    logger.info("created bucket %s with Object Lock", self.bucket)
            except S3Error as exc:
                # Another process created it between our check and our create: fine.
                if exc.code != "BucketAlreadyOwnedByYou":
                    raise
            except ValueError as exc:
                raise BlobStoreError(f"bucket name {self.bucket!r} is not valid for S3") from exc
            try:
                self._client.get_object_lock_config(bucket_name=self.bucket)
            except S3Error as exc:
                if exc.code == "ObjectLockConfigurationNotFoundError":
                    raise BlobStoreError(
                        f"bucket {self.bucket!r} at {self.url} has no Object Lock; evidence "
                        "must go into a bucket created with Object Lock enabled"
                    ) from exc
                raise
        if not self.verified:
            self.verified = True
            logger.info("bucket %s at %s has Object Lock", self.bucket, self.url)

    def _missing_bucket(self) -> str:
        return (
            f"bucket {self.bucket!r} does not exist at {self.url}: if this is a new store, run "
            "`examvault storage init` to create it with Object Lock; if it held evidence, the "
            "store was wiped or the storage URL names the wrong bucket"
        )

    def check_ready(self) -> None:
        self._require_verified()
        # A HEAD of a key in a missing bucket answers 404 like a missing key: ask the bucket.
        with _translated(f"checking bucket {self.bucket!r} at {self.url}"):
            if not self._client.bucket_exists(bucket_name=self.bucket):
                raise BlobStoreError(self._missing_bucket())

    def stage(self, source: Path) -> StagedBlob:
        # One pass before uploading: the key is derived from the hash and the single-part PUT
        # carries the hash as its checksum, so both are needed before the first byte goes up.
        sha256, digest, size = _hash_file(source)
        return StagedBlob(source=source, sha256=sha256, digest=digest, size=size)

    def discard(self, staged: StagedBlob) -> None:
        """Nothing to forget: staging only hashed the original file."""

    def commit(self, staged: StagedBlob, key: str, *, retain_until: datetime) -> StoredBlob:
        requested = _aware_utc(retain_until, "retain_until")
        source, sha256, digest, size = staged.source, staged.sha256, staged.digest, staged.size
        key = check_key(key)
        self._require_verified()

        existing = self._head(key)
        if existing is not None:
            if existing.size != size:
                raise WormViolation(
                    f"{self.bucket}/{key} exists with {existing.size} bytes, not {size}; "
                    "objects are write-once"
                )
            found = self._stored_sha256(key, existing.version_id)
            if found != sha256:
                self._remove_unverified(key, existing.version_id, found, sha256)
                existing = None
        if existing is not None:
            logger.debug(
                "%s/%s already stored; making sure its lock is long enough", self.bucket, key
            )
            if not _satisfies(existing, requested) and _lock_needed(requested):
                later = max(requested, existing.retain_until or requested)
                self._set_retention(key, later)
        else:
            self._upload(
                source, key, size=size, sha256=sha256, digest=digest, retain_until=requested
            )

        state = self._head(key)
        if state is None:
            raise BlobStoreError(f"{self.bucket}/{key} is missing right after it was stored")
        if state.size != size:
            raise BlobStoreError(
                f"{self.bucket}/{key} holds {state.size} bytes after upload, {source} has {size}"
            )
        locked_until = self._require_lock(key, state, requested)
        return StoredBlob(key=key, sha256=sha256, size=size, retain_until=locked_until)

    def _upload(
        self,
        source: Path,
        key: str,
        *,
        size: int,
        sha256: str,
        digest: bytes,
        retain_until: datetime,
    ) -> None:
        needed = _lock_needed(retain_until)
        if size > self.multipart_threshold:
            self._upload_in_parts(source, key, size=size, sha256=sha256)
            if needed:
                self._set_retention(key, retain_until)
        else:
            lock = Retention(COMPLIANCE, _ceil_to_second(retain_until)) if needed else None
            action = f"uploading {source} to {self.bucket}/{key}"
            with _translated(action), source.open("rb") as reader:
                # minio passes x-amz-* metadata keys through unprefixed. A checksum is what
                # S3 requires on a locked PUT; minio sends Content-MD5 only over HTTPS.
                self._client.put_object(
                    bucket_name=self.bucket,
                    object_name=key,
                    data=reader,
                    length=size,
                    # A part size of at least the length keeps minio to one PUT; left at 0 it
                    # would split anything above 5 MiB and the lock headers would be lost.
                    part_size=max(size, _MIN_PART_SIZE),
                    metadata={
                        "x-amz-sdk-checksum-algorithm": "SHA256",
                        "x-amz-checksum-sha256": base64.b64encode(digest).decode("ascii"),
                    },
                    retention=lock,
                )
        logger.info("stored %s as %s/%s (%d bytes)", source, self.bucket, key, size)

    def _upload_in_parts(self, source: Path, key: str, *, size: int, sha256: str) -> None:
        """Upload in parts, then read the object back and hash it; a mismatch removes it.

        The object is unlocked from completion until the caller's retention call; a crash in
        between leaves it unlocked and unchecked, and the next commit checks and locks it."""
        action = f"uploading {source} to {self.bucket}/{key} in parts"
        with _translated(action), source.open("rb") as reader:
            written = self._client.put_object(
                bucket_name=self.bucket,
                object_name=key,
                data=reader,
                length=size,
                part_size=self.part_size,
                progress=_PartsRead(self.part_size),
            )
        fault_point("s3.multipart_completed")
        found = self._stored_sha256(key, written.version_id)
        if found != sha256:
            self._remove_unverified(key, written.version_id, found, sha256)
            raise BlobStoreError(
                f"{self.bucket}/{key} read back with SHA-256 {found}, not {sha256} as staged "
                f"from {source}: the upload was removed and is not acknowledged"
            )

    def stat(self, key: str) -> BlobInfo | None:
        state = self._head(check_key(key))
        if state is None:
            return None
        return BlobInfo(
            key=key,
            size=state.size,
            retain_until=state.retain_until,
            legal_hold=state.legal_hold,
        )

    def presigned_read_url(
        self, key: str, *, expires: timedelta, response_headers: dict[str, str]
    ) -> str | None:
        # Signed here without a request; the store checks signature, expiry and headers.
        try:
            return self._presigner.presigned_get_object(
                bucket_name=self.bucket,
                object_name=check_key(key),
                expires=expires,
                response_headers={
                    f"response-{name.lower()}": value for name, value in response_headers.items()
                },
            )
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            raise StoreUnavailable(f"cannot sign a read of {self.bucket}/{key}: {exc}") from exc

    def read(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        check_key(key)
        if start < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range start={start} length={length}")
        if length == 0:
            # minio reads length=0 as "to the end", so an empty read must not reach it.
            return
        response = None
        try:
            response = self._client.get_object(
                bucket_name=self.bucket, object_name=key, offset=start, length=length or 0
            )
            yield from response.stream(amt=CHUNK)
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            raise _store_error(f"reading {self.bucket}/{key}", exc) from exc
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def delete(self, key: str) -> None:
        """Remove every version of `key`, refusing while any version is locked or held.

        A locked bucket is versioned: removing only the latest would leave the bytes behind a
        delete marker. Checked here too because not every store refuses (moto does not, fully).
        """
        check_key(key)
        self._require_verified()
        with _translated(f"listing versions of {self.bucket}/{key}"):
            versions = [
                (item.version_id, item.is_delete_marker)
                for item in self._client.list_objects(
                    bucket_name=self.bucket, prefix=key, recursive=True, include_version=True
                )
                if item.object_name == key
            ]
        now = datetime.now(UTC)
        for version_id, is_delete_marker in versions:
            if is_delete_marker:
                continue
            state = self._head(key, version_id=version_id)
            if state is not None and state.is_locked_at(now):
                raise WormViolation(
                    f"{self.bucket}/{key} is locked until {state.retain_until}"
                    + (" and under legal hold" if state.legal_hold else "")
                    + "; it cannot be deleted"
                )
        for version_id, _ in versions:
            with _refusal_is_worm(f"deleting {self.bucket}/{key} version {version_id}"):
                self._client.remove_object(
                    bucket_name=self.bucket, object_name=key, version_id=version_id
                )
        logger.info("deleted %s/%s (%d versions)", self.bucket, key, len(versions))

    def extend_retention(self, key: str, retain_until: datetime) -> datetime | None:
        requested = _aware_utc(retain_until, "retain_until")
        self._require_verified()
        state = self._head(check_key(key))
        if state is None:
            raise BlobStoreError(f"no object {self.bucket}/{key}")
        # Checked here, not left to the store: moto accepts shortening a COMPLIANCE lock.
        if state.retain_until is not None and requested < state.retain_until:
            raise WormViolation(
                f"{self.bucket}/{key} is locked until {state.retain_until}; "
                f"retention cannot move earlier to {requested}"
            )
        if not _lock_needed(requested):
            return state.retain_until
        self._set_retention(key, requested)
        after = self._head(key)
        if after is None:
            raise BlobStoreError(f"{self.bucket}/{key} vanished while its retention was set")
        return self._require_lock(key, after, requested)

    def keys(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[str]:
        with _translated(f"listing {self.bucket}/{prefix}"):
            for item in self._client.list_objects(
                bucket_name=self.bucket,
                prefix=prefix or None,
                recursive=True,
                start_after=start_after,
            ):
                if not item.is_dir and item.object_name is not None:
                    yield item.object_name

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Set or release a legal hold, then read it back: a hold must never fail silently."""
        check_key(key)
        self._require_verified()
        with _translated(f"{'setting' if on else 'releasing'} legal hold on {self.bucket}/{key}"):
            if on:
                self._client.enable_object_legal_hold(bucket_name=self.bucket, object_name=key)
            else:
                self._client.disable_object_legal_hold(bucket_name=self.bucket, object_name=key)
        state = self._head(key)
        if state is None or state.legal_hold != on:
            raise BlobStoreError(
                f"legal hold on {self.bucket}/{key} reads back as "
                f"{'absent' if state is None else state.legal_hold}, not {on}"
            )
        logger.info("legal hold %s on %s/%s", "set" if on else "released", self.bucket, key)

    def _stored_sha256(self, key: str, version_id: str | None) -> str:
        """The SHA-256 of the bytes the store holds for this version, read back in full."""
        digest = hashlib.sha256()
        response = None
        with _translated(f"reading back {self.bucket}/{key} to verify it"):
            try:
                response = self._client.get_object(
                    bucket_name=self.bucket, object_name=key, version_id=version_id
                )
                for chunk in response.stream(amt=CHUNK):
                    digest.update(chunk)
            finally:
                if response is not None:
                    response.close()
                    response.release_conn()
        return digest.hexdigest()

    def _remove_unverified(
        self, key: str, version_id: str | None, found: str, expected: str
    ) -> None:
        """Take away a version whose bytes are not the staged ones, before anything trusts it."""
        state = self._head(key, version_id=version_id)
        if state is not None and state.is_locked_at(datetime.now(UTC)):
            raise WormViolation(
                f"{self.bucket}/{key} holds bytes with SHA-256 {found}, not {expected}, and is "
                "locked, so it cannot be replaced; it needs an operator"
            )
        logger.error(
            "%s/%s holds bytes with SHA-256 %s, not %s; removing that version",
            self.bucket,
            key,
            found,
            expected,
        )
        with _refusal_is_worm(f"removing the unverified {self.bucket}/{key}"):
            self._client.remove_object(
                bucket_name=self.bucket, object_name=key, version_id=version_id
            )

    def _set_retention(self, key: str, retain_until: datetime) -> None:
        until = _future_lock_date(retain_until, f"{self.bucket}/{key}")
        with _refusal_is_worm(f"locking {self.bucket}/{key} until {until}"):
            self._client.set_object_retention(
                bucket_name=self.bucket, object_name=key, config=Retention(COMPLIANCE, until)
            )

    def _head(self, key: str, *, version_id: str | None = None) -> _ObjectState | None:
        """Size and lock of an object version as the store reports them; None when absent.

        The lock comes from HEAD's headers: moto does not implement GetObjectRetention, and
        minio-py 7.2 cannot parse RGW's answer to it (a retain-until date with nanoseconds).
        """
        with _translated(f"reading the state of {self.bucket}/{key}"):
            try:
                found = self._client.stat_object(
                    bucket_name=self.bucket, object_name=key, version_id=version_id
                )
            except S3Error as exc:
                if exc.code in _MISSING_CODES:
                    return None
                raise
        headers = {name.lower(): value for name, value in (found.metadata or {}).items()}
        mode = headers.get(_LOCK_MODE)
        return _ObjectState(
            size=found.size or 0,
            lock_mode=mode.upper() if mode else None,
            retain_until=_parse_lock_date(headers.get(_LOCK_UNTIL), key),
            legal_hold=headers.get(_LEGAL_HOLD, "").upper() == "ON",
            version_id=found.version_id,
        )

    def _require_lock(self, key: str, state: _ObjectState, requested: datetime) -> datetime | None:
        """The read-back retain-until date, or an error when the lock is weaker than asked
        (a date that has passed by now asks for no lock)."""
        if not _lock_needed(requested):
            return state.retain_until
        if not _satisfies(state, requested) or state.retain_until is None:
            raise BlobStoreError(
                f"{self.bucket}/{key} is not locked as required: the store reports mode "
                f"{state.lock_mode or 'none'} until {state.retain_until or 'never'}, "
                f"wanted COMPLIANCE until at least {requested.isoformat()}"
            )
        return state.retain_until


class _PartsRead:
    """minio's progress hook, used only to mark each part read as a crash point for tests."""

    def __init__(self, part_size: int) -> None:
        self._part_size = part_size
        self._read = 0
        self._total = -1

    def set_meta(self, object_name: str, total_length: int) -> None:
        self._total = total_length

    def update(self, length: int) -> None:
        before, self._read = self._read, self._read + length
        if self._read // self._part_size > before // self._part_size or self._read == self._total:
            fault_point("s3.multipart_part")


def _satisfies(state: _ObjectState, requested: datetime) -> bool:
    return (
        state.lock_mode == COMPLIANCE
        and state.retain_until is not None
        and state.retain_until >= requested
    )


def _http_client(timeouts: Timeouts) -> urllib3.PoolManager:
    """minio's own pool (same size, certificates and retried statuses), with our bounds."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeouts.connect_seconds, read=timeouts.read_seconds),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(
            total=timeouts.retries,
            backoff_factor=0.2,
            status_forcelist=[500, 502, 503, 504],
        ),
    )


def _store_error(action: str, exc: Exception) -> BlobStoreError:
    """The client's exception as ours: StoreUnavailable when the store could not be reached
    or said "not now" (a retry may succeed), BlobStoreError when it said no."""
    if isinstance(exc, S3Error):
        status = exc.response.status if exc.response is not None else 0
        message = f"{action}: {exc.code}: {exc.message}"
        if status >= 500 or exc.code in _BUSY_CODES:
            return StoreUnavailable(message)
        return BlobStoreError(message)
    if isinstance(exc, (urllib3.exceptions.HTTPError, ServerError, InvalidResponseError)):
        # Refused, reset, timed out, or something other than the store answered (a proxy).
        return StoreUnavailable(f"{action}: the object store did not answer: {exc}")
    return BlobStoreError(f"{action}: {exc}")


@contextmanager
def _refusal_is_worm(action: str) -> Iterator[None]:
    """As `_translated`, but a store that says AccessDenied to a delete or a retention change
    refused it: Ceph RGW answers so for a locked or held version and for a shortened lock
    ("forbidden by object lock"). Our own checks come first, but the store's clock and its
    record of holds are the ones that count; a refusal is an answer, not an outage (the
    purge's circuit breaker must not count it)."""
    try:
        yield
    except S3Error as exc:
        if exc.code == "AccessDenied":
            raise WormViolation(
                f"{action}: the store refused it ({exc.code}: {exc.message}): the object is "
                "locked or held there, or these keys may not change it"
            ) from exc
        raise _store_error(action, exc) from exc
    except (MinioException, urllib3.exceptions.HTTPError) as exc:
        raise _store_error(action, exc) from exc


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """Turn the client's exceptions into BlobStoreError saying what we were doing."""
    try:
        yield
    except (MinioException, urllib3.exceptions.HTTPError) as exc:
        raise _store_error(action, exc) from exc


def _hash_file(source: Path) -> tuple[str, bytes, int]:
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as reader:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), digest.digest(), size


def _aware_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def _ceil_to_second(value: datetime) -> datetime:
    """Round up: minio sends milliseconds only, and truncating would lock short of the date."""
    if value.microsecond:
        return value.replace(microsecond=0) + timedelta(seconds=1)
    return value


def _lock_needed(retain_until: datetime) -> bool:
    """Whether a retention still has time to run. One that has passed (footage already past
    its expiry) asks for no lock: Ceph RGW and AWS refuse a retain-until date in the past (RGW
    with a bare InvalidArgument), while moto accepted one, so examvault never sends it."""
    return _ceil_to_second(retain_until) > datetime.now(UTC)


def _future_lock_date(retain_until: datetime, where: str) -> datetime:
    """The date to send as a COMPLIANCE retain-until; callers ask `_lock_needed` first."""
    until = _ceil_to_second(retain_until)
    if until <= datetime.now(UTC):
        raise BlobStoreError(
            f"cannot lock {where} until {until.isoformat()}: that date has passed, and Object "
            "Lock takes only a retain-until date in the future"
        )
    return until


def _parse_lock_date(value: str | None, key: str) -> datetime | None:
    if not value:
        return None
    try:
        return _aware_utc(datetime.fromisoformat(value), "retain-until date")
    except ValueError as exc:
        raise BlobStoreError(f"unreadable retain-until date {value!r} on {key!r}") from exc
