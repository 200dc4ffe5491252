"""Instants read back from either database are aware UTC, whatever the fast paths take."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import literal_column, select, type_coerce

from services.context import Services
from storage.db import _session_in_utc
from storage.models import UTCDateTime


def test_instants_round_trip_as_aware_utc(registered: Services) -> None:
    moments = [
        datetime(2026, 3, 2, 2, 30, 0, 123456, tzinfo=UTC),
        datetime(2026, 3, 2, 2, 30, tzinfo=UTC),
        datetime(2026, 3, 2, 10, 30, 5, tzinfo=timezone(timedelta(hours=8))),
    ]
    with registered.db.read() as session:
        for moment in moments:
            back = session.scalar(select(type_coerce(moment, UTCDateTime())))
            assert back == moment and back.tzinfo is UTC


def test_sqlite_text_with_an_offset_is_converted_to_utc(registered: Services) -> None:
    if not registered.db.is_sqlite:
        return
    with registered.db.read() as session:
        text_value = literal_column("'2026-03-02 10:30:00+08:00'")
        back = session.scalar(select(type_coerce(text_value, UTCDateTime())))
    assert back == datetime(2026, 3, 2, 2, 30, tzinfo=UTC) and back.tzinfo is UTC


def test_postgresql_sessions_keep_their_options_and_run_in_utc() -> None:
    url = _session_in_utc("postgresql+psycopg://u@h/db?options=-csearch_path%3Ds1")
    assert "search_path" in url and "TimeZone" in url
    assert _session_in_utc("sqlite:///x.sqlite3") == "sqlite:///x.sqlite3"


def test_postgresql_sessions_run_in_utc(registered: Services) -> None:
    if registered.db.is_sqlite:
        return
    with registered.db.engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW TimeZone").scalar_one() == "UTC"
