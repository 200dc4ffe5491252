from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from services.ingest.retention import add_calendar_years, end_of_local_day, expiry_for

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
