"""Instants on interfaces: RFC 3339 with an offset, shown in the configured zone (UTC inside)."""

from __future__ import annotations

from datetime import datetime, tzinfo


def rfc3339(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="milliseconds")


def rfc3339_or_none(moment: datetime | None, zone: tzinfo) -> str | None:
    return None if moment is None else rfc3339(moment, zone)
