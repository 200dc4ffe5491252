"""Picture health of stored segments: sample keyframes (services/health/sampling.py), keep the raw
metrics as rows, learn each camera's sharpness baseline, manage reference images.

Runs after ingest, off the ingest path (a thread in `serve` and `worker`), and catches up on
any segment never checked, so a restart or a crash only delays it. Each segment's decode has a
time budget (EXAMVAULT_HEALTH_CHECK_BUDGET_SECONDS); footage past the point where it ran out is
flagged `unchecked`, so a report shows the stretch nobody looked at instead of calling it fine.

A check that cannot read the footage (the blob store is down) is not a verdict on the
picture: the segment is flagged `check_failed` (coverage shows it), and tried again later
with backoff, the schedule kept in the database so a restart does not forget it. After
RETRY_ATTEMPTS it stays flagged until `examvault health resample` asks again.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Empty, Queue

import numpy as np
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from services.background import BackgroundThread
from services.health.sampling import (
    DAMAGED,
    HealthThresholds,
    TimedSample,
    encode_jpeg,
    frame_at,
    health_intervals,
    prepare_reference,
    sample_segment_within,
)
from services.health.sampling import HealthSample as SampledFrame
from services.settings import Settings
from storage import ledger
from storage.blobs import BlobStore, BlobStoreError
from storage.db import Database
from storage.models import Camera, HealthFlag, HealthSample, ReferenceImage, Segment

logger = logging.getLogger(__name__)

# The flag of footage the health check did not reach (its budget ran out). Not derived from
# samples, so re-deriving flags from retuned thresholds keeps it.
UNCHECKED = "unchecked"
# The flag of a segment whose check could not run at all (its footage could not be read):
# unlike `unchecked`, nobody looked at any of it. Not derived from samples either.
CHECK_FAILED = "check_failed"
# Retries of a check that could not read the footage: 1, 2, 4 ... minutes, at most an hour
# apart, RETRY_ATTEMPTS times in all (about 8 hours), then left to `health resample`.
RETRY_FIRST = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=1)
RETRY_ATTEMPTS = 12
# How much one segment's healthy samples move the camera's sharpness baseline: slow enough
# that a lens covered for a whole sitting does not become the new normal.
_BASELINE_WEIGHT = 0.1


class ReferenceError(ValueError):
    """A reference image that cannot be set; the message says why."""


@dataclass
class HealthChecker:
    db: Database
    store: BlobStore
    settings: Settings
    thresholds: HealthThresholds = field(default_factory=HealthThresholds)

    @contextmanager
    def _local_copy(self, key: str) -> Iterator[Path]:
        """A file to decode: the stored file itself, or a temporary download from S3."""
        path = self.store.local_path(key)
        if path is not None:
            yield path
            return
        with tempfile.NamedTemporaryFile(suffix=Path(key).suffix) as handle:
            for chunk in self.store.read(key):
                handle.write(chunk)
            handle.flush()
            yield Path(handle.name)

    def reference_for(self, session: Session, camera: Camera) -> np.ndarray | None:
        image = session.scalar(
            select(ReferenceImage.image)
            .where(
                or_(
                    ReferenceImage.camera_id == camera.id,
                    (ReferenceImage.room_id == camera.room_id) & ReferenceImage.camera_id.is_(None),
                )
            )
            # A camera's own reference wins over its room's; the newest wins within each.
            .order_by(ReferenceImage.camera_id.is_(None), ReferenceImage.set_at.desc())
            .limit(1)
        )
        return None if image is None else prepare_reference(image)

    def check_segment(self, segment_id: int) -> int:
        """Sample one segment and store its metrics; returns the number of samples."""
        with self.db.read() as session:
            segment = session.get(Segment, segment_id)
            if segment is None or segment.health_checked_at is not None:
                return 0
            camera = session.get(Camera, segment.camera_id)
            assert camera is not None
            reference = self.reference_for(session, camera)
            key, start = segment.blob_key, segment.starts_at
        with self._local_copy(key) as path:
            sampling = sample_segment_within(
                path,
                budget_seconds=self.settings.health_check_budget_seconds,
                reference=reference,
            )
        samples = sampling.samples

        def record(session: Session) -> int:
            # Locked: a resample in another process may be checking the same segment.
            fresh = session.get(Segment, segment_id, with_for_update=True)
            if fresh is None or fresh.health_checked_at is not None:
                return 0
            owner = session.get(Camera, fresh.camera_id)
            assert owner is not None
            rows = [
                HealthSample(
                    segment_id=segment_id,
                    camera_id=fresh.camera_id,
                    at=start + timedelta(seconds=sample.offset_seconds),
                    mean_luma=sample.mean_luma,
                    dark_share=sample.dark_share,
                    motion=sample.motion,
                    sharpness=sample.sharpness,
                    reference_similarity=sample.reference_similarity,
                )
                for sample in samples
            ]
            session.add_all(rows)
            # Judged against the baseline as it stood before this segment taught it anything.
            self._store_flags(session, fresh, rows, owner.sharpness_baseline)
            if sampling.cut_short_at is not None:
                cut = start + timedelta(seconds=sampling.cut_short_at)
                if cut < fresh.ends_at:
                    session.add(
                        HealthFlag(
                            segment_id=segment_id,
                            camera_id=fresh.camera_id,
                            starts_at=max(cut, fresh.starts_at),
                            ends_at=fresh.ends_at,
                            kind=UNCHECKED,
                        )
                    )
            self._store_damage(session, fresh, sampling.damaged)
            session.execute(
                delete(HealthFlag).where(
                    HealthFlag.segment_id == segment_id, HealthFlag.kind == CHECK_FAILED
                )
            )
            fresh.health_checked_at = datetime.now(UTC)
            fresh.health_retry_at, fresh.health_error = None, None
            owner.sharpness_baseline = self._next_baseline(
                owner.sharpness_baseline, [s.sharpness for s in samples if not self._dark(s)]
            )
            return len(samples)

        return self.db.run_write(record)

    def _store_flags(
        self, session: Session, segment: Segment, rows: list[HealthSample], baseline: float | None
    ) -> None:
        timed = [
            TimedSample(
                at=row.at,
                mean_luma=row.mean_luma,
                dark_share=row.dark_share,
                motion=row.motion,
                sharpness=row.sharpness,
                reference_similarity=row.reference_similarity,
            )
            for row in rows
        ]
        for flag in health_intervals(
            timed, baseline_sharpness=baseline, thresholds=self.thresholds
        ):
            if flag.start >= segment.ends_at:
                continue
            session.add(
                HealthFlag(
                    segment_id=segment.id,
                    camera_id=segment.camera_id,
                    starts_at=flag.start,
                    ends_at=min(flag.end, segment.ends_at),
                    kind=flag.kind,
                )
            )

    def _store_damage(
        self, session: Session, segment: Segment, damaged: tuple[tuple[float, float], ...]
    ) -> None:
        """Flag each damaged stretch the keyframes showed, unless the probe already did."""
        known = list(
            session.execute(
                select(HealthFlag.starts_at, HealthFlag.ends_at).where(
                    HealthFlag.segment_id == segment.id, HealthFlag.kind == DAMAGED
                )
            )
        )
        for start_offset, end_offset in damaged:
            start = segment.starts_at + timedelta(seconds=start_offset)
            end = min(segment.starts_at + timedelta(seconds=end_offset), segment.ends_at)
            if start >= end or any(s < end and start < e for s, e in known):
                continue
            session.add(
                HealthFlag(
                    segment_id=segment.id,
                    camera_id=segment.camera_id,
                    starts_at=start,
                    ends_at=end,
                    kind=DAMAGED,
                )
            )

    def rederive_flags(self, camera_code: str | None = None) -> int:
        """Apply the current thresholds to the stored samples again, without decoding:
        what retuning a threshold needs. Returns the number of segments re-flagged."""
        with self.db.read() as session:
            query = select(Segment.id).where(Segment.health_checked_at.is_not(None))
            if camera_code is not None:
                query = query.join(Camera).where(Camera.code == camera_code)
            ids = list(session.scalars(query.order_by(Segment.id)))

        def work(session: Session, segment_id: int) -> None:
            segment = session.get(Segment, segment_id)
            assert segment is not None
            camera = session.get(Camera, segment.camera_id)
            assert camera is not None
            session.execute(
                delete(HealthFlag).where(
                    HealthFlag.segment_id == segment_id,
                    HealthFlag.kind.not_in((UNCHECKED, DAMAGED, CHECK_FAILED)),
                )
            )
            rows = list(
                session.scalars(select(HealthSample).where(HealthSample.segment_id == segment_id))
            )
            self._store_flags(session, segment, rows, camera.sharpness_baseline)

        for segment_id in ids:
            self.db.run_write(lambda session, sid=segment_id: work(session, sid))
        return len(ids)

    def _dark(self, sample: SampledFrame) -> bool:
        return (
            sample.mean_luma <= self.thresholds.black_max_luma
            and sample.dark_share >= self.thresholds.black_min_dark_share
        )

    def _next_baseline(self, current: float | None, sharpness: list[float]) -> float | None:
        if current is not None:
            # Samples that look covered against the current baseline do not teach it anything.
            floor = current * self.thresholds.covered_max_sharpness_ratio
            sharpness = [value for value in sharpness if value >= floor]
        if not sharpness:
            return current
        observed = statistics.median(sharpness)
        if current is None:
            return observed
        return (1 - _BASELINE_WEIGHT) * current + _BASELINE_WEIGHT * observed

    def unchecked(self, limit: int = 100) -> list[int]:
        """Segments never checked, and those whose retry (after a store outage) is due."""
        now = datetime.now(UTC)
        with self.db.read() as session:
            return list(
                session.scalars(
                    select(Segment.id)
                    .where(
                        Segment.health_checked_at.is_(None),
                        Segment.purged_at.is_(None),
                        or_(Segment.health_retry_at.is_(None), Segment.health_retry_at <= now),
                    )
                    .order_by(Segment.id)
                    .limit(limit)
                )
            )

    def check_unchecked(self) -> int:
        """Catch up on every segment not yet checked (or due for a retry); returns how many
        were tried. A round in which the footage cannot be read ends early: the rest waits
        for the next catch-up rather than each costing the store client's retries."""
        done = 0
        while ids := self.unchecked():
            for segment_id in ids:
                done += 1
                if not self.check_logged(segment_id):
                    return done
        return done

    def check_logged(self, segment_id: int) -> bool:
        """Check one segment, never raising for it; False when its footage could not be read
        (it is then flagged and scheduled for a retry)."""
        try:
            self.check_segment(segment_id)
        except BlobStoreError as exc:
            self._defer(segment_id, exc)
            return False
        except Exception:
            # A picture that cannot be sampled is logged, never fatal; mark it so the
            # catch-up loop does not spin on it, and the report shows no health for it.
            logger.exception("health check of segment %s failed", segment_id)
            with self.db.write() as session:
                segment = session.get(Segment, segment_id)
                if segment is not None and segment.health_checked_at is None:
                    segment.health_checked_at = datetime.now(UTC)
        return True

    def _defer(self, segment_id: int, exc: BlobStoreError) -> None:
        """The footage could not be read: say so in coverage and try again later. The count
        and the next attempt are in the segment's row, so a restart keeps the schedule."""
        now = datetime.now(UTC)
        with self.db.write() as session:
            segment = session.get(Segment, segment_id, with_for_update=True)
            if segment is None or segment.health_checked_at is not None:
                return
            segment.health_attempts = (segment.health_attempts or 0) + 1
            segment.health_error = str(exc)[:1000]
            if segment.health_attempts >= RETRY_ATTEMPTS:
                # Done trying by itself; the flag stays until a resample succeeds.
                segment.health_checked_at, segment.health_retry_at = now, None
            else:
                segment.health_retry_at = now + retry_delay(segment.health_attempts)
            flagged = session.scalar(
                select(HealthFlag.id).where(
                    HealthFlag.segment_id == segment_id, HealthFlag.kind == CHECK_FAILED
                )
            )
            if flagged is None:
                session.add(
                    HealthFlag(
                        segment_id=segment_id,
                        camera_id=segment.camera_id,
                        starts_at=segment.starts_at,
                        ends_at=segment.ends_at,
                        kind=CHECK_FAILED,
                    )
                )
            attempts, retry_at = segment.health_attempts, segment.health_retry_at
        logger.warning(
            "health check of segment %s could not read its footage (attempt %d of %d), %s: %s",
            segment_id,
            attempts,
            RETRY_ATTEMPTS,
            f"next try at {retry_at.isoformat()}" if retry_at else "giving up until a resample",
            exc,
        )

    def resample(
        self,
        *,
        camera_code: str | None = None,
        since: datetime | None = None,
        every: bool = False,
    ) -> tuple[int, int]:
        """`examvault health resample`: check again the segments whose check could not run
        (flag `check_failed`), or with `every` all matching ones (their samples and flags
        are replaced). Returns (segments tried, of which still unreadable)."""
        query = select(Segment.id).where(Segment.purged_at.is_(None))
        if camera_code is not None:
            query = query.join(Camera, Camera.id == Segment.camera_id).where(
                Camera.code == camera_code
            )
        if since is not None:
            query = query.where(Segment.ends_at > since)
        if not every:
            failed = select(HealthFlag.segment_id).where(HealthFlag.kind == CHECK_FAILED)
            query = query.where(or_(Segment.id.in_(failed), Segment.health_retry_at.is_not(None)))
        with self.db.read() as session:
            ids = list(session.scalars(query.order_by(Segment.id)))
        unreadable = 0
        for segment_id in ids:
            with self.db.write() as session:
                segment = session.get(Segment, segment_id, with_for_update=True)
                assert segment is not None
                session.execute(delete(HealthSample).where(HealthSample.segment_id == segment_id))
                session.execute(delete(HealthFlag).where(HealthFlag.segment_id == segment_id))
                segment.health_checked_at = segment.health_retry_at = None
                segment.health_attempts, segment.health_error = 0, None
            if not self.check_logged(segment_id):
                unreadable += 1
        return len(ids), unreadable

    # Reference images -------------------------------------------------------------------

    def set_reference(
        self,
        session: Session,
        *,
        camera: Camera,
        image: bytes,
        media_type: str,
        source: str,
        actor: str,
    ) -> ReferenceImage:
        try:
            prepare_reference(image)
        except ValueError as exc:
            raise ReferenceError(str(exc)) from exc
        row = ReferenceImage(
            camera_id=camera.id,
            room_id=camera.room_id,
            image=image,
            media_type=media_type,
            sha256=hashlib.sha256(image).hexdigest(),
            source=source,
            set_by=actor,
            set_at=datetime.now(UTC),
        )
        session.add(row)
        session.flush()
        ledger.append(
            session,
            actor=actor,
            action="reference.set",
            subject_type="camera",
            subject_id=camera.code,
            details={"sha256": row.sha256, "source": source, "bytes": len(image)},
        )
        return row

    def frame_from_footage(self, session: Session, camera: Camera, at: datetime) -> bytes:
        """The JPEG of the camera's picture at instant `at` ("use the frame at T of camera C")."""
        segment = session.scalar(
            select(Segment).where(
                Segment.camera_id == camera.id,
                Segment.starts_at <= at,
                Segment.ends_at > at,
                Segment.purged_at.is_(None),
            )
        )
        if segment is None:
            raise ReferenceError(f"camera {camera.code!r} has no footage at {at.isoformat()}")
        with self._local_copy(segment.blob_key) as path:
            frame = frame_at(path, (at - segment.starts_at).total_seconds())
        return encode_jpeg(frame)


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failure to read the footage."""
    return min(RETRY_FIRST * 2 ** (attempts - 1), RETRY_MAX)


class HealthWorker(BackgroundThread):
    """Checks newly stored segments in the background; catches up on start and periodically."""

    name = "health-worker"

    def __init__(self, checker: HealthChecker, *, catch_up_seconds: float = 60.0) -> None:
        super().__init__()
        self.checker = checker
        self.catch_up_seconds = catch_up_seconds
        self._queue: Queue[int] = Queue()
        self._next_catch_up = 0.0

    def enqueue(self, segment_id: int) -> None:
        """Check this newly stored segment soon (the wiring calls it for each ingest)."""
        self._queue.put(segment_id)

    def _wake(self) -> None:
        self._queue.put(-1)

    def run_once(self) -> float:
        now = time.monotonic()
        if now >= self._next_catch_up:
            self.checker.check_unchecked()
            self._next_catch_up = now + self.catch_up_seconds
        try:
            segment_id = self._queue.get(timeout=1.0)
        except Empty:
            return 0.0
        if segment_id >= 0 and not self.stop_event.is_set():
            self.checker.check_logged(segment_id)
        return 0.0
