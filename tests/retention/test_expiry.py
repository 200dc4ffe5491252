from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.retention.expiry import (
    HoldScope,
    PurgeDecision,
    SegmentFacts,
    add_calendar_years,
    end_of_local_day,
    expiry_for,
    holds_covering,
    newly_covered,
    purge_decision,
    scope_covers,
    scopes_to_add,
    sitting_scopes,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_29_february_rounds_up_to_1_march() -> None:
    assert add_calendar_years(date(2024, 2, 29), 3) == date(2027, 3, 1)
    assert add_calendar_years(date(2024, 2, 29), 4) == date(2028, 2, 29)


def test_end_of_a_shanghai_day_is_16_utc() -> None:
    assert end_of_local_day(date(2029, 11, 24), SHANGHAI) == datetime(2029, 11, 24, 16, tzinfo=UTC)


def test_segment_covering_no_sitting_expires_three_years_after_its_own_end() -> None:
    end = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 10:00 local
    assert expiry_for(end, [], zone=SHANGHAI) == datetime(2029, 11, 24, 16, tzinfo=UTC)


def test_early_morning_local_end_counts_from_the_local_date() -> None:
    end = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)  # 07:30 on 24 November in Shanghai
    assert expiry_for(end, [], zone=SHANGHAI) == datetime(2029, 11, 24, 16, tzinfo=UTC)


def test_latest_sitting_end_wins() -> None:
    segment_end = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    sittings = [datetime(2026, 11, 24, 1, 0, tzinfo=UTC), datetime(2026, 11, 25, 1, 0, tzinfo=UTC)]
    assert expiry_for(segment_end, sittings, zone=SHANGHAI) == datetime(
        2029, 11, 25, 16, tzinfo=UTC
    )


def test_longer_retention_is_honoured() -> None:
    end = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    assert expiry_for(end, [], zone=SHANGHAI, years=5) == datetime(2031, 11, 24, 16, tzinfo=UTC)


def test_a_window_crossing_29_february_keeps_the_extra_day() -> None:
    sitting_end = datetime(2024, 2, 29, 2, 0, tzinfo=UTC)  # 10:00 local on 29 February 2024
    # 3 x 365 days would give 28 February 2027; calendar years round up to 1 March.
    assert expiry_for(sitting_end, [sitting_end], zone=SHANGHAI) == datetime(
        2027, 3, 1, 16, tzinfo=UTC
    )
    assert expiry_for(sitting_end, [sitting_end], zone=SHANGHAI) - sitting_end > timedelta(
        days=3 * 365
    )


def test_a_sitting_ending_at_2359_local_expires_at_1600_utc_not_utc_midnight() -> None:
    end = datetime(2026, 11, 24, 15, 59, tzinfo=UTC)  # 23:59 local
    assert expiry_for(end, [end], zone=SHANGHAI) == datetime(2029, 11, 24, 16, tzinfo=UTC)


def test_a_sitting_ending_at_0730_local_counts_from_its_local_date() -> None:
    end = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)  # 07:30 local on 24 November
    assert expiry_for(end, [end], zone=SHANGHAI) == datetime(2029, 11, 24, 16, tzinfo=UTC)


def test_a_segment_covering_two_sittings_follows_the_later_one() -> None:
    segment_end = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
    morning = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    night = datetime(2026, 11, 24, 16, 30, tzinfo=UTC)  # 00:30 local on the 25th
    assert expiry_for(segment_end, [morning, night], zone=SHANGHAI) == datetime(
        2029, 11, 25, 16, tzinfo=UTC
    )


def test_the_next_scheduled_purge_is_the_next_local_time_of_day() -> None:
    from services.retention.purge import next_daily_run

    after = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)  # 02:00 local on the 25th
    assert next_daily_run(after, "03:30", SHANGHAI) == datetime(2026, 11, 24, 19, 30, tzinfo=UTC)
    assert next_daily_run(after, "01:00", SHANGHAI) == datetime(2026, 11, 25, 17, 0, tzinfo=UTC)


def test_a_segment_past_midnight_is_kept_three_years_from_its_own_end() -> None:
    # 23:45-00:10 local, serving a sitting that ends at 23:50: the frames after midnight
    # belong to the 25th, so the segment is kept to the end of 25 November three years on.
    segment_end = datetime(2026, 11, 24, 16, 10, tzinfo=UTC)
    sitting_end = datetime(2026, 11, 24, 15, 50, tzinfo=UTC)
    assert expiry_for(segment_end, [sitting_end], zone=SHANGHAI) == datetime(
        2029, 11, 25, 16, tzinfo=UTC
    )


def test_a_sitting_ending_after_the_segment_still_counts() -> None:
    segment_end = datetime(2026, 11, 24, 15, 56, tzinfo=UTC)  # 23:56 local
    required_end = datetime(2026, 11, 24, 16, 5, tzinfo=UTC)  # 00:05 local, margin included
    assert expiry_for(segment_end, [required_end], zone=SHANGHAI) == datetime(
        2029, 11, 25, 16, tzinfo=UTC
    )


# Hold scopes: frozen parts, the union when a held sitting moves.

T = datetime(2026, 11, 24, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _segment(segment_id: int, camera_id: int, start: datetime, end: datetime) -> SegmentFacts:
    return SegmentFacts(segment_id, camera_id, start, end, expires_at=T)


def test_a_scope_covers_overlap_but_not_a_touching_neighbour() -> None:
    scope = HoldScope(1, camera_id=7, start=T, end=T + HOUR)
    assert scope_covers(scope, _segment(1, 7, T - HOUR, T + timedelta(seconds=1)))
    assert scope_covers(scope, _segment(2, 7, T + HOUR - timedelta(seconds=1), T + 2 * HOUR))
    assert not scope_covers(scope, _segment(3, 7, T - HOUR, T))
    assert not scope_covers(scope, _segment(4, 7, T + HOUR, T + 2 * HOUR))
    assert not scope_covers(scope, _segment(5, 8, T, T + HOUR))
    assert scope_covers(HoldScope(1, segment_id=5), _segment(5, 8, T, T + HOUR))
    assert not scope_covers(HoldScope(1, segment_id=6), _segment(5, 8, T, T + HOUR))
    assert scope_covers(HoldScope(1, camera_id=8), _segment(5, 8, T, T + HOUR))  # open-ended


def test_a_hold_with_several_parts_is_named_once() -> None:
    segment = _segment(1, 7, T, T + HOUR)
    parts = [
        HoldScope(4, camera_id=7, start=T, end=T + HOUR),
        HoldScope(4, camera_id=7, start=T - HOUR, end=T + 2 * HOUR),
        HoldScope(2, segment_id=1),
        HoldScope(3, camera_id=8, start=T, end=T + HOUR),
    ]
    assert holds_covering(segment, parts) == [2, 4]


def test_a_sitting_scope_is_every_camera_over_the_interval() -> None:
    assert sitting_scopes(9, [3, 1, 3], T, T + HOUR) == [
        HoldScope(9, camera_id=1, start=T, end=T + HOUR),
        HoldScope(9, camera_id=3, start=T, end=T + HOUR),
    ]


def test_a_moved_sitting_adds_only_what_its_hold_does_not_cover_yet() -> None:
    frozen = sitting_scopes(9, [1, 2], T, T + 2 * HOUR)
    moved = sitting_scopes(9, [1, 2], T + 24 * HOUR, T + 26 * HOUR)
    assert scopes_to_add(frozen, moved) == moved
    # Moving back, or inside the frozen interval, adds nothing.
    assert scopes_to_add([*frozen, *moved], frozen) == []
    assert scopes_to_add(frozen, sitting_scopes(9, [1, 2], T + HOUR, T + 2 * HOUR)) == []
    # Half outside: the new part is added whole; a new camera is added too.
    later = sitting_scopes(9, [1, 2, 5], T + HOUR, T + 3 * HOUR)
    assert scopes_to_add(frozen, later) == later
    # Another hold's parts never count for this one.
    assert scopes_to_add(sitting_scopes(8, [1, 2], T, T + 2 * HOUR), frozen) == frozen


def test_newly_covered_names_what_only_the_added_parts_cover() -> None:
    frozen = [HoldScope(9, camera_id=1, start=T, end=T + HOUR)]
    added = [HoldScope(9, camera_id=1, start=T + 24 * HOUR, end=T + 25 * HOUR)]
    old = _segment(1, 1, T, T + HOUR)
    new = _segment(2, 1, T + 24 * HOUR, T + 25 * HOUR)
    elsewhere = _segment(3, 2, T + 24 * HOUR, T + 25 * HOUR)
    assert newly_covered([old, new, elsewhere], frozen, added) == [2]


def test_a_segment_scope_is_inside_only_the_same_segments_scope() -> None:
    assert scopes_to_add([HoldScope(9, segment_id=5)], [HoldScope(9, segment_id=5)]) == []
    other = HoldScope(9, segment_id=6)
    assert scopes_to_add([HoldScope(9, segment_id=5)], [other]) == [other]
    # A camera part cannot be known to contain a segment (its time is not in the scope), and a
    # segment part never contains a camera's interval: both are added.
    camera_part = HoldScope(9, camera_id=1, start=T, end=T + HOUR)
    assert scopes_to_add([HoldScope(9, segment_id=5)], [camera_part]) == [camera_part]
    assert scopes_to_add([camera_part], [other]) == [other]


def test_an_open_ended_part_contains_every_interval_on_its_camera_and_only_there() -> None:
    bounded = HoldScope(9, camera_id=1, start=T, end=T + HOUR)
    assert scopes_to_add([HoldScope(9, camera_id=1)], [bounded]) == []
    assert scopes_to_add([HoldScope(9, camera_id=1, end=T + HOUR)], [bounded]) == []
    assert scopes_to_add([HoldScope(9, camera_id=1, start=T)], [bounded]) == []
    elsewhere = HoldScope(9, camera_id=2, start=T, end=T + HOUR)
    assert scopes_to_add([HoldScope(9, camera_id=1)], [elsewhere]) == [elsewhere]
    # An open end is not inside a bounded part, however wide that part is.
    wide = HoldScope(9, camera_id=1, start=T - 99 * HOUR, end=T + 99 * HOUR)
    from_t = HoldScope(9, camera_id=1, start=T)
    until_t = HoldScope(9, camera_id=1, end=T)
    assert scopes_to_add([wide], [from_t, until_t]) == [from_t, until_t]
    # Bounds are inclusive: a part exactly as wide as the frozen one adds nothing.
    assert scopes_to_add([bounded], [HoldScope(9, camera_id=1, start=T, end=T + HOUR)]) == []


def test_the_end_of_a_local_day_is_given_in_utc() -> None:
    assert end_of_local_day(date(2029, 11, 24), SHANGHAI).tzinfo is UTC
    end = datetime(2026, 11, 24, 18, 0, tzinfo=SHANGHAI)
    assert expiry_for(end, [], zone=SHANGHAI).tzinfo is UTC


def test_purge_decision_never_a_byte_before_expiry_never_anything_held() -> None:
    expired = SegmentFacts(1, 7, T - HOUR, T, expires_at=T)
    assert purge_decision(expired, [], as_of=T) is PurgeDecision.PURGE  # expires at as_of
    early = T - timedelta(microseconds=1)
    assert purge_decision(expired, [], as_of=early) is PurgeDecision.NOT_EXPIRED
    held = [HoldScope(3, camera_id=7, start=T - HOUR, end=T)]
    assert purge_decision(expired, held, as_of=T) is PurgeDecision.HELD
    elsewhere = [HoldScope(3, camera_id=8, start=T - HOUR, end=T)]
    assert purge_decision(expired, elsewhere, as_of=T) is PurgeDecision.PURGE
    # Not yet expired wins over held; already purged wins over everything.
    assert purge_decision(expired, held, as_of=early) is PurgeDecision.NOT_EXPIRED
    gone = SegmentFacts(1, 7, T - HOUR, T, expires_at=T, purged=True)
    assert purge_decision(gone, held, as_of=early) is PurgeDecision.ALREADY_PURGED
