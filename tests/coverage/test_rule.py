"""The coverage rule as pure functions: properties against an independent oracle over random
segment sets, the service history of cameras, and every branch of the verdict."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
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
    required_span,
    span_coverage,
    verdict,
)

T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
REQUIRED = Interval(T0, T0 + timedelta(minutes=90))
TOLERANCE = timedelta(seconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# The properties below check the sweep in rule.py against an oracle that shares no code or
# method with it: time is cut into ticks, every tick a segment touches is painted, and the
# unpainted runs are the holes. All endpoints fall on ticks, so the oracle is exact.
TICK = timedelta(milliseconds=250)


def tick(n: int) -> datetime:
    return T0 + n * TICK


@dataclass(frozen=True)
class Case:
    low: int
    high: int
    footage: tuple[tuple[int, int, bool], ...]  # (start tick, end tick, clock suspect)
    claims: tuple[tuple[int, int], ...]  # rejected claims, each at least one tick long
    tolerance: int  # ticks

    @property
    def required(self) -> Interval:
        return Interval(tick(self.low), tick(self.high))

    def coverage(self) -> CameraCoverage:
        return camera_coverage(
            self.required,
            [Footage(tick(start), tick(end), suspect) for start, end, suspect in self.footage],
            tolerance=self.tolerance * TICK,
            rejected_claims=[Interval(tick(start), tick(end)) for start, end in self.claims],
        )


def _painted(case: Case) -> list[bool]:
    painted = [False] * (case.high - case.low)
    for start, end, _ in case.footage:
        for cell in range(max(start, case.low), min(end, case.high)):
            painted[cell - case.low] = True
    return painted


def oracle_gaps(case: Case) -> list[tuple[datetime, datetime, GapCause]]:
    """Every unpainted run at least `tolerance` ticks long, with the cause the rule gives it."""
    painted = [*_painted(case), True]
    suspect = any(item[2] for item in case.footage)
    gaps: list[tuple[datetime, datetime, GapCause]] = []
    run_start: int | None = None
    for offset, covered in enumerate(painted):
        if not covered and run_start is None:
            run_start = offset
        elif covered and run_start is not None:
            start, end = case.low + run_start, case.low + offset
            if end - start >= case.tolerance:
                # Claims and holes overlap when they share a tick.
                if any(set(range(a, b)) & set(range(start, end)) for a, b in case.claims):
                    cause = GapCause.REJECTED
                elif suspect:
                    cause = GapCause.CLOCK_SUSPECT
                else:
                    cause = GapCause.NOT_RECEIVED
                gaps.append((tick(start), tick(end), cause))
            run_start = None
    return gaps


# A small grid, so that spans often meet each other and the interval's ends exactly.
spans = st.tuples(st.integers(-5, 45), st.integers(0, 20)).map(lambda t: (t[0], t[0] + t[1]))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    low = draw(st.integers(0, 5))
    high = draw(st.integers(low + 1, 40))
    footage = draw(
        st.lists(st.tuples(spans, st.booleans()).map(lambda t: (*t[0], t[1])), max_size=8)
    )
    # Half the cameras have only trustworthy clocks, so that not_received holes are common too.
    if draw(st.booleans()):
        footage = [(start, end, False) for start, end, _ in footage]
    claims = draw(st.lists(spans.filter(lambda span: span[1] > span[0]), max_size=3))
    tolerance = draw(st.sampled_from([0, 1, 2, 3, 5]))
    return Case(low, high, tuple(footage), tuple(claims), tolerance)


# Pinned cases for the boundaries a random draw may miss: holes exactly as long as the
# tolerance, a segment nested inside a longer one, spans touching or filling the interval.
HOLE_OF_TOLERANCE = Case(0, 40, ((0, 10, False), (14, 40, False)), (), 4)
NESTED = Case(0, 40, ((0, 30, False), (5, 10, False), (30, 40, False)), (), 1)
TOUCHING_ENDS = Case(10, 30, ((0, 10, False), (30, 50, False), (15, 15, False)), (), 0)
CLAIM_TOUCHING_HOLE = Case(0, 40, ((0, 10, False), (20, 40, True)), ((5, 10), (20, 25)), 1)
EXACT_FIT = Case(0, 20, ((0, 20, False),), (), 0)
TAIL_HOLE_OF_TOLERANCE = Case(0, 40, ((0, 36, False),), (), 4)


@settings(max_examples=150, deadline=None)
@given(case=cases())
@example(case=HOLE_OF_TOLERANCE)
@example(case=NESTED)
@example(case=TOUCHING_ENDS)
@example(case=CLAIM_TOUCHING_HOLE)
@example(case=EXACT_FIT)
@example(case=TAIL_HOLE_OF_TOLERANCE)
def test_gaps_are_exactly_the_holes_at_least_as_long_as_the_tolerance(case: Case) -> None:
    assert [(gap.start, gap.end, gap.cause) for gap in case.coverage().gaps] == oracle_gaps(case)


@settings(max_examples=100, deadline=None)
@given(case=cases())
@example(case=TOUCHING_ENDS)
def test_covered_seconds_footage_and_completeness_follow_the_painted_ticks(case: Case) -> None:
    report = case.coverage()
    gap_ticks = sum((end - start) / TICK for start, end, _ in oracle_gaps(case))
    assert report.required_seconds == (case.high - case.low) * TICK.total_seconds()
    assert report.covered_seconds == pytest.approx(
        (case.high - case.low - gap_ticks) * TICK.total_seconds()
    )
    assert report.has_footage == any(_painted(case))
    assert report.complete == (not oracle_gaps(case))


@settings(max_examples=100, deadline=None)
@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_order_duplicates_and_overlaps_do_not_matter(case: Case, seed: int) -> None:
    shuffled = list(case.footage) + list(case.footage[: len(case.footage) // 2])
    random.Random(seed).shuffle(shuffled)
    assert dataclasses.replace(case, footage=tuple(shuffled)).coverage() == case.coverage()


service_ends = st.one_of(st.none(), st.integers(-10, 130))


@settings(max_examples=100, deadline=None)
@given(
    low=st.integers(0, 20),
    length=st.integers(1, 100),
    history=st.lists(st.tuples(service_ends, service_ends), max_size=4),
)
def test_each_camera_is_required_over_exactly_the_ticks_it_was_in_service(
    low: int, length: int, history: list[tuple[int | None, int | None]]
) -> None:
    high = low + length
    # Codes in descending order, so that the answer's code order is the rule's doing.
    codes = [f"C{9 - index}" for index in range(len(history))]
    cameras = [
        RequiredCamera(code, None if a is None else tick(a), None if r is None else tick(r))
        for code, (a, r) in zip(codes, history, strict=True)
    ]
    expected: dict[str, Interval] = {}
    for code, (active_from, retired_at) in zip(codes, history, strict=True):
        ticks = [
            cell
            for cell in range(low, high)
            if (active_from is None or active_from <= cell)
            and (retired_at is None or cell < retired_at)
        ]
        if ticks:
            expected[code] = Interval(tick(ticks[0]), tick(ticks[-1] + 1))
    parts = required_cameras(cameras, Interval(tick(low), tick(high)))
    assert parts == expected and list(parts) == sorted(expected)


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


WHOLE, HOLED, EMPTY = _camera(True), _camera(False), _camera(False, has_footage=False)
GRACE = timedelta(hours=24)
END = REQUIRED.end
JUST = timedelta(microseconds=1)


def judge(cameras: list[CameraCoverage], now: datetime) -> Verdict:
    return verdict(cameras, required_end=END, now=now, grace=GRACE)


def test_a_sitting_not_yet_ended_is_pending_even_when_complete() -> None:
    assert judge([WHOLE, WHOLE], END - JUST) is Verdict.PENDING


def test_a_complete_sitting_is_complete_the_moment_it_ends() -> None:
    assert judge([WHOLE, WHOLE], END) is Verdict.COMPLETE
    assert judge([WHOLE], END + 2 * GRACE) is Verdict.COMPLETE


def test_an_ended_sitting_with_a_gap_is_pending_until_the_grace_period_is_over() -> None:
    assert judge([WHOLE, HOLED], END) is Verdict.PENDING
    assert judge([WHOLE, HOLED], END + GRACE - JUST) is Verdict.PENDING
    assert judge([WHOLE, EMPTY], END + GRACE - JUST) is Verdict.PENDING
    assert judge([], END + GRACE - JUST) is Verdict.PENDING


def test_a_gap_left_when_the_grace_period_ends_is_incomplete() -> None:
    assert judge([WHOLE, HOLED], END + GRACE) is Verdict.INCOMPLETE
    assert judge([HOLED, HOLED], END + GRACE) is Verdict.INCOMPLETE


def test_a_required_camera_without_any_footage_is_missing() -> None:
    assert judge([WHOLE, EMPTY], END + GRACE) is Verdict.MISSING
    assert judge([EMPTY, HOLED], END + GRACE) is Verdict.MISSING


def test_a_room_without_a_camera_in_service_is_missing_never_complete() -> None:
    assert judge([], END) is Verdict.PENDING
    assert judge([], END + GRACE) is Verdict.MISSING


def test_the_grace_period_is_counted_from_the_required_end() -> None:
    later = END + timedelta(hours=3)
    assert verdict([HOLED], required_end=later, now=END + GRACE, grace=GRACE) is Verdict.PENDING
    assert verdict([HOLED], required_end=END, now=END, grace=timedelta(0)) is Verdict.INCOMPLETE


def test_verdicts_and_causes_have_their_interface_names() -> None:
    assert [v.value for v in Verdict] == ["pending", "complete", "incomplete", "missing"]
    assert [c.value for c in GapCause] == ["not_received", "rejected", "clock_suspect"]


def test_the_ratio_is_covered_over_required_and_one_when_nothing_is_required() -> None:
    assert CameraCoverage(400, 100, (), True).ratio == 0.25
    assert CameraCoverage(0, 0, (), False).ratio == 1.0


def test_the_required_span_widens_the_sitting_by_its_margins() -> None:
    span = required_span(
        at(0), at(5400), pre_margin=timedelta(minutes=5), post_margin=timedelta(minutes=10)
    )
    assert span == Interval(at(-300), at(6000)) and span.seconds == 6300


def test_bare_spans_are_judged_with_trustworthy_clocks_unless_told() -> None:
    spans = [(at(0), at(600)), (at(720), at(90 * 60))]
    assert [gap.cause for gap in span_coverage(REQUIRED, spans, tolerance=TOLERANCE).gaps] == [
        GapCause.NOT_RECEIVED
    ]
    suspect = span_coverage(REQUIRED, spans, tolerance=TOLERANCE, suspect_clock=True)
    assert [gap.cause for gap in suspect.gaps] == [GapCause.CLOCK_SUSPECT]


def test_a_rejected_claim_outranks_a_suspect_clock() -> None:
    footage = [Footage(at(0), at(600), clock_suspect=True), Footage(at(720), at(90 * 60))]
    report = camera_coverage(
        REQUIRED, footage, tolerance=TOLERANCE, rejected_claims=[Interval(at(700), at(800))]
    )
    assert [gap.cause for gap in report.gaps] == [GapCause.REJECTED]


def test_a_claim_only_touching_a_hole_does_not_explain_it() -> None:
    footage = [Footage(at(0), at(600)), Footage(at(720), at(90 * 60))]
    claims = [Interval(at(500), at(600)), Interval(at(720), at(800))]
    report = camera_coverage(REQUIRED, footage, tolerance=TOLERANCE, rejected_claims=claims)
    assert [gap.cause for gap in report.gaps] == [GapCause.NOT_RECEIVED]


def test_required_cameras_follow_the_service_history() -> None:
    cameras = [
        RequiredCamera("F", None, None),
        RequiredCamera("B", None, at(-1)),  # retired before the sitting
        RequiredCamera("R", None, at(0)),  # retired the moment it starts
        RequiredCamera("N", at(90 * 60 + 1), None),  # installed after it
        RequiredCamera("L", at(90 * 60), None),  # installed the moment it ends
        RequiredCamera("M", at(30 * 60), None),  # installed during it
        RequiredCamera("O", None, at(30 * 60)),  # replaced by M
        RequiredCamera("S", at(10 * 60), at(20 * 60)),  # a stand-in for ten minutes
    ]
    assert required_cameras(cameras, REQUIRED) == {
        "F": REQUIRED,
        "M": Interval(at(30 * 60), REQUIRED.end),
        "O": Interval(REQUIRED.start, at(30 * 60)),
        "S": Interval(at(10 * 60), at(20 * 60)),
    }


def test_a_replaced_camera_and_its_replacement_together_make_the_sitting_complete() -> None:
    parts = required_cameras(
        [RequiredCamera("OLD", None, at(30 * 60)), RequiredCamera("NEW", at(30 * 60), None)],
        REQUIRED,
    )
    filmed = {
        "OLD": [Footage(at(-60), at(30 * 60))],
        "NEW": [Footage(at(30 * 60), at(90 * 60 + 30))],
    }
    cameras = [
        camera_coverage(part, filmed[code], tolerance=TOLERANCE) for code, part in parts.items()
    ]
    assert [camera.gaps for camera in cameras] == [(), ()]
    assert judge(cameras, END) is Verdict.COMPLETE
    # A real hole in the replacement's part is still a gap.
    holed = camera_coverage(parts["NEW"], [Footage(at(31 * 60), at(91 * 60))], tolerance=TOLERANCE)
    assert [(gap.start, gap.end) for gap in holed.gaps] == [(at(30 * 60), at(31 * 60))]
