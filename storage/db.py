"""Engine, sessions and migrations.

Two kinds of session: `read()` for queries and `write()` for a unit of work that commits on
success and rolls back on error. On SQLite a write takes the database's write lock at BEGIN
(`BEGIN IMMEDIATE`), so two processes never both read the ledger head and then collide.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")

_MIGRATIONS = Path(__file__).with_name("migrations")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(_session_in_utc(url), echo=echo, pool_pre_ping=True)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            _configure_sqlite(self.engine)
            writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            writer = self.engine
        self._writer_bind = writer
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(writer, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._writer() as session, session.begin():
            yield session

    @contextmanager
    def progress_write(self) -> Iterator[Session]:
        """A write transaction whose commit survives the death of this process but not
        necessarily a power cut: for progress marks whose loss only makes a later run redo
        idempotent work (the purge's per-blob marks). It spares the fsync per commit that
        would make marking thousands of small steps slower than the steps themselves
        (SQLite in WAL: synchronous=NORMAL for this transaction; PostgreSQL:
        synchronous_commit off for this transaction)."""
        if not self.is_sqlite:
            with self.write() as session:
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
                yield session
            return
        with self._writer_bind.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None
            # Outside any transaction, straight to the driver: SQLAlchemy would begin one.
            raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with Session(bind=connection, expire_on_commit=False) as session, session.begin():
                    yield session
            finally:
                raw.execute("PRAGMA synchronous=FULL")

    def run_write(self, work: Callable[[Session], T], *, attempts: int = 5) -> T:
        """Run `work` in a write transaction, retrying when another writer won a race.

        The retried conflicts are the ledger head (two appenders chose the same seq) and SQLite's
        busy lock; `work` must therefore be safe to run again from the start.
        """
        for attempt in range(1, attempts + 1):
            try:
                with self.write() as session:
                    return work(session)
            except (IntegrityError, OperationalError) as exc:
                if attempt == attempts or not _is_retryable(exc):
                    raise
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (what `examvault db upgrade` runs)."""
        from alembic import command

        command.upgrade(alembic_config(self.url), "head")

    def has_schema(self) -> bool:
        return inspect(self.engine).has_table("alembic_version")

    def dispose(self) -> None:
        self.engine.dispose()


def _session_in_utc(url: str) -> str:
    """On PostgreSQL, run sessions in UTC: psycopg then returns instants with `timezone.utc`,
    which `UTCDateTime` passes through, instead of a ZoneInfo it must convert value by value
    (a report reads thousands). Stored values and comparisons do not depend on it."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    options = parsed.query.get("options", "")
    if isinstance(options, tuple):
        options = " ".join(options)
    if "timezone=" in options.lower().replace(" ", ""):
        return url
    options = f"{options} -c TimeZone=UTC".strip()
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


def _is_retryable(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(
        marker in text
        for marker in ("ledger_entries", "database is locked", "deadlock", "could not serialize")
    )


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config
