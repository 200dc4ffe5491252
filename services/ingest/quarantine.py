"""Quarantine: files that are not usable evidence, kept byte for byte with their reason.

A rejected file is never deleted: it is copied (hashed, fsynced, read-only) under
`<data>/quarantine/<day>/`, a JSON file beside it says why, a row and a ledger entry record it,
and only then does the caller remove the original.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import ledger
from storage.blobs import LocalBlobStore
from storage.db import Database
from storage.models import QuarantineRecord


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
    def __init__(self, root: Path, db: Database) -> None:
        self.root = root.resolve()
        self.files = LocalBlobStore(self.root)
        self.db = db

    def keep(self, path: Path, rejection: Rejection, *, actor: str) -> int:
        """Set `path` aside with its reason; returns the quarantine record id."""
        day = rejection.received_at.strftime("%Y-%m-%d")
        name = safe_name(rejection.original_name)
        stored = self.files.put_file(
            path,
            lambda sha256: f"{day}/{sha256[:16]}-{name}",
            retain_until=rejection.received_at,
        )
        write_json_atomically(
            self.root / f"{stored.key}.json",
            {
                "code": rejection.code,
                "reason": rejection.reason,
                "camera": rejection.camera_code,
                "declared_start": rejection.declared_start,
                "original_name": rejection.original_name,
                "source": rejection.source,
                "sha256": stored.sha256,
                "size": stored.size,
                "received_at": rejection.received_at.isoformat(),
            },
        )

        def record(session: Session) -> int:
            # A kill after this commit but before the arrival was removed brings the same
            # arrival (same bytes, name and arrival time) back: it keeps its one record.
            earlier = session.scalar(
                select(QuarantineRecord.id).where(
                    QuarantineRecord.sha256 == stored.sha256,
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
                sha256=stored.sha256,
                size_bytes=stored.size,
                stored_path=stored.key,
                received_at=rejection.received_at,
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
                    "sha256": stored.sha256,
                    "size": stored.size,
                    "path": stored.key,
                },
            )
            return row.id

        return self.db.run_write(record)
