"""The spool: where recordings wait to become evidence.

Two kinds of waiting file:
- `<spool>/<camera_code>/<start>[_...].<ext>`: dropped by camera hosts (written as `NAME.part`,
  renamed when complete).
- `<spool>/.incoming/<id>.bin` + `<id>.json`: an HTTP upload, complete and acknowledged-to-be;
  the sidecar holds what the request said (camera, name, start header, who pushed it). A
  `<id>.part` is an upload still arriving, or one whose client vanished (never acknowledged,
  so removable).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.ingest.pipeline import Arrival

logger = logging.getLogger(__name__)

# An upload that stopped arriving this long ago has lost its client.
STALE_UPLOAD_SECONDS = 3600.0
# A completed upload is normally ingested by its own request; the sweep takes over only after
# this long, so that it does not race a request that is still working.
ORPHANED_UPLOAD_SECONDS = 60.0


@dataclass(frozen=True)
class Candidate:
    path: Path
    # Monotonic-free wall time (seconds since epoch) after which the file may be taken.
    ready_at: float


def is_spool_recording(path: Path, spool_dir: Path) -> bool:
    """A final-named file directly inside a camera folder of the spool."""
    try:
        relative = path.relative_to(spool_dir)
    except ValueError:
        return False
    parts = relative.parts
    return (
        len(parts) == 2
        and not parts[0].startswith(".")
        and not parts[1].startswith(".")
        and not parts[1].endswith(".part")
    )


def spool_arrival(path: Path, spool_dir: Path) -> Arrival:
    camera_code = path.relative_to(spool_dir).parts[0]
    return Arrival(
        path=path,
        camera_code=camera_code,
        file_name=path.name,
        source="spool",
        received_at=_arrival_time(path),
    )


def incoming_arrival(data_path: Path) -> Arrival | None:
    """The arrival an HTTP upload's sidecar describes, or None when the sidecar is unreadable."""
    meta_path = data_path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return Arrival(
            path=data_path,
            camera_code=str(meta["camera"]),
            file_name=str(meta["file_name"]),
            source="http",
            received_at=datetime.fromisoformat(meta["received_at"]),
            declared_start=meta.get("declared_start"),
            meta_path=meta_path,
            uploader=str(meta["actor"]) if meta.get("actor") else None,
        )
    except (OSError, ValueError, KeyError) as exc:
        logger.error("upload sidecar %s is unreadable: %s", meta_path, exc)
        return None


def scan_spool(spool_dir: Path, settle_seconds: float) -> Iterator[Candidate]:
    """Every waiting spool recording, each ready once it has stopped changing."""
    if not spool_dir.exists():
        return
    for camera_dir in sorted(spool_dir.iterdir()):
        if not camera_dir.is_dir() or camera_dir.name.startswith("."):
            continue
        for path in sorted(camera_dir.iterdir()):
            if path.is_file() and is_spool_recording(path, spool_dir):
                yield settled(path, settle_seconds)


def settled(path: Path, settle_seconds: float) -> Candidate:
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        modified = 0.0
    return Candidate(path, modified + settle_seconds)


def sweep_incoming(incoming_dir: Path, now: float | None = None) -> Iterator[Candidate]:
    """Completed uploads whose request died; also removes what was never acknowledged."""
    if not incoming_dir.exists():
        return
    now = time.time() if now is None else now
    for path in sorted(incoming_dir.iterdir()):
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        if path.suffix == ".bin":
            if age >= ORPHANED_UPLOAD_SECONDS:
                yield Candidate(path, now)
        elif path.suffix == ".part":
            if age >= STALE_UPLOAD_SECONDS and _unlocked(path):
                logger.warning("removing upload %s: its client stopped sending", path.name)
                path.unlink(missing_ok=True)
                path.with_suffix(".json").unlink(missing_ok=True)
        elif path.suffix == ".json":
            data_missing = not (
                path.with_suffix(".bin").exists() or path.with_suffix(".part").exists()
            )
            if data_missing and age >= STALE_UPLOAD_SECONDS:
                path.unlink(missing_ok=True)


def _unlocked(path: Path) -> bool:
    """True when no live request holds the upload (the writer keeps a lock while writing)."""
    try:
        with path.open("rb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
    except (BlockingIOError, FileNotFoundError):
        return False


def _arrival_time(path: Path) -> datetime:
    # When the file appeared in the spool is the best arrival time we have after a restart.
    try:
        return datetime.fromtimestamp(os.stat(path).st_mtime, UTC)
    except FileNotFoundError:
        return datetime.now(UTC)
