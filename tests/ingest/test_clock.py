from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.ingest.clock import (
    StartError,
    check_plausible,
    clock_flags,
    file_extension,
    parse_name_start,
    parse_rfc3339,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_name_start_with_offset_is_converted_to_utc() -> None:
    start = parse_name_start("20261124T090000+0800_cam1.mp4", SHANGHAI)
    assert start.instant == datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    assert start.raw == "20261124T090000+0800"
    assert not start.zone_assumed


def test_name_start_with_z_and_milliseconds() -> None:
    start = parse_name_start("20261124T010203.250Z.ts", SHANGHAI)
    assert start.instant == datetime(2026, 11, 24, 1, 2, 3, 250000, tzinfo=UTC)


def test_name_start_without_offset_takes_the_configured_zone_and_says_so() -> None:
    start = parse_name_start("20261124T090000.mkv", SHANGHAI)
    assert start.instant == datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    assert start.zone_assumed


@pytest.mark.parametrize(
    "name",
    [
        "cam1.mp4",
        "20261124-090000.mp4",
        "20261324T090000+0800.mp4",
        "20261124T090000+0800",
        "20261124T090000+2500.mp4",
        "../20261124T090000Z.mp4",
    ],
)
def test_unparseable_name_starts_are_refused(name: str) -> None:
    with pytest.raises(StartError) as caught:
        parse_name_start(name, SHANGHAI)
    assert caught.value.code == "unparseable_start"


def test_rfc3339_header_keeps_the_raw_string() -> None:
    start = parse_rfc3339("2026-11-24T09:00:00.123456789+08:00")
    assert start.instant == datetime(2026, 11, 24, 1, 0, 0, 123456, tzinfo=UTC)
    assert start.raw == "2026-11-24T09:00:00.123456789+08:00"


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-24T09:00:00",
        "2026-11-24",
        "yesterday",
        "2026-11-24T25:00:00Z",
        "2026-02-30T09:00:00Z",
    ],
)
def test_rfc3339_header_without_offset_or_invalid_is_refused(value: str) -> None:
    with pytest.raises(StartError) as caught:
        parse_rfc3339(value)
    assert caught.value.code == "bad_start_header"


def test_start_before_2000_is_a_reset_clock() -> None:
    with pytest.raises(StartError) as caught:
        check_plausible(parse_rfc3339("1970-01-01T00:00:00Z"))
    assert caught.value.code == "clock_reset"


def _flags(
    start: datetime,
    *,
    seconds: float = 60,
    received: datetime | None = None,
    creation: datetime | None = None,
) -> list[str]:
    end = start + timedelta(seconds=seconds)
    return clock_flags(
        start=start,
        end=end,
        received_at=received or end,
        creation_time=creation,
        zone_assumed=False,
        ahead_tolerance=timedelta(minutes=2),
    )


def test_end_after_arrival_is_clock_ahead() -> None:
    start = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    # A 10-minute segment that "ended" 10 minutes after it arrived: the host's clock is ahead.
    assert _flags(start, seconds=600, received=start) == ["clock_ahead"]
    # Within the two-minute tolerance: normal upload latency and small drift.
    assert _flags(start, seconds=600, received=start + timedelta(seconds=500)) == []


def test_creation_time_whole_hours_off_is_timezone_suspect() -> None:
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # host wrote local time as UTC
    assert "timezone_suspect" in _flags(start, creation=start - timedelta(hours=8, seconds=30))


def test_creation_time_within_the_segment_is_not_suspect() -> None:
    start = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    assert _flags(start, seconds=3600, creation=start + timedelta(hours=1)) == []
    assert _flags(start, creation=start + timedelta(minutes=37)) == []


def test_file_extension_is_lowercased_and_bounded() -> None:
    assert file_extension("20261124T090000Z.MP4") == "mp4"
    assert file_extension("noext") == ""
    assert file_extension(".hidden") == ""
