"""A sitting's coverage report: gathers its rows and applies the pure rules of
`services/coverage/rule.py` and `services/health/sampling.py`. Reads only; `verdicts.py` keeps
the stored verdict up to date."""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, String, and_, bindparam, cast, or_, select
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import Session

from services.coverage.rule import (
    CameraCoverage,
    Gap,
    GapCause,
    Interval,
    RequiredCamera,
    Verdict,
    required_cameras,
    span_coverage,
    verdict,
)
from services.coverage.spans import required_interval
from services.health.sampling import HealthInterval, merge_flags
from services.settings import Settings
from services.timefmt import rfc3339
from storage.models import (
    Camera,
    HealthFlag,
    Institution,
    QuarantineRecord,
    Room,
    Segment,
    Site,
    Sitting,
)

logger = logging.getLogger(__name__)

SUSPECT_FLAGS = ("clock_ahead", "timezone_suspect")
# A time-zone mistake moves footage by up to 14 hours: look that far for misfiled footage.
_SUSPECT_REACH = timedelta(hours=14)
# A quarantined file whose duration could not be measured still claims its start instant.
_POINT_CLAIM = timedelta(seconds=1)


@dataclass(frozen=True)
class CameraReport:
    camera: str
    position: str
    segments: int
    # The part of the sitting's required interval this camera was in service.
    required: Interval
    coverage: CameraCoverage
    health: tuple[HealthInterval, ...]


@dataclass(frozen=True)
class CoverageReport:
    sitting: str
    room: str
    institution: str
    status: Verdict
    starts_at: datetime
    ends_at: datetime
    required: Interval
    computed_at: datetime
    cameras: tuple[CameraReport, ...]

    @property
    def gaps(self) -> list[tuple[str, Gap]]:
        return [(camera.camera, gap) for camera in self.cameras for gap in camera.coverage.gaps]

    def as_json(self, zone: tzinfo) -> dict[str, Any]:
        return {
            "sitting": self.sitting,
            "room": self.room,
            "institution": self.institution,
            "status": self.status.value,
            "starts_at": rfc3339(self.starts_at, zone),
            "ends_at": rfc3339(self.ends_at, zone),
            "required_start": rfc3339(self.required.start, zone),
            "required_end": rfc3339(self.required.end, zone),
            "computed_at": rfc3339(self.computed_at, zone),
            "cameras": [
                {
                    "camera": camera.camera,
                    "position": camera.position,
                    "segments": camera.segments,
                    "required_start": rfc3339(camera.required.start, zone),
                    "required_end": rfc3339(camera.required.end, zone),
                    "covered_seconds": round(camera.coverage.covered_seconds, 3),
                    "required_seconds": round(camera.coverage.required_seconds, 3),
                    "ratio": round(camera.coverage.ratio, 6),
                    "gaps": [
                        {
                            "start": rfc3339(gap.start, zone),
                            "end": rfc3339(gap.end, zone),
                            "seconds": round(gap.seconds, 3),
                            "cause": gap.cause.value,
                        }
                        for gap in camera.coverage.gaps
                    ],
                    "health": [
                        {
                            "start": rfc3339(flag.start, zone),
                            "end": rfc3339(flag.end, zone),
                            "seconds": round((flag.end - flag.start).total_seconds(), 3),
                            "kind": flag.kind,
                        }
                        for flag in camera.health
                    ],
                }
                for camera in self.cameras
            ],
        }


# The report's statements, built once: constructing and cache-keying them per report cost more
# than running the small ones.
_ROOM_CAMERAS = (
    select(
        Room.code.label("room_code"),
        Institution.code.label("institution_code"),
        Camera.id.label("camera_id"),
        Camera.code.label("camera_code"),
        Camera.position,
        Camera.active_from,
        Camera.retired_at,
    )
    .select_from(Room)
    .join(Site, Room.site_id == Site.id)
    .join(Institution, Site.institution_id == Institution.id)
    # Outer: a room without cameras still has its codes (and its sitting is `missing`).
    .outerjoin(Camera, Camera.room_id == Room.id)
    .where(Room.id == bindparam("room_id"))
)
# Columns of the (camera_id, starts_at, ends_at) index only, so both backends answer from the
# index alone; suspect clocks are asked separately, of the few cameras with a hole.
_SEGMENT_SPANS = select(Segment.camera_id, Segment.starts_at, Segment.ends_at).where(
    Segment.camera_id.in_(bindparam("camera_ids", expanding=True)),
    Segment.starts_at < bindparam("required_end"),
    Segment.starts_at > bindparam("earliest"),
    Segment.ends_at > bindparam("required_start"),
)
_REJECTED_CLAIMS = select(
    QuarantineRecord.camera_code, QuarantineRecord.claimed_start, QuarantineRecord.claimed_end
).where(
    QuarantineRecord.camera_code.in_(bindparam("camera_codes", expanding=True)),
    QuarantineRecord.claimed_start < bindparam("required_end"),
    QuarantineRecord.claimed_start > bindparam("earliest"),
)
_HEALTH_FLAGS = select(
    HealthFlag.camera_id, HealthFlag.starts_at, HealthFlag.ends_at, HealthFlag.kind
).where(
    HealthFlag.camera_id.in_(bindparam("camera_ids", expanding=True)),
    HealthFlag.starts_at < bindparam("required_end"),
    HealthFlag.starts_at > bindparam("earliest"),
    HealthFlag.ends_at > bindparam("required_start"),
)


@dataclass(frozen=True)
class _RoomCamera:
    id: int
    code: str
    position: str
    required: Interval


def coverage_report(
    session: Session, sitting: Sitting, settings: Settings, *, now: datetime | None = None
) -> CoverageReport:
    now = now or datetime.now(UTC)
    required = required_interval(sitting, settings)
    tolerance = timedelta(seconds=settings.gap_tolerance_seconds)
    rows = session.execute(_ROOM_CAMERAS, {"room_id": sitting.room_id}).all()
    if not rows:
        raise NoResultFound(f"room {sitting.room_id} of sitting {sitting.code} does not exist")
    room_code, institution_code = rows[0].room_code, rows[0].institution_code
    room_cameras = [row for row in rows if row.camera_id is not None]
    parts = required_cameras(
        (RequiredCamera(r.camera_code, r.active_from, r.retired_at) for r in room_cameras),
        required,
    )
    codes = set(parts)
    cameras = sorted(
        (
            _RoomCamera(row.camera_id, row.camera_code, row.position, parts[row.camera_code])
            for row in room_cameras
            if row.camera_code in codes
        ),
        key=lambda camera: camera.code,
    )
    ids = [camera.id for camera in cameras]
    earliest = required.start - timedelta(seconds=settings.max_segment_seconds)
    window = {
        "required_start": required.start,
        "required_end": required.end,
        "earliest": earliest,
    }

    spans: dict[int, list[tuple[datetime, datetime]]] = {camera_id: [] for camera_id in ids}
    for camera_id, start, end in session.execute(_SEGMENT_SPANS, {**window, "camera_ids": ids}):
        spans[camera_id].append((start, end))

    claims: dict[str, list[Interval]] = defaultdict(list)
    for code, start, end in session.execute(
        _REJECTED_CLAIMS, {**window, "camera_codes": sorted(codes)}
    ):
        claims[code].append(Interval(start, max(end or start, start + _POINT_CLAIM)))

    flags: dict[int, list[HealthInterval]] = defaultdict(list)
    for camera_id, start, end, kind in session.execute(
        _HEALTH_FLAGS, {**window, "camera_ids": ids}
    ):
        flags[camera_id].append(HealthInterval(start, end, kind))

    # Judged first as if no clock were suspect; a camera left with an unexplained hole is then
    # asked about suspect footage near the sitting. That reach includes every segment read
    # above (see `suspect_footage_near`), so this names the same causes as flagging the read
    # segments would, without reading their flags.
    coverages = {
        camera.id: span_coverage(
            camera.required,
            spans[camera.id],
            tolerance=tolerance,
            rejected_claims=claims[camera.code],
        )
        for camera in cameras
    }
    unexplained = [
        camera_id
        for camera_id, coverage in coverages.items()
        if any(gap.cause is GapCause.NOT_RECEIVED for gap in coverage.gaps)
    ]
    for camera_id in suspect_footage_near(session, unexplained, required, earliest=earliest):
        coverage = coverages[camera_id]
        coverages[camera_id] = dataclasses.replace(
            coverage,
            gaps=tuple(
                dataclasses.replace(gap, cause=GapCause.CLOCK_SUSPECT)
                if gap.cause is GapCause.NOT_RECEIVED
                else gap
                for gap in coverage.gaps
            ),
        )

    reports = []
    for camera in cameras:
        coverage = coverages[camera.id]
        health = tuple(
            clipped
            for clipped in (_clip(flag, camera.required) for flag in merge_flags(flags[camera.id]))
            if clipped.end > clipped.start
        )
        reports.append(
            CameraReport(
                camera.code,
                camera.position,
                len(spans[camera.id]),
                camera.required,
                coverage,
                health,
            )
        )

    status = verdict(
        [report.coverage for report in reports],
        required_end=required.end,
        now=now,
        grace=timedelta(hours=settings.upload_grace_hours),
    )
    return CoverageReport(
        sitting=sitting.code,
        room=room_code,
        institution=institution_code,
        status=status,
        starts_at=sitting.starts_at,
        ends_at=sitting.ends_at,
        required=required,
        computed_at=now,
        cameras=tuple(reports),
    )


def _clip(flag: HealthInterval, required: Interval) -> HealthInterval:
    return HealthInterval(max(flag.start, required.start), min(flag.end, required.end), flag.kind)


def _suspect_clock() -> ColumnElement[bool]:
    """Whether a segment's clock flags include a suspect one, decided by the database: a
    report may look at thousands of segments, and decoding each one's JSON in Python is slow."""
    flags_text = cast(Segment.clock_flags, String)
    return or_(*(flags_text.like(f'%"{flag}"%') for flag in SUSPECT_FLAGS))


def suspect_footage_near(
    session: Session, camera_ids: list[int], required: Interval, *, earliest: datetime
) -> set[int]:
    """The cameras among `camera_ids` with suspect-clock footage within reach of the sitting,
    or among the footage the report read (which starts after `earliest` and overlaps the
    interval; it is within reach unless segments may be longer than the reach)."""
    if not camera_ids:
        return set()
    near = and_(
        Segment.starts_at > required.start - _SUSPECT_REACH,
        Segment.starts_at < required.end + _SUSPECT_REACH,
    )
    if earliest < required.start - _SUSPECT_REACH:
        near = or_(
            near,
            and_(
                Segment.starts_at > earliest,
                Segment.starts_at < required.end,
                Segment.ends_at > required.start,
            ),
        )
    return set(
        session.scalars(
            select(Segment.camera_id)
            .where(Segment.camera_id.in_(camera_ids), near, _suspect_clock())
            .distinct()
        )
    )
