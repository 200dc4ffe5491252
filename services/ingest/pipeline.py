"""One complete recording file -> durable, indexed, hashed evidence (or quarantine, with reason).

Order matters for crash safety (docs/ingest.md): the blob is made durable first, then the
segment row and its ledger entry are committed in one transaction, and only then is the arrival
file removed. A kill between any two steps leaves the arrival in place; ingesting it again finds
the same key (keys include the content hash) and completes the job.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.health.sampling import DAMAGED
from services.ingest.clock import (
    DeclaredStart,
    StartError,
    check_plausible,
    clock_flags,
    file_extension,
    parse_name_start,
    parse_rfc3339,
)
from services.ingest.probe import MediaProbe, PictureLimits, ProbeError, probe_recording
from services.ingest.quarantine import Quarantine, Rejection
from services.retention.purge import expiry_of_span
from services.settings import Settings
from storage import ledger
from storage.blobs import BlobStore
from storage.db import Database
from storage.faults import fault_point
from storage.keys import blob_key
from storage.models import Camera, HealthFlag, Segment

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"
    # Another worker holds the file, or it vanished because another worker finished it.
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Arrival:
    """A complete recording file waiting to become evidence."""

    path: Path
    camera_code: str
    file_name: str
    source: str  # "http" | "spool"
    received_at: datetime
    # The upload header's value; None means the start is read from the file name.
    declared_start: str | None = None
    # An HTTP upload's sidecar (docs/ingest.md), removed together with the file.
    meta_path: Path | None = None
    # Who pushed an HTTP upload (the sidecar says), so a sweep-finished one is ledgered as theirs.
    uploader: str | None = None


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    segment: Segment | None = None
    code: str | None = None
    reason: str | None = None
    quarantine_id: int | None = None
    # How much of a rejected file the quarantine kept: "whole", "sample" or "none" (its budget).
    quarantine_kept: str | None = None
    camera_code: str | None = None
    # The wall-clock time the file stood for (stored, or claimed by a rejected file), if known.
    span: tuple[datetime, datetime] | None = None
    # Stretches of a stored file the probe found damaged (stored as `damaged` health flags).
    damaged: tuple[tuple[datetime, datetime], ...] = ()


# Called after a file became evidence or was quarantined: coverage and health listen here.
IngestListener = Callable[[IngestResult], None]
# Called when an ingest failed on something outside the file (store, database, disk).
FailureListener = Callable[[BaseException], None]


class NotClaimable(Exception):
    """The path is not a regular file of the spool's own tree: never read, moved or removed."""


# O_NONBLOCK: a FIFO named like a recording would otherwise hang the opener until a writer came.
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_regular_file(path: Path, root: Path | None = None) -> int:
    """A descriptor of `path`, which must be a regular file, not a symlink, FIFO or device.

    Under `root` every folder on the way is opened without following symlinks too, so a
    symlinked camera folder cannot lead outside the tree. Raises FileNotFoundError when the
    file is gone and NotClaimable (with the reason) for anything else that is not ours."""
    folders: list[str] = []
    if root is not None:
        try:
            folders = list(path.relative_to(root).parts[:-1])
        except ValueError as exc:
            raise NotClaimable(f"{path} is outside {root}") from exc
    parent_fd = os.open(
        path.parent if root is None else root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    )
    try:
        for folder in folders:
            try:
                child_fd = os.open(folder, _OPEN_FOLDER, dir_fd=parent_fd)
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise NotClaimable(
                    f"folder {folder!r} of {path} is not a real folder of the spool "
                    "(a symbolic link or a file)"
                ) from exc
            os.close(parent_fd)
            parent_fd = child_fd
        try:
            fd = os.open(path.name, _OPEN_FILE, dir_fd=parent_fd)
        except FileNotFoundError:
            raise
        except OSError as exc:
            # ELOOP is what O_NOFOLLOW answers for a symlink.
            raise NotClaimable(f"{path} is not a regular file ({exc.strerror})") from exc
    finally:
        os.close(parent_fd)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotClaimable(f"{path} is not a regular file ({file_kind(mode)})")
    return fd


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words for the log."""
    for test, kind in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return "a regular file" if stat.S_ISREG(mode) else "an unknown kind of file"


@contextmanager
def claim(path: Path, root: Path | None = None) -> Iterator[bool]:
    """An exclusive, non-blocking lock on the file itself, so the HTTP handler, the spool
    watcher and a separate worker process never ingest the same file at once. The kernel
    drops the lock when its holder dies, even by SIGKILL.

    Only a regular file is claimed (see `open_regular_file`; under `root`, only one inside
    root's own tree): a symlink, FIFO or device named like a recording is refused, never read."""
    try:
        fd = open_regular_file(path, root)
    except FileNotFoundError:
        yield False
        return
    except NotClaimable as exc:
        logger.warning("not claiming %s: %s", path, exc)
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            # lstat: the name must still be this very file, not a symlink put in its place.
            now = os.lstat(path)
            held = os.fstat(fd)
            same = (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
        except FileNotFoundError:
            same = False
        yield same
    finally:
        os.close(fd)


@dataclass
class IngestPipeline:
    db: Database
    store: BlobStore
    quarantine: Quarantine
    settings: Settings
    listeners: list[IngestListener] = field(default_factory=list)
    failure_listeners: list[FailureListener] = field(default_factory=list)
    _probe_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=2, thread_name_prefix="probe"),
        init=False,
        repr=False,
    )

    def ingest(self, arrival: Arrival, *, actor: str = "ingest") -> IngestResult:
        spool = self.settings.resolved_spool_dir
        # A spool arrival must lie in the spool's own tree; a caller's own path (bench, tests
        # of the pipeline alone) only has to be a regular file.
        root = spool if arrival.path.is_relative_to(spool) else None
        with claim(arrival.path, root) as claimed:
            if not claimed:
                return IngestResult(Outcome.SKIPPED, reason="claimed elsewhere or already gone")
            try:
                result = self._ingest_claimed(arrival, actor)
            except Exception as exc:
                # The file stays where it is; readiness hears of a full disk.
                for failed in self.failure_listeners:
                    failed(exc)
                raise
        if result.outcome in (Outcome.STORED, Outcome.REJECTED, Outcome.CONFLICT):
            for listener in self.listeners:
                try:
                    listener(result)
                except Exception:
                    # The evidence is safe; a failed follow-up is redone by the sweeps.
                    logger.exception("post-ingest step %r failed for %s", listener, arrival.path)
        return result

    def _ingest_claimed(self, arrival: Arrival, actor: str) -> IngestResult:
        declared: DeclaredStart | None = None
        try:
            if arrival.declared_start is not None:
                declared = parse_rfc3339(arrival.declared_start)
            else:
                declared = parse_name_start(arrival.file_name, self.settings.zone)
            check_plausible(declared)
        except StartError as exc:
            return self._reject(arrival, actor, exc.code, exc.reason, declared)

        with self.db.read() as session:
            camera = session.scalar(select(Camera).where(Camera.code == arrival.camera_code))
        if camera is None:
            return self._reject(
                arrival,
                actor,
                "unknown_camera",
                f"camera {arrival.camera_code!r} is not in the registry",
                declared,
            )

        # Probe while the bytes are read, hashed and (on the local store) copied durably: the
        # two overlap on separate cores. Nothing becomes evidence until the probe has passed.
        probing = self._probe_pool.submit(
            probe_recording,
            arrival.path,
            max_duration_seconds=self.settings.max_segment_seconds,
            limits=PictureLimits(
                max_long_side=self.settings.max_picture_long_side,
                max_short_side=self.settings.max_picture_short_side,
                max_pixel_rate=self.settings.max_pixel_rate,
            ),
        )
        try:
            staged = self.store.stage(arrival.path)
        except BaseException:
            probing.cancel()
            raise
        try:
            fault_point("ingest.staged")
            try:
                probe = probing.result()
            except ProbeError as exc:
                return self._reject(arrival, actor, exc.code, exc.reason, declared)

            start = declared.instant
            end = start + timedelta(seconds=probe.duration_seconds)
            existing = self._segment_at(camera.id, start)
            if existing is not None:
                return self._same_start(arrival, actor, existing, staged.sha256, declared, end)

            expiry = self._expiry(camera, start, end)
            key = blob_key(camera.code, start, staged.sha256, file_extension(arrival.file_name))
            stored = self.store.commit(staged, key, retain_until=expiry)
            fault_point("ingest.blob_stored")
        finally:
            self.store.discard(staged)
        flags = clock_flags(
            start=start,
            end=end,
            received_at=arrival.received_at,
            creation_time=probe.creation_time,
            zone_assumed=declared.zone_assumed,
            ahead_tolerance=timedelta(seconds=self.settings.clock_ahead_tolerance_seconds),
        )
        values = dict(
            camera_id=camera.id,
            starts_at=start,
            ends_at=end,
            declared_start=declared.raw,
            duration_seconds=probe.duration_seconds,
            sha256=stored.sha256,
            size_bytes=stored.size,
            blob_key=stored.key,
            container=probe.container,
            video_codec=probe.video_codec,
            width=probe.width,
            height=probe.height,
            frame_rate=probe.frame_rate,
            keyframe_count=probe.keyframe_count,
            has_audio=probe.has_audio,
            clock_flags=flags,
            source=arrival.source,
            original_name=arrival.file_name[:255],
            received_at=arrival.received_at,
            expires_at=expiry,
            purged_at=None,
        )
        try:
            segment = self.db.run_write(
                lambda session: self._record(
                    session, values, camera, probe, stored.retain_until, actor
                )
            )
        except IntegrityError:
            # Another worker stored this camera and start between our check and our commit.
            existing = self._segment_at(camera.id, start)
            if existing is None:
                raise
            return self._same_start(arrival, actor, existing, stored.sha256, declared, end)
        fault_point("ingest.committed")
        self._remove_arrival(arrival)
        logger.info(
            "stored %s %s (%.1f s, %d bytes) as segment %s",
            camera.code,
            declared.raw,
            probe.duration_seconds,
            stored.size,
            segment.id,
        )
        return IngestResult(
            Outcome.STORED,
            segment=segment,
            camera_code=camera.code,
            span=(segment.starts_at, segment.ends_at),
            damaged=tuple(
                (start + timedelta(seconds=a), min(start + timedelta(seconds=b), end))
                for a, b in probe.damaged
            ),
        )

    def _record(
        self,
        session: Session,
        values: dict[str, object],
        camera: Camera,
        probe: MediaProbe,
        lock_until: datetime | None,
        actor: str,
    ) -> Segment:
        # A fresh row per attempt: run_write may retry after a lost race for the ledger head.
        segment = Segment(**values)
        session.add(segment)
        session.flush()
        # Damage the probe found is on the record from the first moment the segment exists,
        # in the same transaction: footage is never "good" until the health pass looks again.
        origin = segment.starts_at
        damaged = [
            (origin + timedelta(seconds=start), origin + timedelta(seconds=end))
            for start, end in probe.damaged
        ]
        session.add_all(
            HealthFlag(
                segment_id=segment.id,
                camera_id=segment.camera_id,
                starts_at=start,
                ends_at=min(end, segment.ends_at),
                kind=DAMAGED,
            )
            for start, end in damaged
            if start < segment.ends_at
        )
        ledger.append(
            session,
            actor=actor,
            action="segment.ingested",
            subject_type="segment",
            subject_id=segment.id,
            details={
                "camera": camera.code,
                "start": segment.starts_at.isoformat(),
                "end": segment.ends_at.isoformat(),
                "declared_start": segment.declared_start,
                "duration_seconds": segment.duration_seconds,
                "sha256": segment.sha256,
                "size": segment.size_bytes,
                "key": segment.blob_key,
                "source": segment.source,
                "original_name": segment.original_name,
                "container": probe.container,
                "video_codec": probe.video_codec,
                "expires_at": segment.expires_at.isoformat(),
                "object_lock_until": lock_until.isoformat() if lock_until else None,
                "clock_flags": segment.clock_flags,
                # Only when there is something to say, so entries of sound files keep their shape.
                **(
                    {"damaged": [[start.isoformat(), end.isoformat()] for start, end in damaged]}
                    if damaged
                    else {}
                ),
                **({"trailing_bytes": probe.trailing_bytes} if probe.trailing_bytes else {}),
            },
        )
        return segment

    def _segment_at(self, camera_id: int, start: datetime) -> Segment | None:
        with self.db.read() as session:
            return session.scalar(
                select(Segment).where(Segment.camera_id == camera_id, Segment.starts_at == start)
            )

    def _same_start(
        self,
        arrival: Arrival,
        actor: str,
        existing: Segment,
        sha256: str,
        declared: DeclaredStart,
        end: datetime,
    ) -> IngestResult:
        """The camera already has a segment at this start: a retry, or a conflicting file."""
        if sha256 == existing.sha256:
            self._remove_arrival(arrival)
            return IngestResult(Outcome.DUPLICATE, segment=existing)
        reason = (
            f"camera {arrival.camera_code!r} already has a different recording starting at "
            f"{existing.starts_at.isoformat()} (segment {existing.id}, sha256 {existing.sha256})"
        )
        result = self._reject(arrival, actor, "conflict", reason, declared, end)
        return IngestResult(
            Outcome.CONFLICT,
            segment=existing,
            code="conflict",
            reason=reason,
            quarantine_id=result.quarantine_id,
            quarantine_kept=result.quarantine_kept,
        )

    def _reject(
        self,
        arrival: Arrival,
        actor: str,
        code: str,
        reason: str,
        declared: DeclaredStart | None,
        end: datetime | None = None,
    ) -> IngestResult:
        rejection = Rejection(
            code=code,
            reason=reason,
            camera_code=arrival.camera_code,
            declared_start=declared.raw if declared else arrival.declared_start,
            claimed_start=(
                declared.instant
                if declared and code not in ("clock_reset", "clock_far_ahead")
                else None
            ),
            claimed_end=end,
            original_name=arrival.file_name,
            source=arrival.source,
            received_at=arrival.received_at,
        )
        kept = self.quarantine.keep(arrival.path, rejection, actor=actor)
        fault_point("quarantine.recorded")
        self._remove_arrival(arrival)
        logger.warning(
            "quarantined %s from %s (%s): %s", arrival.file_name, arrival.camera_code, code, reason
        )
        claimed = rejection.claimed_start
        return IngestResult(
            Outcome.REJECTED,
            code=code,
            reason=reason,
            quarantine_id=kept.record_id,
            quarantine_kept=kept.kept.value,
            camera_code=arrival.camera_code,
            span=None if claimed is None else (claimed, rejection.claimed_end or claimed),
        )

    def _expiry(self, camera: Camera, start: datetime, end: datetime) -> datetime:
        # The schedule import computes it the same way (margins included), whichever came first.
        with self.db.read() as session:
            return expiry_of_span(session, self.settings, camera.code, start, end)

    def _remove_arrival(self, arrival: Arrival) -> None:
        # No directory fsync: should a crash undo the unlink, the file is simply ingested again
        # and found to be a duplicate.
        arrival.path.unlink(missing_ok=True)
        if arrival.meta_path is not None:
            arrival.meta_path.unlink(missing_ok=True)
