"""Blob stores: where the evidence bytes live, write-once.

One interface, two implementations: `LocalBlobStore` (a directory, the embedded default) and
`S3BlobStore` (S3/MinIO with Object Lock, in `storage/s3.py`); `storage/stores.py` picks one
for a storage URL. Keys are made by the caller (`storage/keys.py`) from the camera, the start
and the content hash, never from a client-supplied path.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import stat
import threading
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = 1024 * 1024


class BlobStoreError(Exception):
    """The store could not do what was asked; the message says what and where."""


class StoreUnavailable(BlobStoreError):
    """The store did not answer in time, refused or dropped the connection, or answered with a
    server error: nothing is wrong with the request, and it may succeed later."""


class WormViolation(BlobStoreError):
    """An attempt to overwrite, shorten the retention of, or delete a locked object."""


@dataclass(frozen=True)
class StoredBlob:
    key: str
    sha256: str
    size: int
    # The lock as read back from the store after the write; None where the store has no locks.
    retain_until: datetime | None


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    retain_until: datetime | None
    legal_hold: bool


KeyForHash = Callable[[str], str]


@dataclass(frozen=True)
class StagedBlob:
    """A file read once and hashed, ready to be committed under a key (or discarded).

    Staging is separate from committing so the caller can check the file (probe it) while the
    bytes are being read, and decide only then whether they become evidence."""

    source: Path  # what commit uploads or renames: the original, or a durable temporary copy
    sha256: str
    digest: bytes
    size: int


def check_key(key: str) -> str:
    """Refuse keys that could leave the store's root (defence in depth: callers build keys)."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or any(part in ("", ".", "..") for part in key.split("/")):
        raise BlobStoreError(f"invalid blob key {key!r}")
    return key


class BlobStore(ABC):
    """What the rest of examvault may do with evidence bytes."""

    url: str

    @abstractmethod
    def stage(self, source: Path) -> StagedBlob:
        """Read `source` once, hashing it (the local store copies it durably on the way)."""

    @abstractmethod
    def commit(self, staged: StagedBlob, key: str, *, retain_until: datetime) -> StoredBlob:
        """Make the staged bytes the object `key`.

        Committing the same bytes under the same key twice is a no-op that returns the same blob.
        Returns only once the bytes are durable (and, where supported, locked and read back).
        """

    @abstractmethod
    def discard(self, staged: StagedBlob) -> None:
        """Forget a staged file (committed or not); the original source is never touched."""

    def check_ready(self) -> None:
        """Raise `BlobStoreError` (saying why) unless the store answers; for readiness."""
        self.stat("readyz-probe")

    def put_file(self, source: Path, key_for: KeyForHash, *, retain_until: datetime) -> StoredBlob:
        """Stage and commit in one go; the key is `key_for(sha256)`."""
        staged = self.stage(source)
        try:
            return self.commit(staged, check_key(key_for(staged.sha256)), retain_until=retain_until)
        finally:
            self.discard(staged)

    @abstractmethod
    def stat(self, key: str) -> BlobInfo | None:
        """Size and lock of an object, or None when it does not exist."""

    @abstractmethod
    def read(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The object's bytes from `start`, `length` of them (all the rest when None), in chunks."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object (the retention job's business; refused while it is locked)."""

    def delete_many(self, keys: list[str]) -> None:
        """Remove several objects (a purge batch); stores may make this cheaper than a loop."""
        for key in keys:
            self.delete(key)

    def delete_deferred(self, key: str) -> None:
        """Remove an object, where the store allows without waiting for the removal to be
        durable until `flush_deletions()`: the purge deletes (and records) objects one at a
        time, and a sync per object would cost more than the deletions themselves."""
        self.delete(key)

    def flush_deletions(self) -> None:
        """Make every `delete_deferred` so far durable."""
        # Here delete_deferred is delete, durable on return: nothing is left to do.
        return None

    @abstractmethod
    def set_legal_hold(self, key: str, on: bool) -> None:
        """Mirror a legal hold onto the object, where the store supports one."""

    @abstractmethod
    def extend_retention(self, key: str, retain_until: datetime) -> datetime | None:
        """Move the object's lock later (never earlier); returns the lock as read back."""

    @abstractmethod
    def keys(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[str]:
        """Every object key under `prefix` (after `start_after`, when given)."""

    def local_path(self, key: str) -> Path | None:
        """A file on this machine holding the object, when there is one (zero-copy serving)."""
        return None

    def presigned_read_url(
        self, key: str, *, expires: timedelta, response_headers: dict[str, str]
    ) -> str | None:
        """A URL anyone holding it may GET the object from (Range included) until `expires`
        has passed, the store answering with `response_headers`; None where the store has
        none (the local store: the proxy serves its files instead)."""
        return None

    def recover(self) -> int:
        """Remove what an interrupted write left behind; returns how many leftovers went."""
        return 0


class BlobReader(io.RawIOBase):
    """A stored object as a read-only, seekable file, fetched in blocks by range reads as they
    are needed. A demuxer seeks (an MP4 keeps its index at the end), so it reads the few blocks
    it asks for, and the first pictures can go out before the whole object has arrived."""

    def __init__(
        self, store: BlobStore, key: str, size: int, *, block: int = 4 * CHUNK, blocks: int = 4
    ) -> None:
        super().__init__()
        self._store, self._key, self._size = store, key, size
        self._block, self._keep = block, blocks
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"seek before the start of {self._key}")
        self._position = base + offset
        return self._position

    def _fetch(self, index: int) -> bytes:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        start = index * self._block
        data = b"".join(self._store.read(self._key, start, min(self._block, self._size - start)))
        self._cache[index] = data
        if len(self._cache) > self._keep:
            self._cache.popitem(last=False)
        return data

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        # Fill the whole buffer across block boundaries: callers (and FFmpeg) read fewer,
        # larger pieces that way, and a short read means the end of the object.
        while filled < len(view) and self._position < self._size:
            index, offset = divmod(self._position, self._block)
            data = self._fetch(index)[offset : offset + len(view) - filled]
            view[filled : filled + len(data)] = data
            filled += len(data)
            self._position += len(data)
        return filled


class LocalBlobStore(BlobStore):
    """A directory tree. Writes go to a temporary file that is fsynced, made read-only and
    renamed into place, then the directory is fsynced: a crash leaves either nothing or the
    whole object, never a torn one. Local disks cannot enforce retention; the database's expiry
    and the purge job's checks do (docs/retention.md).

    A staging file is flocked by its writer from creation until commit or discard, so that
    `recover()` in another process (a `worker` started beside `serve`) leaves it alone; the
    kernel drops the lock when the writer dies, which is what marks a file as left behind."""

    _TMP = ".tmp"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = f"file://{self.root}"
        (self.root / self._TMP).mkdir(parents=True, exist_ok=True)
        # This process's staging files and the open files whose locks hold them.
        self._held: dict[Path, IO[bytes]] = {}
        self._held_lock = threading.Lock()
        # Directories whose deletions (delete_deferred) are not yet fsynced.
        self._unsynced_dirs: set[Path] = set()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def stage(self, source: Path) -> StagedBlob:
        digest = hashlib.sha256()
        size = 0
        tmp = self.root / self._TMP / f"{uuid.uuid4().hex}.part"
        writer = tmp.open("xb")
        try:
            fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
            if not _names(tmp, writer):
                # Another process's recover() took it in the instant before our lock.
                raise BlobStoreError(f"staging file {tmp} was removed while it was being created")
            with source.open("rb") as reader:
                while chunk := reader.read(CHUNK):
                    digest.update(chunk)
                    writer.write(chunk)
                    size += len(chunk)
            writer.flush()
            os.fsync(writer.fileno())
            os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        except BaseException:
            tmp.unlink(missing_ok=True)
            writer.close()
            raise
        with self._held_lock:
            self._held[tmp] = writer
        return StagedBlob(source=tmp, sha256=digest.hexdigest(), digest=digest.digest(), size=size)

    def commit(self, staged: StagedBlob, key: str, *, retain_until: datetime) -> StoredBlob:
        final = self._path(key)
        if final.exists():
            if final.stat().st_size != staged.size:
                raise WormViolation(f"{final} exists with another size; objects are write-once")
        else:
            _make_dirs_durably(final.parent, self.root)
            os.rename(staged.source, final)
            _fsync_dir(final.parent)
        return StoredBlob(key=key, sha256=staged.sha256, size=staged.size, retain_until=None)

    def discard(self, staged: StagedBlob) -> None:
        if staged.source.parent == self.root / self._TMP:
            staged.source.unlink(missing_ok=True)
            with self._held_lock:
                writer = self._held.pop(staged.source, None)
            if writer is not None:
                writer.close()

    def stat(self, key: str) -> BlobInfo | None:
        try:
            size = self._path(key).stat().st_size
        except FileNotFoundError:
            return None
        return BlobInfo(key=key, size=size, retain_until=None, legal_hold=False)

    def read(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        remaining = length
        with self._path(key).open("rb") as reader:
            reader.seek(start)
            while remaining is None or remaining > 0:
                chunk = reader.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def delete_many(self, keys: list[str]) -> None:
        # One fsync per directory rather than per file: a purge removes thousands at a time.
        parents = set()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            parents.add(path.parent)
        for parent in parents:
            if parent.exists():
                _fsync_dir(parent)

    def delete_deferred(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        with self._held_lock:
            self._unsynced_dirs.add(path.parent)

    def flush_deletions(self) -> None:
        with self._held_lock:
            parents, self._unsynced_dirs = self._unsynced_dirs, set()
        for parent in parents:
            if parent.exists():
                _fsync_dir(parent)

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Local disks have no legal hold: the database's holds, checked by the purge, are it."""

    def extend_retention(self, key: str, retain_until: datetime) -> datetime | None:
        if not self._path(key).exists():
            raise BlobStoreError(f"no object {key!r}")
        return None

    def keys(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[str]:
        # Walk only the directory the prefix names: listing the checkpoints or the derived
        # pictures must not visit every segment file of the store.
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                key = (Path(dirpath) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix) and (start_after is None or key > start_after):
                    yield key

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def recover(self) -> int:
        """Remove the staging files no live writer holds; one being written stays."""
        removed = 0
        for path in sorted((self.root / self._TMP).glob("*.part")):
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                continue
            with handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if _names(path, handle):
                    path.unlink()
                    removed += 1
        return removed


def _names(path: Path, handle: IO[bytes]) -> bool:
    """True while `path` is still the file `handle` has open."""
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs_durably(path: Path, root: Path) -> None:
    """mkdir -p, fsyncing each new directory's parent so the new entry survives a crash."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current != root:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        _fsync_dir(directory.parent)
