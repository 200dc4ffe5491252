"""What footage there is: a sitting's segments per camera, a camera's segments over a span, the
media type of a stored file, a local file to demux, and the ledger entry of every read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import av
import av.container
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.coverage.rule import Interval
from services.coverage.spans import required_interval
from services.settings import Settings
from storage import ledger
from storage.blobs import BlobReader, BlobStore, BlobStoreError
from storage.models import Camera, HealthFlag, QuarantineRecord, Segment, Sitting, Tombstone

# FFmpeg's demuxer names (what ingest stores as `Segment.container`) to HTTP media types.
_MEDIA_TYPES: dict[str, str] = {
    "mov,mp4,m4a,3gp,3g2,mj2": "video/mp4",
    "matroska,webm": "video/x-matroska",
    "mpegts": "video/mp2t",
    "mpeg": "video/mpeg",
    "flv": "video/x-flv",
    "avi": "video/x-msvideo",
}
_MEDIA_TYPES_BY_SUFFIX: dict[str, str] = {
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "mkv": "video/x-matroska",
    "ts": "video/mp2t",
    "ps": "video/mpeg",
    "mpg": "video/mpeg",
    "mpeg": "video/mpeg",
}
# A quarantined file whose duration could not be measured still claims its start instant
# (the same rule as the coverage report's).
_POINT_CLAIM = timedelta(seconds=1)


def media_type_for(container: str, blob_key: str) -> str:
    """The Content-Type of a stored recording: from the demuxer that read it at ingest, else
    from the key's extension (which ingest took from the file name)."""
    if container in _MEDIA_TYPES:
        return _MEDIA_TYPES[container]
    suffix = blob_key.rsplit(".", 1)[-1].lower() if "." in blob_key else ""
    return _MEDIA_TYPES_BY_SUFFIX.get(suffix, "application/octet-stream")


def file_suffix(blob_key: str) -> str:
    return blob_key.rsplit(".", 1)[-1].lower() if "." in blob_key.rsplit("/", 1)[-1] else "bin"


@dataclass(frozen=True)
class SegmentEntry:
    """One segment as a reviewer sees it in a sitting's list."""

    segment: Segment
    camera: str
    health: tuple[str, ...]  # kinds of health flags within the segment, e.g. ("black",)
    purged_at: datetime | None


@dataclass(frozen=True)
class CameraSegments:
    camera: str
    position: str
    segments: tuple[SegmentEntry, ...]


@dataclass(frozen=True)
class SittingSegments:
    sitting: str
    required: Interval
    cameras: tuple[CameraSegments, ...]


def segments_overlapping(
    session: Session, camera_ids: Sequence[int], span: Interval, settings: Settings
) -> list[Segment]:
    """Segments of the cameras overlapping `span`, oldest first. The lower bound on the start
    lets the (camera, start) index do the work: no segment lasts longer than the maximum."""
    earliest = span.start - timedelta(seconds=settings.max_segment_seconds)
    return list(
        session.scalars(
            select(Segment)
            .where(
                Segment.camera_id.in_(camera_ids),
                Segment.starts_at < span.end,
                Segment.starts_at > earliest,
                Segment.ends_at > span.start,
            )
            .order_by(Segment.camera_id, Segment.starts_at, Segment.id)
        )
    )


def sitting_segments(session: Session, sitting: Sitting, settings: Settings) -> SittingSegments:
    """Every segment of the sitting room's cameras that overlaps its required interval."""
    required = required_interval(sitting, settings)
    cameras = session.scalars(
        select(Camera).where(Camera.room_id == sitting.room_id).order_by(Camera.code)
    ).all()
    segments = segments_overlapping(session, [camera.id for camera in cameras], required, settings)
    ids = [segment.id for segment in segments]
    kinds: dict[int, set[str]] = defaultdict(set)
    if ids:
        for segment_id, kind in session.execute(
            select(HealthFlag.segment_id, HealthFlag.kind).where(HealthFlag.segment_id.in_(ids))
        ):
            kinds[segment_id].add(kind)
    by_camera: dict[int, list[Segment]] = defaultdict(list)
    for segment in segments:
        by_camera[segment.camera_id].append(segment)
    return SittingSegments(
        sitting=sitting.code,
        required=required,
        cameras=tuple(
            CameraSegments(
                camera=camera.code,
                position=camera.position,
                segments=tuple(
                    SegmentEntry(
                        segment=segment,
                        camera=camera.code,
                        health=tuple(sorted(kinds[segment.id])),
                        purged_at=segment.purged_at,
                    )
                    for segment in by_camera[camera.id]
                ),
            )
            for camera in cameras
        ),
    )


def tombstone_of(session: Session, segment: Segment) -> Tombstone | None:
    return session.scalar(select(Tombstone).where(Tombstone.segment_id == segment.id))


def rejected_claims(
    session: Session, camera_code: str, span: Interval, settings: Settings
) -> list[Interval]:
    """Times that quarantined files of this camera claimed: a gap there is `rejected`."""
    earliest = span.start - timedelta(seconds=settings.max_segment_seconds)
    return [
        Interval(start, max(end or start, start + _POINT_CLAIM))
        for start, end in session.execute(
            select(QuarantineRecord.claimed_start, QuarantineRecord.claimed_end).where(
                QuarantineRecord.camera_code == camera_code,
                QuarantineRecord.claimed_start < span.end,
                QuarantineRecord.claimed_start > earliest,
            )
        )
    ]


def record_read(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | int,
    details: dict[str, Any],
) -> None:
    """The ledger entry of one footage read (SPEC "Security model"): written, and committed by
    the caller's transaction, before the first byte is sent."""
    ledger.append(
        session,
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=details,
    )


@contextmanager
def open_recording(store: BlobStore, key: str) -> Iterator[av.container.InputContainer]:
    """A stored recording opened for demuxing: the file itself (local store), or the object
    read by ranges as the demuxer seeks (S3), never downloaded whole before the first packet."""
    path = store.local_path(key)
    if path is not None:
        with av.open(f"file:{path.resolve()}") as container:
            yield container
        return
    info = store.stat(key)
    if info is None:
        raise BlobStoreError(f"{key} is missing from the store")
    with BlobReader(store, key, info.size) as reader, av.open(reader) as container:
        yield container
