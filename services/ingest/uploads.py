"""A staged HTTP upload (`<staging>/<id>.bin` + its `<id>.json` sidecar) becoming evidence, and
the record of what became of it (`<id>.result`), which the API answers from.

One function does the work whoever schedules it: the PUT handler's own thread (SQLite, or
EXAMVAULT_QUEUE=in_process) or a job any `examvault worker` takes (the PostgreSQL queue). The
result record is plain data (outcome, ids, reasons), written atomically in the staging folder
every API machine reads, so the machine that answers need not be the one that ingested.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from services.ingest.pipeline import IngestPipeline, IngestResult, Outcome
from services.ingest.quarantine import write_json_atomically
from services.ingest.spool import SIDECAR_MAX_BYTES, incoming_arrival

logger = logging.getLogger(__name__)

RESULT_SUFFIX = ".result"
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class UploadResult:
    """What became of one staged upload: enough for the API to answer as the PUT would have."""

    outcome: Outcome
    camera: str
    actor: str | None
    sha256: str | None
    segment_id: int | None = None
    code: str | None = None
    reason: str | None = None
    quarantine_id: int | None = None
    quarantine_kept: str | None = None
    damaged: tuple[tuple[datetime, datetime], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "camera": self.camera,
            "actor": self.actor,
            "sha256": self.sha256,
            "segment_id": self.segment_id,
            "code": self.code,
            "reason": self.reason,
            "quarantine_id": self.quarantine_id,
            "quarantine_kept": self.quarantine_kept,
            "damaged": [[start.isoformat(), end.isoformat()] for start, end in self.damaged],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> UploadResult:
        return cls(
            outcome=Outcome(raw["outcome"]),
            camera=str(raw["camera"]),
            actor=raw.get("actor"),
            sha256=raw.get("sha256"),
            segment_id=raw.get("segment_id"),
            code=raw.get("code"),
            reason=raw.get("reason"),
            quarantine_id=raw.get("quarantine_id"),
            quarantine_kept=raw.get("quarantine_kept"),
            damaged=tuple(
                (datetime.fromisoformat(start), datetime.fromisoformat(end))
                for start, end in raw.get("damaged", [])
            ),
        )


def staged_paths(staging_dir: Path, upload_id: str) -> tuple[Path, Path, Path]:
    """(data `.bin`, sidecar `.json`, result `.result`) of one upload."""
    stem = staging_dir / upload_id
    return stem.with_suffix(".bin"), stem.with_suffix(".json"), stem.with_suffix(RESULT_SUFFIX)


def ingest_staged_upload(
    pipeline: IngestPipeline, data_path: Path, *, record: bool = True
) -> IngestResult | None:
    """Ingest one staged upload and (`record`) write its result for the API that answers;
    None when there is nothing to do (it was already ingested: its `.bin` is gone). SKIPPED
    (another process holds it) records nothing: that process records the result. The PUT
    that ingests in its own thread answers from the result itself and records nothing."""
    if not os.path.lexists(data_path):
        return None
    arrival = incoming_arrival(data_path)
    if arrival is None:
        return None
    sidecar = read_sidecar(arrival.meta_path) if arrival.meta_path else {}
    result = pipeline.ingest(arrival, actor=arrival.uploader or "ingest")
    if record and result.outcome is not Outcome.SKIPPED:
        written = UploadResult(
            outcome=result.outcome,
            camera=arrival.camera_code,
            actor=arrival.uploader,
            sha256=(result.segment.sha256 if result.segment else None) or sidecar.get("sha256"),
            segment_id=result.segment.id if result.segment else None,
            code=result.code,
            reason=result.reason,
            quarantine_id=result.quarantine_id,
            quarantine_kept=result.quarantine_kept,
            damaged=result.damaged,
        )
        # The API waits a few seconds for this after the arrival is gone; a kill right here
        # (evidence committed, arrival removed, no result) makes the status URL answer 404:
        # the host then pushes again and hears 200 with the same SHA-256.
        write_json_atomically(data_path.with_suffix(RESULT_SUFFIX), written.to_json())
    return result


def read_result(result_path: Path) -> UploadResult | None:
    try:
        with result_path.open("rb") as handle:
            return UploadResult.from_json(json.loads(handle.read(SIDECAR_MAX_BYTES)))
    except FileNotFoundError:
        return None


def read_sidecar(meta_path: Path) -> dict[str, Any]:
    """The sidecar's fields ({} when it is gone or unreadable): who pushed, what, its SHA-256."""
    try:
        with meta_path.open("rb") as handle:
            value = json.loads(handle.read(SIDECAR_MAX_BYTES))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
