"""Footage: a segment's original bytes, time-range playback across segments, thumbnails.

Every route looks the sitting, camera or segment up through `services/access/scopes.py` first:
what the caller may not know of is 404, what they know of but may not watch is 403, and a
supervisor's time range outside their sittings' windows is 403 `outside_assignment`. Every
served read of pictures, a 304 revalidation included, is a ledger entry, committed before the
answer leaves.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Literal
from urllib.parse import quote

import av
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.access.scopes import (
    NO_FOOTAGE_ZH,
    Subject,
    footage_windows,
    may_watch_footage,
    visible_camera,
    visible_segment,
    visible_sitting,
    within_windows,
)
from services.api.deps import RowId, ServicesDep, SittingReader, instant_param
from services.api.errors import ApiError
from services.api.footage.schemas import (
    CameraSegmentsOut,
    PlaybackPlanOut,
    SegmentOut,
    SittingSegmentsOut,
    ThumbnailIndexOut,
)
from services.context import Services
from services.coverage.reports import suspect_footage_near
from services.coverage.rule import Interval
from services.coverage.spans import required_interval
from services.footage.catalogue import (
    file_suffix,
    media_type_for,
    record_read,
    rejected_claims,
    segments_overlapping,
    sitting_segments,
    tombstone_of,
)
from services.footage.playback import (
    MEDIA_TYPE,
    PlaybackPlan,
    PlaybackStream,
    SourceSegment,
    plan_playback,
)
from services.footage.thumbnails import (
    DEFAULT_EVERY_SECONDS,
    MAX_EVERY_SECONDS,
    MIN_EVERY_SECONDS,
    TooManyTiles,
    thumbnail_strip,
)
from services.timefmt import rfc3339, rfc3339_or_none
from storage.blobs import BlobStoreError
from storage.models import Camera, Sitting

logger = logging.getLogger(__name__)

router = APIRouter(tags=["footage"])

# One playback request spans at most this much wall-clock time (a long sitting day); longer
# reviews are several requests, each its own ledger entry.
MAX_PLAYBACK = timedelta(hours=24)
# Keeps the header well under common 8 KiB limits; the JSON plan always has every gap.
MAX_GAPS_IN_HEADER = 40
_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _may_watch(subject: Subject) -> None:
    if not may_watch_footage(subject):
        raise ApiError(
            403,
            "forbidden",
            f"role {subject.role!r} sees coverage verdicts, not footage",
            message_zh=NO_FOOTAGE_ZH,
        )


def _sitting(session: Session, code: str, subject: Subject, now: datetime) -> Sitting:
    sitting = visible_sitting(session, code, subject, now)
    if sitting is None:
        raise ApiError(404, "not_found", f"no sitting {code!r}")
    return sitting


def _window_start(
    services: Services,
    session: Session,
    subject: Subject,
    camera: Camera,
    now: datetime,
    start: datetime,
    end: datetime,
) -> datetime | None:
    """Refuse a range outside the caller's windows; for a restricted caller, the start of the
    window that holds the range (playback never starts at a keyframe before it)."""
    windows = footage_windows(session, subject, camera, services.settings, now)
    if within_windows(windows, start, end):
        if windows is None:
            return None
        return next(w.start for w in windows if w.start <= start and end <= w.end)
    zone = services.settings.zone
    raise ApiError(
        403,
        "outside_assignment",
        f"{rfc3339(start, zone)} to {rfc3339(end, zone)} is not inside one window you may "
        "watch this camera in",
        windows=[
            {"start": rfc3339(w.start, zone), "end": rfc3339(w.end, zone)} for w in windows or []
        ],
    )


@router.get(
    "/api/v1/sittings/{code}/segments",
    response_model=SittingSegmentsOut,
    summary="The sitting's segments per camera (metadata, for every reader of the sitting)",
)
def list_segments(code: str, services: ServicesDep, subject: SittingReader) -> SittingSegmentsOut:
    zone = services.settings.zone
    with services.db.read() as session:
        sitting = _sitting(session, code, subject, datetime.now(UTC))
        found = sitting_segments(session, sitting, services.settings)
        return SittingSegmentsOut(
            sitting=found.sitting,
            required_start=rfc3339(found.required.start, zone),
            required_end=rfc3339(found.required.end, zone),
            cameras=[
                CameraSegmentsOut(
                    camera=camera.camera,
                    position=camera.position,
                    segments=[
                        SegmentOut(
                            id=entry.segment.id,
                            camera=entry.camera,
                            start=rfc3339(entry.segment.starts_at, zone),
                            end=rfc3339(entry.segment.ends_at, zone),
                            duration_seconds=entry.segment.duration_seconds,
                            sha256=entry.segment.sha256,
                            size=entry.segment.size_bytes,
                            container=entry.segment.container,
                            video_codec=entry.segment.video_codec,
                            width=entry.segment.width,
                            height=entry.segment.height,
                            health=list(entry.health),
                            health_checked=entry.segment.health_checked_at is not None,
                            clock_flags=list(entry.segment.clock_flags or []),
                            purged=entry.purged_at is not None,
                            purged_at=rfc3339_or_none(entry.purged_at, zone),
                            content=f"/api/v1/segments/{entry.segment.id}/content",
                        )
                        for entry in camera.segments
                    ],
                )
                for camera in found.cameras
            ],
        )


@dataclass(frozen=True)
class _ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def _byte_range(request: Request, etag: str, size: int) -> _ByteRange | None:
    """The one range to serve, or None for the whole object. A Range we do not serve as one
    range (another unit, several ranges, malformed) is ignored, as RFC 9110 allows; so is a
    Range whose If-Range names another version. Raises 416 when it is unsatisfiable."""
    header = request.headers.get("range")
    if header is None:
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return None
    match = _SINGLE_RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return _ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    end = min(int(last), size - 1) if last else size - 1
    return _ByteRange(start, end)


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(
        416,
        "range_not_satisfiable",
        f"the segment has {size} bytes; ask for a range inside them",
        headers={"Content-Range": f"bytes */{size}"},
        size=size,
    )


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    candidates = [value.strip().removeprefix("W/") for value in header.split(",")]
    return "*" in candidates or etag in candidates


@router.get(
    "/api/v1/segments/{segment_id}/content",
    summary="A segment's original bytes (HTTP Range, ETag = sha256)",
    response_class=Response,
    responses={
        200: {"content": {"video/mp4": {}, "video/x-matroska": {}, "video/mp2t": {}}},
        206: {"description": "the requested byte range"},
        410: {"description": "purged at the end of its retention"},
        416: {"description": "the range lies outside the segment"},
    },
)
def get_content(
    segment_id: RowId,
    request: Request,
    services: ServicesDep,
    subject: SittingReader,
) -> Response:
    zone = services.settings.zone
    with services.db.read() as session:
        now = datetime.now(UTC)
        segment = visible_segment(session, segment_id, subject, services.settings, now)
        if segment is None:
            raise ApiError(404, "not_found", f"no segment {segment_id}")
        _may_watch(subject)
        if segment.purged_at is not None:
            tombstone = tombstone_of(session, segment)
            raise ApiError(
                410,
                "purged",
                f"segment {segment_id} was purged at {rfc3339(segment.purged_at, zone)} when "
                "its retention ended; its tombstone keeps its sha256 and size",
                purged_at=rfc3339(segment.purged_at, zone),
                sha256=segment.sha256,
                size=segment.size_bytes,
                reason=None if tombstone is None else tombstone.reason,
            )
        key, sha256, size = segment.blob_key, segment.sha256, segment.size_bytes
        media_type = media_type_for(segment.container, key)
    etag = f'"{sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        # Revalidate every time: a cached copy reused silently would be a read the ledger
        # never saw, and the caller's access may have ended since.
        "Cache-Control": "private, no-cache",
        "Content-Disposition": f'inline; filename="segment-{segment_id}.{file_suffix(key)}"',
    }
    not_modified = _etag_matches(request.headers.get("if-none-match"), etag)
    wanted = None if not_modified else _byte_range(request, etag, size)
    # Checked before a 304 too: it tells the client its copy is the footage we hold.
    if services.store.stat(key) is None:
        logger.error("segment %s: its object %s is missing from the store", segment_id, key)
        raise ApiError(500, "blob_missing", f"the bytes of segment {segment_id} are missing")

    start, length = (0, size) if wanted is None else (wanted.start, wanted.length)
    # Prepared before the ledger entry, so nothing can fail between it and the answer that
    # we could have known about earlier.
    offload = None if not_modified else _offloaded(services, key, media_type, headers)
    services.db.run_write(
        lambda session: record_read(
            session,
            actor=subject.actor,
            action="footage.content",
            subject_type="segment",
            subject_id=segment_id,
            details={
                "sha256": sha256,
                "size": size,
                "range": None if wanted is None else [wanted.start, wanted.end],
                "bytes": 0 if not_modified else length,
                "not_modified": not_modified,
            },
        )
    )
    if not_modified:
        return Response(status_code=304, headers=headers)
    if offload is not None:
        return offload
    headers["Content-Length"] = str(length)
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{size}"
    return StreamingResponse(
        services.store.read(key, start, length),
        status_code=status,
        media_type=media_type,
        headers=headers,
    )


def _offloaded(
    services: Services, key: str, media_type: str, headers: dict[str, str]
) -> Response | None:
    """With EXAMVAULT_FOOTAGE_OFFLOAD, the answer that lets another move the bytes: for a
    local file an X-Accel-Redirect to nginx's internal location (which serves the client's
    Range from the file with sendfile), for S3 a redirect to a short-lived presigned GET
    (the client repeats its Range there). None: stream them here."""
    settings = services.settings
    if not settings.footage_offload:
        return None
    if services.store.local_path(key) is not None:
        return Response(
            status_code=200,
            media_type=media_type,
            headers={
                **headers,
                "X-Accel-Redirect": settings.footage_accel_location + quote(key),
            },
        )
    url = services.store.presigned_read_url(
        key,
        expires=timedelta(seconds=settings.footage_presign_seconds),
        response_headers={
            "Content-Type": media_type,
            "Content-Disposition": headers["Content-Disposition"],
            "Cache-Control": headers["Cache-Control"],
        },
    )
    if url is None:
        return None
    # The redirect itself is never cached: the next read must come back here (scope, ledger).
    return Response(
        status_code=302,
        headers={"Location": url, "Cache-Control": "no-store", "ETag": headers["ETag"]},
    )


# A client that showed a plan (format=json) pins the stream to the plan's segments, so footage
# arriving in between cannot shift the stream against the wall clock the client computed.
Pinned = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{1,10}(,[0-9]{1,10}){0,999}$",
        description="only these segment ids, comma-separated (the pieces of a format=json plan)",
    ),
]


def _playback_response(
    services: Services,
    subject: Subject,
    camera_code: str,
    start: datetime,
    end: datetime,
    output: Literal["mp4", "json"],
    *,
    sitting_code: str | None = None,
    pinned: str | None = None,
) -> Response:
    if end <= start:
        raise ApiError(400, "invalid_request", "end must be after start")
    if end - start > MAX_PLAYBACK:
        raise ApiError(
            400, "invalid_request", f"a playback range spans at most {MAX_PLAYBACK} per request"
        )
    now = datetime.now(UTC)
    settings = services.settings
    with services.db.read() as session:
        camera = visible_camera(session, camera_code, subject, now)
        if camera is None:
            raise ApiError(404, "not_found", f"no camera {camera_code!r}")
        _may_watch(subject)
        not_before = _window_start(services, session, subject, camera, now, start, end)
        span = Interval(start, end)
        only = {int(number) for number in pinned.split(",")} if pinned else None
        sources = [
            SourceSegment.of(segment)
            for segment in segments_overlapping(session, [camera.id], span, settings)
            if only is None or segment.id in only
        ]
        claims = rejected_claims(session, camera.code, span, settings)
        earliest = start - timedelta(seconds=settings.max_segment_seconds)
        suspect = bool(suspect_footage_near(session, [camera.id], span, earliest=earliest))
    plan = plan_playback(
        camera.code,
        sources,
        start,
        end,
        tolerance=timedelta(seconds=settings.gap_tolerance_seconds),
        rejected_claims=claims,
        clock_suspect=suspect,
    )
    stream = PlaybackStream(plan, services.store, not_before=not_before)
    try:
        plan = stream.open()
        if output == "json":
            stream.close()
            return Response(
                PlaybackPlanOut.model_validate(plan.as_json(settings.zone)).model_dump_json(
                    by_alias=True
                ),
                media_type="application/json",
            )
        if not plan.pieces:
            raise ApiError(
                404,
                "no_footage",
                f"camera {camera.code} has no playable footage in this range",
                gaps=plan.gaps_json(settings.zone),
            )
        services.db.run_write(
            lambda session: record_read(
                session,
                actor=subject.actor,
                action="footage.playback",
                subject_type="camera",
                subject_id=camera.code,
                details={
                    "sitting": sitting_code,
                    "asked_start": start.isoformat(),
                    "asked_end": end.isoformat(),
                    "start": plan.start.isoformat() if plan.start else None,
                    "segments": plan.segment_ids,
                },
            )
        )
    except (av.FFmpegError, BlobStoreError, ValueError) as exc:
        stream.close()
        logger.exception("playback of %s from %s failed to start", camera.code, start)
        raise ApiError(
            500, "internal_error", "playback could not start; the server log says why"
        ) from exc
    except BaseException:
        stream.close()
        raise
    return StreamingResponse(
        iter(stream), media_type=MEDIA_TYPE, headers=_playback_headers(plan, settings.zone)
    )


def _playback_headers(plan: PlaybackPlan, zone: tzinfo) -> dict[str, str]:
    gaps = plan.gaps_json(zone)
    headers = {
        # Always set: the stream is only answered when there is a first frame.
        "X-Playback-Start": rfc3339(plan.start, zone) if plan.start else "",
        "X-Playback-Gaps": json.dumps(gaps[:MAX_GAPS_IN_HEADER], separators=(",", ":")),
        "X-Playback-Gap-Count": str(len(gaps)),
        "X-Playback-Segments": ",".join(str(i) for i in plan.segment_ids),
        "Cache-Control": "private, no-store",
    }
    if plan.continue_at is not None:
        headers["X-Playback-Continue-At"] = rfc3339(plan.continue_at, zone)
    return headers


@router.get(
    "/api/v1/cameras/{code}/playback",
    summary="A camera's footage over [start, end) as one fragmented MP4 (no transcoding)",
    response_class=Response,
    responses={200: {"content": {"video/mp4": {}, "application/json": {}}}},
)
def camera_playback(
    code: str,
    services: ServicesDep,
    subject: SittingReader,
    start: Annotated[str, Query(description="RFC 3339 with offset")],
    end: Annotated[str, Query(description="RFC 3339 with offset")],
    format: Annotated[Literal["mp4", "json"], Query(description="json: the plan only")] = "mp4",
    segments: Pinned = None,
) -> Response:
    begin, until = instant_param(start, "start"), instant_param(end, "end")
    assert begin is not None and until is not None
    return _playback_response(services, subject, code, begin, until, format, pinned=segments)


@router.get(
    "/api/v1/sittings/{code}/playback",
    summary="Playback of one of the sitting's cameras from an instant (default: its start)",
    response_class=Response,
    responses={200: {"content": {"video/mp4": {}, "application/json": {}}}},
)
def sitting_playback(
    code: str,
    services: ServicesDep,
    subject: SittingReader,
    camera: Annotated[str, Query(description="camera code")],
    at: Annotated[str | None, Query(description="RFC 3339; default the sitting's start")] = None,
    end: Annotated[str | None, Query(description="RFC 3339; default the required end")] = None,
    format: Annotated[Literal["mp4", "json"], Query(description="json: the plan only")] = "mp4",
    segments: Pinned = None,
) -> Response:
    with services.db.read() as session:
        sitting = _sitting(session, code, subject, datetime.now(UTC))
        owner = session.scalar(
            select(Camera).where(Camera.code == camera, Camera.room_id == sitting.room_id)
        )
        if owner is None:
            raise ApiError(404, "not_found", f"sitting {code!r} has no camera {camera!r}")
        required = required_interval(sitting, services.settings)
        default_start = sitting.starts_at
    begin = instant_param(at, "at") or default_start
    until = instant_param(end, "end") or required.end
    return _playback_response(
        services, subject, camera, begin, until, format, sitting_code=code, pinned=segments
    )


@router.get(
    "/api/v1/sittings/{code}/cameras/{camera}/thumbnails",
    summary="A strip of keyframe thumbnails every N seconds of the sitting (JPEG or its index)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "application/json": {}}}},
)
def thumbnails(
    code: str,
    camera: str,
    services: ServicesDep,
    subject: SittingReader,
    every: Annotated[
        int, Query(ge=MIN_EVERY_SECONDS, le=MAX_EVERY_SECONDS, description="seconds per tile")
    ] = DEFAULT_EVERY_SECONDS,
    format: Annotated[Literal["jpeg", "json"], Query()] = "jpeg",
) -> Response:
    settings = services.settings
    with services.db.read() as session:
        sitting = _sitting(session, code, subject, datetime.now(UTC))
        owner = session.scalar(
            select(Camera).where(Camera.code == camera, Camera.room_id == sitting.room_id)
        )
        if owner is None:
            raise ApiError(404, "not_found", f"sitting {code!r} has no camera {camera!r}")
        _may_watch(subject)
        required = required_interval(sitting, settings)
        rows = segments_overlapping(session, [owner.id], required, settings)
        sources = [SourceSegment.of(row) for row in rows]
        sha256_by_id = {row.id: row.sha256 for row in rows}
    try:
        strip = thumbnail_strip(
            services.store,
            sitting=code,
            camera=camera,
            required=required,
            every_seconds=every,
            segments=sources,
            sha256_by_id=sha256_by_id,
            zone=settings.zone,
        )
    except TooManyTiles as exc:
        raise ApiError(400, "invalid_request", str(exc)) from exc
    if format == "json":
        # The index is metadata (instants and gaps, no picture): not a footage read.
        return Response(
            ThumbnailIndexOut.model_validate(strip.index).model_dump_json(),
            media_type="application/json",
        )
    services.db.run_write(
        lambda session: record_read(
            session,
            actor=subject.actor,
            action="footage.thumbnails",
            subject_type="camera",
            subject_id=camera,
            details={
                "sitting": code,
                "every_seconds": every,
                "segments": [s.id for s in sources if not s.purged],
                "cached": strip.cached,
                "strip_sha256": strip.index["strip_sha256"],
            },
        )
    )
    return Response(
        strip.jpeg,
        media_type="image/jpeg",
        headers={
            "ETag": f'"{strip.index["strip_sha256"]}"',
            "Cache-Control": "private, no-cache",
            "X-Thumbnail-Tiles": str(len(strip.index["tiles"])),
            "X-Thumbnail-Tile-Width": str(strip.index["tile_width"]),
            "X-Thumbnail-Every": str(every),
            "X-Thumbnail-Cached": "true" if strip.cached else "false",
        },
    )
