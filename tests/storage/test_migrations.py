from __future__ import annotations

from services.context import Services
from storage.db import schema_differences


def test_migrations_build_exactly_the_models(services: Services) -> None:
    """A model change without its migration fails here, on both databases."""
    with services.db.engine.connect() as connection:
        differences = schema_differences(connection)
    assert differences == []


def test_postgresql_holds_the_job_queue_schema(services: Services) -> None:
    """Migration 0015 applies procrastinate's schema on PostgreSQL, and nothing on SQLite."""
    import sqlalchemy as sa

    tables = set(sa.inspect(services.db.engine).get_table_names())
    expected = {"procrastinate_jobs", "procrastinate_workers", "procrastinate_periodic_defers"}
    if services.db.is_sqlite:
        assert not tables & expected
    else:
        assert expected <= tables
