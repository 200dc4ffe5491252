from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.retention.expiry import add_calendar_years, end_of_local_day, expiry_for

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
