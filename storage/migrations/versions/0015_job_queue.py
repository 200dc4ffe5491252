"""the PostgreSQL job queue (procrastinate's schema)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 21:00:00

On PostgreSQL, procrastinate's own schema (`procrastinate_jobs`, `procrastinate_workers`,
`procrastinate_periodic_defers`, ..., their types, functions and triggers) as the installed
procrastinate ships it, applied in the upgrade's one transaction: a killed upgrade leaves none
of it. On SQLite nothing: there the work runs in-process (docs/architecture.md "The job
queue"). A later procrastinate release that changes its schema gets a migration of its own
that runs that release's files from `procrastinate/sql/migrations/`.
"""

from __future__ import annotations

from alembic import op
from procrastinate.schema import SchemaManager

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_TABLES = (
    "procrastinate_events",
    "procrastinate_periodic_defers",
    "procrastinate_jobs",
    "procrastinate_workers",
)
_TYPES = (
    "procrastinate_job_to_defer_v1",
    "procrastinate_job_event_type",
    "procrastinate_job_status",
)


def _driver_execute(sql: str) -> None:
    # Straight to psycopg, on alembic's own connection (so in its transaction), without
    # parameters: the schema's `%` and `:` are SQL, not placeholders.
    raw = op.get_bind().connection.dbapi_connection
    assert raw is not None
    raw.execute(sql)  # type: ignore[attr-defined]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _driver_execute(SchemaManager.get_schema())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        _driver_execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    # Its functions live in the schema the search path names first, like its tables.
    _driver_execute(
        """
        DO $$
        DECLARE f record;
        BEGIN
          FOR f IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                   WHERE p.proname LIKE 'procrastinate%'
                     AND p.pronamespace = current_schema()::regnamespace
          LOOP
            EXECUTE 'DROP FUNCTION IF EXISTS ' || f.signature || ' CASCADE';
          END LOOP;
        END $$;
        """
    )
    for type_name in _TYPES:
        _driver_execute(f"DROP TYPE IF EXISTS {type_name} CASCADE")
