"""Alembic environment: runs migrations on the URL set by `storage.db.alembic_config`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from storage.db import configure_sqlite
from storage.faults import fault_point
from storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set by storage.db.alembic_config"
    engine = create_engine(url, poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":
        # One transaction for the whole upgrade, DDL included, as on PostgreSQL: a killed
        # `examvault db upgrade` leaves the schema it started from, never half of a migration.
        # IMMEDIATE takes the write lock before the current revision is read, so two processes
        # migrating at once run one after the other. Foreign keys stay off, as SQLite's batch
        # mode (copy a table, drop the old one, rename) needs.
        configure_sqlite(engine, foreign_keys=False)
        engine = engine.execution_options(sqlite_begin="IMMEDIATE")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            # Alembic assumes SQLite cannot roll back DDL and commits after each migration;
            # with configure_sqlite it can, so an upgrade is all or nothing on both databases.
            transactional_ddl=True,
            # Test-only crash point between two migrations (tests/storage/test_migration_crash.py).
            on_version_apply=lambda **_: fault_point("migration.applied"),
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
