"""The coverage rule as pure functions: properties over random segment sets, and the verdicts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.coverage.rule import (
    CameraCoverage,
    Footage,
    GapCause,
    Interval,
    RequiredCamera,
    Verdict,
    camera_coverage,
    required_cameras,
    verdict,
)

T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
REQUIRED = Interval(T0, T0 + timedelta(minutes=90))
TOLERANCE = timedelta(seconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


footage_sets = st.lists(
    st.tuples(
        st.floats(-600, 6000, allow_nan=False), st.floats(0, 900, allow_nan=False), st.booleans()
    ).map(lambda t: Footage(at(t[0]), at(t[0] + t[1]), t[2])),
    max_size=40,
)
tolerances = st.sampled_from([timedelta(0), timedelta(seconds=1), timedelta(seconds=5)])


@settings(max_examples=300, deadline=None)
@given(footage=footage_sets, tolerance=tolerances)
def test_gaps_plus_covered_is_required(footage: list[Footage], tolerance: timedelta) -> None:
    report = camera_coverage(REQUIRED, footage, tolerance=tolerance)
    total = report.covered_seconds + sum(gap.seconds for gap in report.gaps)
    assert abs(total - REQUIRED.seconds) < 1e-6


@settings(max_examples=300, deadline=None)
@given(footage=footage_sets, tolerance=tolerances)
def test_no_gap_is_shorter_than_the_tolerance(footage: list[Footage], tolerance: timedelta) -> None:
    for gap in camera_coverage(REQUIRED, footage, tolerance=tolerance).gaps:
        assert gap.end - gap.start >= tolerance
        assert REQUIRED.start <= gap.start < gap.end <= REQUIRED.end


@settings(max_examples=300, deadline=None)
@given(footage=footage_sets, tolerance=tolerances)
def test_gaps_hold_no_footage(footage: list[Footage], tolerance: timedelta) -> None:
    for gap in camera_coverage(REQUIRED, footage, tolerance=tolerance).gaps:
        # A zero-length segment holds no footage, so it may sit inside a gap.
        assert not any(
            item.start < gap.end and gap.start < item.end and item.end > item.start
            for item in footage
        )


@settings(max_examples=200, deadline=None)
@given(footage=footage_sets, seed=st.integers(0, 2**32 - 1))
def test_order_duplicates_and_overlaps_do_not_matter(footage: list[Footage], seed: int) -> None:
    shuffled = footage + footage[: len(footage) // 2]  # duplicates
    random.Random(seed).shuffle(shuffled)
    assert camera_coverage(REQUIRED, shuffled, tolerance=TOLERANCE) == camera_coverage(
        REQUIRED, footage, tolerance=TOLERANCE
    )


def test_a_hole_in_the_middle_is_one_gap_with_its_length() -> None:
    footage = [Footage(at(-60), at(40 * 60)), Footage(at(43 * 60), at(91 * 60))]
    report = camera_coverage(REQUIRED, footage, tolerance=TOLERANCE)
    assert [(g.start, g.end, g.cause) for g in report.gaps] == [
        (at(40 * 60), at(43 * 60), GapCause.NOT_RECEIVED)
    ]
    assert report.covered_seconds == 87 * 60


def test_holes_below_the_tolerance_are_not_gaps() -> None:
    footage = [Footage(at(0), at(60)), Footage(at(60.5), at(90 * 60))]
    report = camera_coverage(REQUIRED, footage, tolerance=TOLERANCE)
    assert report.gaps == () and report.complete


def test_a_quarantined_claim_makes_the_gap_rejected() -> None:
    footage = [Footage(at(0), at(600)), Footage(at(720), at(90 * 60))]
    report = camera_coverage(
        REQUIRED, footage, tolerance=TOLERANCE, rejected_claims=[Interval(at(600), at(720))]
    )
    assert [gap.cause for gap in report.gaps] == [GapCause.REJECTED]


def test_a_suspect_clock_makes_the_gap_clock_suspect() -> None:
    footage = [Footage(at(0), at(600)), Footage(at(720), at(90 * 60), clock_suspect=True)]
    report = camera_coverage(REQUIRED, footage, tolerance=TOLERANCE)
    assert [gap.cause for gap in report.gaps] == [GapCause.CLOCK_SUSPECT]


def _camera(complete: bool, has_footage: bool = True) -> CameraCoverage:
    gaps = () if complete else (camera_coverage(REQUIRED, [], tolerance=TOLERANCE).gaps)
    return CameraCoverage(5400, 5400 if complete else 0, gaps, has_footage)


def test_verdicts() -> None:
    end = REQUIRED.end
    grace = timedelta(hours=24)
    whole, holed, empty = _camera(True), _camera(False), _camera(False, has_footage=False)
    assert (
        verdict([whole], required_end=end, now=end - timedelta(1), grace=grace) is Verdict.PENDING
    )
    assert verdict([whole, whole], required_end=end, now=end, grace=grace) is Verdict.COMPLETE
    assert (
        verdict([whole, holed], required_end=end, now=end + timedelta(hours=1), grace=grace)
        is Verdict.PENDING
    )
    after = end + grace
    assert verdict([whole, holed], required_end=end, now=after, grace=grace) is Verdict.INCOMPLETE
    assert verdict([whole, empty], required_end=end, now=after, grace=grace) is Verdict.MISSING
    assert verdict([], required_end=end, now=after, grace=grace) is Verdict.MISSING


def test_required_cameras_follow_the_service_history() -> None:
    cameras = [
        RequiredCamera("F", None, None),
        RequiredCamera("B", None, at(-1)),  # retired before the sitting
        RequiredCamera("N", at(90 * 60 + 1), None),  # installed after it
        RequiredCamera("M", at(30 * 60), None),  # installed during it
    ]
    assert required_cameras(cameras, REQUIRED) == ["F", "M"]
