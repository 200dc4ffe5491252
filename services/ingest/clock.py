"""Wall-clock starts declared by camera hosts, and the clock-sanity flags of SPEC.md ("Time").

A host declares a segment's start in the upload header (RFC 3339) or in the spool file name
(`YYYYMMDDTHHMMSS[.fff]` + `+HHMM`/`-HHMM`/`Z`, local zone when no offset). The raw string is
kept beside the parsed instant so a wrong clock can be investigated later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

# A host whose clock was reset reports 1970 or 2000-01-01: such a start cannot be placed.
EARLIEST_PLAUSIBLE_START = datetime(2000, 1, 1, tzinfo=UTC)
# No exam recorded now is dated in the next century; near year 9999 the retention date (three
# calendar years after the end) cannot even be computed.
LATEST_PLAUSIBLE_START = datetime(2100, 1, 1, tzinfo=UTC)

_NAME = re.compile(
    r"^(?P<stamp>\d{8}T\d{6})(?P<fraction>\.\d{1,6})?(?P<offset>Z|[+-]\d{4})?(?:_[^/\\]*)?"
    r"\.(?P<ext>[A-Za-z0-9]{1,8})$"
)
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
)


class StartError(ValueError):
    """A declared start that cannot be read; `code` is the stable API code."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class DeclaredStart:
    raw: str
    instant: datetime  # aware UTC
    zone_assumed: bool  # no offset was given; the configured zone was applied


def name_carries_start(file_name: str) -> bool:
    return _NAME.match(file_name) is not None


def file_extension(file_name: str) -> str:
    """Lower-case extension without the dot, or '' (used for blob keys and container hints)."""
    stem, dot, ext = file_name.rpartition(".")
    return ext.lower() if dot and stem and re.fullmatch(r"[A-Za-z0-9]{1,8}", ext) else ""


def parse_name_start(file_name: str, zone: tzinfo) -> DeclaredStart:
    match = _NAME.match(file_name)
    if match is None:
        raise StartError(
            "unparseable_start",
            f"file name {file_name!r} does not start with YYYYMMDDTHHMMSS[.fff][+HHMM|-HHMM|Z] "
            "followed by an extension",
        )
    stamp, fraction, offset = match["stamp"], match["fraction"] or "", match["offset"]
    raw = stamp + fraction + (offset or "")
    try:
        naive = datetime.strptime(stamp, "%Y%m%dT%H%M%S")
    except ValueError as exc:
        raise StartError("unparseable_start", f"{stamp!r} in the file name is not a date") from exc
    if fraction:
        naive = naive.replace(microsecond=int(fraction[1:].ljust(6, "0")))
    if offset is None:
        local = naive.replace(tzinfo=zone)
    elif offset == "Z":
        local = naive.replace(tzinfo=UTC)
    else:
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 14 or minutes > 59:
            raise StartError("unparseable_start", f"offset {offset!r} is not a valid UTC offset")
        sign = 1 if offset[0] == "+" else -1
        local = naive.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
    try:
        instant = local.astimezone(UTC)
    except OverflowError as exc:
        raise StartError(
            "unparseable_start", f"{raw!r} in the file name is not a date in UTC"
        ) from exc
    return DeclaredStart(raw=raw, instant=instant, zone_assumed=offset is None)


def parse_rfc3339(value: str) -> DeclaredStart:
    """Strict RFC 3339 with an offset: an upload header has no excuse to be ambiguous."""
    text = value.strip()
    if not _RFC3339.match(text):
        raise StartError(
            "bad_start_header",
            f"X-Recording-Start {value!r} is not an RFC 3339 instant with an offset, "
            "e.g. 2026-11-24T09:00:00+08:00",
        )
    normalised = text.replace("t", "T").replace("z", "Z").replace(" ", "T")
    # Python keeps microseconds; nanosecond digits from some hosts are cut, not rounded.
    head, dot, tail = normalised.partition(".")
    if dot:
        digits = re.match(r"\d+", tail)
        assert digits is not None
        normalised = f"{head}.{digits.group()[:6]}{tail[digits.end() :]}"
    try:
        instant = datetime.fromisoformat(normalised).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        # OverflowError: in UTC it falls outside the calendar (9999-12-31T23:00:00-14:00).
        raise StartError("bad_start_header", f"X-Recording-Start {value!r}: {exc}") from exc
    return DeclaredStart(raw=value, instant=instant, zone_assumed=False)


def check_plausible(start: DeclaredStart) -> None:
    if start.instant < EARLIEST_PLAUSIBLE_START:
        raise StartError(
            "clock_reset",
            f"declared start {start.raw!r} is before 2000: the host's clock was probably reset",
        )
    if start.instant >= LATEST_PLAUSIBLE_START:
        raise StartError(
            "clock_far_ahead",
            f"declared start {start.raw!r} is in 2100 or later: the host's clock is wrong",
        )


def clock_flags(
    *,
    start: datetime,
    end: datetime,
    received_at: datetime,
    creation_time: datetime | None,
    zone_assumed: bool,
    ahead_tolerance: timedelta,
) -> list[str]:
    """Flags stored on the segment; the times are kept as declared, never silently fixed."""
    flags: list[str] = []
    if end > received_at + ahead_tolerance:
        flags.append("clock_ahead")
    if creation_time is not None and _whole_hours_apart(creation_time, start, end):
        flags.append("timezone_suspect")
    if zone_assumed:
        flags.append("zone_assumed")
    return flags


def _whole_hours_apart(creation: datetime, start: datetime, end: datetime) -> bool:
    """True when the container's own clock differs from the declared times by a whole number
    (1 to 14) of hours, give or take two minutes: the signature of a time-zone mistake."""
    slack = 120.0
    if start - timedelta(seconds=slack) <= creation <= end + timedelta(seconds=slack):
        return False
    for anchor in (start, end):
        delta = abs((creation - anchor).total_seconds())
        hours = round(delta / 3600)
        if 1 <= hours <= 14 and abs(delta - hours * 3600) <= slack:
            return True
    return False
