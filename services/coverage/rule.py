"""Coverage (docs/coverage.md): did every required camera film the whole sitting?

Pure functions over plain values: no database, no clock. The caller gathers the footage and
the quarantined claims; these functions merge, find the holes, name their causes and decide the
verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Verdict(StrEnum):
    PENDING = "pending"
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    MISSING = "missing"


class GapCause(StrEnum):
    NOT_RECEIVED = "not_received"
    # A file claiming this time arrived but was quarantined (not a usable video, conflict...).
    REJECTED = "rejected"
    # The camera has footage whose clock is suspect: the hole may be footage filed elsewhere.
    CLOCK_SUSPECT = "clock_suspect"


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class Footage:
    """One segment's wall-clock span."""

    start: datetime
    end: datetime
    clock_suspect: bool = False


@dataclass(frozen=True)
class Gap:
    start: datetime
    end: datetime
    cause: GapCause

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class CameraCoverage:
    required_seconds: float
    covered_seconds: float
    gaps: tuple[Gap, ...]
    has_footage: bool

    @property
    def ratio(self) -> float:
        return 1.0 if self.required_seconds <= 0 else self.covered_seconds / self.required_seconds

    @property
    def complete(self) -> bool:
        return not self.gaps


def required_span(
    starts_at: datetime, ends_at: datetime, *, pre_margin: timedelta, post_margin: timedelta
) -> Interval:
    """The interval a sitting must be filmed over: [start - pre, end + post]."""
    return Interval(starts_at - pre_margin, ends_at + post_margin)


def camera_coverage(
    required: Interval,
    footage: Sequence[Footage],
    *,
    tolerance: timedelta,
    rejected_claims: Sequence[Interval] = (),
) -> CameraCoverage:
    """Covered seconds and the gaps (each with its cause) of one camera over `required`."""
    return span_coverage(
        required,
        [(item.start, item.end) for item in footage],
        tolerance=tolerance,
        rejected_claims=rejected_claims,
        suspect_clock=any(item.clock_suspect for item in footage),
    )


def span_coverage(
    required: Interval,
    spans: Iterable[tuple[datetime, datetime]],
    *,
    tolerance: timedelta,
    rejected_claims: Sequence[Interval] = (),
    suspect_clock: bool = False,
) -> CameraCoverage:
    """`camera_coverage` over bare (start, end) pairs: a report reads thousands of segments
    straight from rows, and building a `Footage` for each one cost more than the merge.
    `suspect_clock` says whether any of the camera's footage has a suspect clock."""
    low, high = required.start, required.end
    # One sorted pass over plain tuples, the report's hot loop. No clipping is needed: a span
    # starting before `low` never opens a hole (the cursor starts at `low`), and once the
    # cursor passes `high` no later span can open one either.
    ordered = sorted(
        span for span in spans if span[0] < high and span[1] > low and span[1] > span[0]
    )
    holes: list[Interval] = []
    cursor = low
    for start, end in ordered:
        # A hole shorter than the tolerance merges its neighbours (no gap).
        if start > cursor and start - cursor >= tolerance:
            holes.append(Interval(cursor, start))
        if end > cursor:
            cursor = end
    if high > cursor and high - cursor >= tolerance:
        holes.append(Interval(cursor, high))

    gaps = tuple(
        Gap(hole.start, hole.end, _cause(hole, rejected_claims, suspect_clock)) for hole in holes
    )
    # A hole shorter than the tolerance is no gap, so its seconds count as covered.
    return CameraCoverage(
        required_seconds=required.seconds,
        covered_seconds=required.seconds - sum(gap.seconds for gap in gaps),
        gaps=gaps,
        has_footage=bool(ordered),
    )


def _cause(hole: Interval, rejected: Sequence[Interval], suspect_clock: bool) -> GapCause:
    if any(hole.overlaps(claim) for claim in rejected):
        return GapCause.REJECTED
    if suspect_clock:
        return GapCause.CLOCK_SUSPECT
    return GapCause.NOT_RECEIVED


def verdict(
    cameras: Sequence[CameraCoverage],
    *,
    required_end: datetime,
    now: datetime,
    grace: timedelta,
) -> Verdict:
    """`pending` until the sitting has ended, and while footage may still arrive (the grace
    period) unless it is already complete; then `complete`, `missing` (a required camera has no
    footage at all, or no camera is required) or `incomplete`."""
    if now < required_end:
        return Verdict.PENDING
    if cameras and all(camera.complete for camera in cameras):
        return Verdict.COMPLETE
    if now < required_end + grace:
        return Verdict.PENDING
    if not cameras or any(not camera.has_footage for camera in cameras):
        return Verdict.MISSING
    return Verdict.INCOMPLETE


@dataclass(frozen=True)
class RequiredCamera:
    """A camera's service history: in service over [active_from, retired_at), None = open."""

    code: str
    active_from: datetime | None
    retired_at: datetime | None

    def in_service(self, required: Interval) -> Interval | None:
        """The part of `required` this camera was in service, or None if it was at no moment."""
        start = (
            required.start if self.active_from is None else max(self.active_from, required.start)
        )
        end = required.end if self.retired_at is None else min(self.retired_at, required.end)
        return Interval(start, end) if start < end else None


def required_cameras(cameras: Iterable[RequiredCamera], required: Interval) -> dict[str, Interval]:
    """The room's cameras in service at some moment of `required`, by code (in code order),
    each with the part it must cover: a camera replaced mid-sitting is not required after it
    was retired, nor its replacement before it was installed."""
    parts = {camera.code: camera.in_service(required) for camera in cameras}
    return {code: part for code, part in sorted(parts.items()) if part is not None}
