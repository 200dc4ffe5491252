"""Picks the blob store a storage URL names. Apart from both implementations, so that neither
`storage/blobs.py` nor `storage/s3.py` imports the other's module for it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from storage.blobs import BlobStore, BlobStoreError, LocalBlobStore
from storage.s3 import S3BlobStore, Timeouts


def open_blob_store(
    url: str,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    create_bucket: bool = False,
    timeouts: Timeouts | None = None,
    allow_unreachable: bool = False,
) -> BlobStore:
    """`file:///path` or `s3://BUCKET?endpoint=HOST:PORT&secure=false&region=R`, optionally
    with `&multipart_threshold=BYTES&part_size=BYTES` (defaults 64 MiB and 16 MiB), and
    `&presign_endpoint=HOST[:PORT]&presign_secure=true` when clients reach the store for
    presigned reads (EXAMVAULT_FOOTAGE_OFFLOAD) under another address than we do.

    A missing bucket is refused unless `create_bucket` (only `init_blob_store` passes it).
    With `allow_unreachable`, an S3 store that does not answer is checked later instead
    (S3BlobStore), so a long-running process can start during an outage."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalBlobStore(Path(parts.netloc + parts.path))
    if parts.scheme == "s3":
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        if not parts.netloc:
            raise BlobStoreError(f"storage URL {url!r} names no bucket")
        if "endpoint" not in query:
            raise BlobStoreError(f"storage URL {url!r} needs ?endpoint=HOST:PORT")
        sizes = {name: _bytes(url, query, name) for name in _SIZES if name in query}
        return S3BlobStore(
            bucket=parts.netloc,
            endpoint=query["endpoint"],
            access_key=access_key or "",
            secret_key=secret_key or "",
            secure=query.get("secure", "true").lower() not in ("false", "0", "no"),
            region=query.get("region"),
            create_bucket=create_bucket,
            timeouts=timeouts,
            allow_unreachable=allow_unreachable,
            presign_endpoint=query.get("presign_endpoint"),
            presign_secure=query.get("presign_secure", "true").lower() not in ("false", "0", "no"),
            **sizes,
        )
    raise BlobStoreError(f"storage URL {url!r}: scheme must be file:// or s3://")


def init_blob_store(
    url: str, *, access_key: str | None = None, secret_key: str | None = None
) -> tuple[BlobStore, bool]:
    """`examvault storage init`: create the S3 bucket with Object Lock if it is missing, check
    that it has Object Lock, and return the store and whether the bucket was created now.
    Idempotent; a local store's directory is simply made."""
    store = open_blob_store(url, access_key=access_key, secret_key=secret_key, create_bucket=True)
    store.check_ready()
    return store, isinstance(store, S3BlobStore) and store.created_bucket


_SIZES = ("multipart_threshold", "part_size")


def _bytes(url: str, query: dict[str, str], name: str) -> int:
    value = query[name]
    if not value.isdigit():
        raise BlobStoreError(f"storage URL {url!r}: {name}={value!r} must be a number of bytes")
    return int(value)
