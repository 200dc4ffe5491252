"""Quarantine: files that are not usable evidence, set aside with their reason, within a budget.

A rejected file's **record** is never deleted: a row, a ledger entry and a JSON file beside the
bytes say what arrived (SHA-256 and size of the whole file), from whom, when and why it was
refused. Its **bytes** are kept within bounds (docs/ingest.md, "Quarantine"), because any
camera-host token can send rejected files of up to the upload limit:

- whole, while the quarantine's bytes stay within ``budget_bytes`` and the disk keeps
  ``keep_free_bytes`` free after the copy (the budget may be larger than the disk's free
  space: rejected files must never fill the disk that real segments need);
- otherwise only the first ``sample_bytes`` (the header, enough to see what the file was),
  while those fit; otherwise none. The answer and the record say which (``kept``);
- for ``retention`` after arrival; then the bytes go (``prune``) and the record says when and
  why, in the row, the JSON file and a ``quarantine.bytes_removed`` ledger entry.

The copy is hashed over the whole file, fsynced and made read-only before the row is written,
and only then does the caller remove the original.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage import ledger
from storage.blobs import check_key
from storage.db import Database
from storage.models import QuarantineRecord
from storage.space import free_bytes

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
# How often keeping a file also removes bytes past their retention (one cheap query when none
# are due), so retention holds without a scheduler; `examvault quarantine prune` does it too.
_PRUNE_EVERY_SECONDS = 3600.0
# A staging copy this old was left by a killed process (copying 8 GiB takes minutes, not a day).
_STALE_STAGING = timedelta(days=1)


class Kept(StrEnum):
    WHOLE = "whole"
    SAMPLE = "sample"  # only the first bytes: the budget had no room for the whole file
    NONE = "none"  # the budget was full: the record only


class BytesRemoved(StrEnum):
    BUDGET = "budget"  # never (all) kept: the quarantine was at its budget on arrival
    DISK = "disk"  # never (all) kept: the disk had no room above its free-space floor
    RETENTION = "retention"  # kept, then removed when the quarantine retention ran out


@dataclass(frozen=True)
class Rejection:
    code: str
    reason: str
    camera_code: str | None
    declared_start: str | None
    claimed_start: datetime | None
    claimed_end: datetime | None
    original_name: str
    source: str
    received_at: datetime


@dataclass(frozen=True)
class QuarantineBounds:
    """How much of rejected files the quarantine keeps, and for how long."""

    budget_bytes: int = 20 * 1024**3
    sample_bytes: int = 1024**2
    retention: timedelta = timedelta(days=90)
    # Bytes a copy must leave free on the quarantine's disk (serve: 2 x MIN_FREE_BYTES).
    keep_free_bytes: int = 0


@dataclass(frozen=True)
class KeptFile:
    record_id: int
    kept: Kept
    kept_bytes: int


@dataclass(frozen=True)
class PrunedFile:
    record_id: int
    path: str
    freed_bytes: int
    received_at: datetime


def bytes_to_keep(
    size: int, used: int, bounds: QuarantineBounds, room: int | None = None
) -> tuple[Kept, int]:
    """How much of a rejected file of ``size`` bytes to keep when the quarantine already holds
    ``used`` bytes and the disk has ``room`` bytes above its floor (None: unknown). Pure: the
    whole file if it fits the budget and the room, else its first bytes if they fit, else
    nothing (the record alone)."""
    fits = min(bounds.budget_bytes - used, size if room is None else room)
    if size <= fits:
        return Kept.WHOLE, size
    sample = min(size, bounds.sample_bytes)
    if 0 < sample <= fits:
        return Kept.SAMPLE, sample
    return Kept.NONE, 0


def safe_name(name: str, limit: int = 100) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".")
    return cleaned[-limit:] or "unnamed"


def write_json_atomically(path: Path, value: object) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(value, handle, ensure_ascii=False, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class Quarantine:
    def __init__(
        self, root: Path, db: Database, bounds: QuarantineBounds = QuarantineBounds()
    ) -> None:
        self.root = root.resolve()
        self.db = db
        self.bounds = bounds
        # Budget check and copy happen under one lock so two uploads of this process cannot
        # both take the last room; between processes the overshoot is at most one file each.
        self._lock = threading.Lock()
        self._next_prune = 0.0
        self._staging = self.root / ".tmp"
        self._remove_stale_staging()

    def _remove_stale_staging(self) -> None:
        if not self._staging.is_dir():
            return
        cutoff = time.time() - _STALE_STAGING.total_seconds()
        for leftover in self._staging.iterdir():
            try:
                if leftover.lstat().st_mtime < cutoff:
                    leftover.unlink()
            except OSError:
                logger.warning("cannot remove the stale quarantine copy %s", leftover)

    def used_bytes(self, session: Session) -> int:
        return int(session.scalar(select(func.coalesce(func.sum(QuarantineRecord.kept_bytes), 0))))

    def keep(self, path: Path, rejection: Rejection, *, actor: str) -> KeptFile:
        """Set `path` aside (whole, its first bytes, or none of it) with its reason."""
        day = rejection.received_at.strftime("%Y-%m-%d")
        name = safe_name(rejection.original_name)
        with self._lock:
            now = datetime.now(UTC)
            size = path.stat().st_size
            with self.db.read() as session:
                used = self.used_bytes(session)
            if used + size > self.bounds.budget_bytes or time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + _PRUNE_EVERY_SECONDS
                # The retention's work, not the uploader's: ledgered as the quarantine's own.
                if self.prune(now=now):
                    with self.db.read() as session:
                        used = self.used_bytes(session)
            free = free_bytes(self.root)
            room = None if free is None else max(0, free - self.bounds.keep_free_bytes)
            kept, limit = bytes_to_keep(size, used, self.bounds, room)
            # -1: write no file at all (an empty file kept whole is still a file, of 0 bytes).
            limit = -1 if kept is Kept.NONE else limit
            sha256, key, kept_bytes = self._copy(
                path, limit, lambda sha: f"{day}/{sha[:16]}-{name}"
            )
        over_budget = used + size > self.bounds.budget_bytes
        if kept is not Kept.WHOLE:
            logger.warning(
                "quarantine at %d of its %d-byte budget, %s bytes free above the floor: "
                "kept %d of the %d bytes of %s (%s)",
                used,
                self.bounds.budget_bytes,
                "unknown" if room is None else room,
                kept_bytes,
                size,
                rejection.original_name,
                kept.value,
            )
        removed_at = None if kept is Kept.WHOLE else now
        removed_reason = (
            None
            if kept is Kept.WHOLE
            else (BytesRemoved.BUDGET if over_budget else BytesRemoved.DISK).value
        )
        self._write_sidecar(
            key,
            rejection,
            sha256=sha256,
            size=size,
            kept=kept,
            kept_bytes=kept_bytes,
            removed_at=removed_at,
            removed_reason=removed_reason,
        )

        def record(session: Session) -> int:
            # A kill after this commit but before the arrival was removed brings the same
            # arrival (same bytes, name and arrival time) back: it keeps its one record.
            earlier = session.scalar(
                select(QuarantineRecord.id).where(
                    QuarantineRecord.sha256 == sha256,
                    QuarantineRecord.camera_code.is_not_distinct_from(rejection.camera_code),
                    QuarantineRecord.original_name == rejection.original_name,
                    QuarantineRecord.source == rejection.source,
                    QuarantineRecord.received_at == rejection.received_at,
                )
            )
            if earlier is not None:
                return earlier
            row = QuarantineRecord(
                camera_code=rejection.camera_code,
                declared_start=rejection.declared_start,
                claimed_start=rejection.claimed_start,
                claimed_end=rejection.claimed_end,
                original_name=rejection.original_name,
                source=rejection.source,
                reason_code=rejection.code,
                reason=rejection.reason,
                sha256=sha256,
                size_bytes=size,
                stored_path=key,
                received_at=rejection.received_at,
                kept_bytes=kept_bytes,
                bytes_removed_at=removed_at,
                bytes_removed_reason=removed_reason,
            )
            session.add(row)
            session.flush()
            ledger.append(
                session,
                actor=actor,
                action="segment.rejected",
                subject_type="quarantine",
                subject_id=row.id,
                details={
                    "code": rejection.code,
                    "reason": rejection.reason,
                    "camera": rejection.camera_code,
                    "declared_start": rejection.declared_start,
                    "original_name": rejection.original_name,
                    "sha256": sha256,
                    "size": size,
                    "path": key,
                    # Only when not whole, so entries of ordinary rejections keep their shape.
                    **(
                        {} if kept is Kept.WHOLE else {"kept": kept.value, "kept_bytes": kept_bytes}
                    ),
                },
            )
            return row.id

        return KeptFile(self.db.run_write(record), kept, kept_bytes)

    def _copy(
        self, source: Path, limit: int, key_for: Callable[[str], str]
    ) -> tuple[str, str, int]:
        """Hash all of `source` and copy its first `limit` bytes durably; (sha256, key, kept)."""
        digest = hashlib.sha256()
        self._staging.mkdir(parents=True, exist_ok=True)
        tmp = self._staging / f"{uuid.uuid4().hex}.tmp"
        written = 0
        try:
            with source.open("rb") as reader, tmp.open("wb") as writer:
                while chunk := reader.read(_CHUNK):
                    digest.update(chunk)
                    if written < limit:
                        part = chunk[: limit - written]
                        writer.write(part)
                        written += len(part)
                writer.flush()
                os.fsync(writer.fileno())
            sha256 = digest.hexdigest()
            key = check_key(key_for(sha256))
            target = self.root / key
            target.parent.mkdir(parents=True, exist_ok=True)
            if written == 0 and limit < 0:
                return sha256, key, 0
            if target.exists():
                # The same bytes under the same name the same day (or a retry after a kill):
                # one copy serves both records, counted against the budget for each.
                return sha256, key, target.stat().st_size
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
            _fsync_dir(target.parent)
            return sha256, key, written
        finally:
            tmp.unlink(missing_ok=True)

    def _write_sidecar(
        self,
        key: str,
        rejection: Rejection,
        *,
        sha256: str,
        size: int,
        kept: Kept,
        kept_bytes: int,
        removed_at: datetime | None,
        removed_reason: str | None,
    ) -> None:
        write_json_atomically(
            self.root / f"{key}.json",
            {
                "code": rejection.code,
                "reason": rejection.reason,
                "camera": rejection.camera_code,
                "declared_start": rejection.declared_start,
                "original_name": rejection.original_name,
                "source": rejection.source,
                "sha256": sha256,
                "size": size,
                "received_at": rejection.received_at.isoformat(),
                "kept": kept.value,
                "kept_bytes": kept_bytes,
                "bytes_removed_at": removed_at.isoformat() if removed_at else None,
                "bytes_removed_reason": removed_reason,
            },
        )

    def due_for_pruning(self, session: Session, now: datetime) -> list[QuarantineRecord]:
        """Records whose bytes are past the quarantine retention and still on disk."""
        return list(
            session.scalars(
                select(QuarantineRecord)
                .where(
                    QuarantineRecord.kept_bytes > 0,
                    QuarantineRecord.received_at < now - self.bounds.retention,
                )
                .order_by(QuarantineRecord.received_at, QuarantineRecord.id)
            )
        )

    def prune(self, *, now: datetime | None = None, actor: str = "quarantine") -> list[PrunedFile]:
        """Remove the bytes past the retention; each record stays and says when and why."""
        now = now or datetime.now(UTC)
        with self.db.read() as session:
            due = [
                (row.id, row.stored_path, row.received_at)
                for row in self.due_for_pruning(session, now)
            ]
        pruned: list[PrunedFile] = []
        for record_id, key, received_at in due:

            def forget(session: Session, record_id: int = record_id) -> int:
                row = session.get(QuarantineRecord, record_id)
                if row is None or row.kept_bytes == 0:
                    return 0
                freed = row.kept_bytes
                row.kept_bytes = 0
                row.bytes_removed_at = now
                row.bytes_removed_reason = BytesRemoved.RETENTION.value
                ledger.append(
                    session,
                    actor=actor,
                    action="quarantine.bytes_removed",
                    subject_type="quarantine",
                    subject_id=row.id,
                    details={
                        "reason": BytesRemoved.RETENTION.value,
                        "retention_days": self.bounds.retention.total_seconds() / 86400,
                        "received_at": row.received_at.isoformat(),
                        "sha256": row.sha256,
                        "size": row.size_bytes,
                        "freed_bytes": freed,
                        "path": row.stored_path,
                    },
                )
                return freed

            # Row first, then the file: a kill in between leaves an orphan file that the next
            # prune cannot see, never a record claiming bytes that are gone.
            freed = self.db.run_write(forget)
            if not freed:
                continue
            target = self.root / check_key(key)
            target.unlink(missing_ok=True)
            self._mark_sidecar(key, now)
            pruned.append(PrunedFile(record_id, key, freed, received_at))
        if pruned:
            logger.info(
                "quarantine retention: removed the bytes of %d files (%d bytes); records kept",
                len(pruned),
                sum(item.freed_bytes for item in pruned),
            )
        return pruned

    def _mark_sidecar(self, key: str, now: datetime) -> None:
        sidecar = self.root / f"{key}.json"
        try:
            value = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning(
                "quarantine record file %s unreadable; the database row is updated", sidecar
            )
            return
        value.update(
            kept_bytes=0,
            bytes_removed_at=now.isoformat(),
            bytes_removed_reason=BytesRemoved.RETENTION.value,
        )
        write_json_atomically(sidecar, value)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
