"""Engine, sessions and migrations.

Two kinds of session: `read()` for queries and `write()` for a unit of work that commits on
success and rolls back on error. On SQLite a write takes the database's write lock at BEGIN
(`BEGIN IMMEDIATE`), so two processes never both read the ledger head and then collide.

A database that cannot be reached (refused, dropped, no free connection in time) raises
`DatabaseUnavailable`, and a full disk under it `DiskFull`, wherever the query was: callers
tell an outage from a bad query by the class, not by parsing driver messages.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, ExceptionContext, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from storage.space import DiskFull, is_disk_full

T = TypeVar("T")
logger = logging.getLogger(__name__)


class DatabaseUnavailable(Exception):
    """The database could not be reached or dropped the connection: not the query's fault, and
    it may succeed later."""


class SchemaBehind(Exception):
    """The database's schema lacks migrations this code needs: `examvault db upgrade` was not
    run for this release, or an older backup was restored under a running process."""


_MIGRATIONS = Path(__file__).with_name("migrations")


def configure_sqlite(engine: Engine, *, foreign_keys: bool = True) -> None:
    """Make SQLAlchemy's transactions SQLite's: every statement, DDL included, runs inside the
    BEGIN that SQLAlchemy emits. Left to itself, Python's sqlite3 driver begins a transaction
    only before INSERT/UPDATE/DELETE, so CREATE TABLE and friends would commit on their own
    (a migration killed half-way then leaves tables its rerun trips over)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def _name_outages(engine: Engine) -> None:
    @event.listens_for(engine, "handle_error")
    def _outage(context: ExceptionContext) -> BaseException | None:
        # A pre-ping's disconnect is SQLAlchemy's to handle: it reconnects.
        if context.is_pre_ping:
            return None
        original = context.original_exception
        first_line = str(original).strip().splitlines()[0] if str(original).strip() else ""
        if is_disk_full(original):
            return DiskFull(f"the database could not write, its disk is full: {first_line}")
        # No connection means connecting failed (refused, timed out, unknown host).
        if context.is_disconnect or context.connection is None:
            return DatabaseUnavailable(f"the database did not answer: {first_line}")
        return None


class Database:
    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        connect_timeout_seconds: float = 5.0,
        pool_timeout_seconds: float = 10.0,
    ) -> None:
        """`connect_timeout_seconds` bounds a new connection to PostgreSQL (libpq waits
        forever by default); `pool_timeout_seconds` the wait for a free pooled connection."""
        self.url = url
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        parsed = make_url(url)
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            # libpq takes whole seconds, at least 2.
            connect_args["connect_timeout"] = max(2, math.ceil(connect_timeout_seconds))
            # A peer gone silent (a real partition, not a refusal) is noticed by the kernel:
            # probes after 30 s idle, and data unacknowledged for 60 s breaks the connection.
            connect_args.update(
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
                tcp_user_timeout=60_000,
            )
            for name in parsed.query:
                connect_args.pop(name, None)  # what the URL says wins
        self.engine = create_engine(
            _session_in_utc(url),
            echo=echo,
            pool_pre_ping=True,
            pool_timeout=pool_timeout_seconds,
            connect_args=connect_args,
        )
        _name_outages(self.engine)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            configure_sqlite(self.engine)
            writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            writer = self.engine
        self._writer_bind = writer
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(writer, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with _pool_outage(), self._reader() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with _pool_outage(), self._writer() as session, session.begin():
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

    def upgrade(
        self, *, progress: Callable[[int, int], None] | None = None, tree_batch: int = 20_000
    ) -> None:
        """Bring the schema to the newest migration (what `examvault db upgrade` runs), then
        build the ledger's stored tree for entries it does not hold yet (migration 0009):
        nothing to do on a current database, batches with `progress` (done, total) on an older
        one, resumed where it stopped if a previous run was killed."""
        from alembic import command

        from storage.ledger import TreeBuildError, build_stored_tree
        from storage.tree import TreeIncomplete

        command.upgrade(alembic_config(self.url), "head")
        try:
            build_stored_tree(self.run_write, batch=tree_batch, progress=progress)
        except (TreeBuildError, TreeIncomplete) as exc:
            # Ingest must go on over a damaged ledger: checkpoints refuse and `ledger verify`
            # names the damage, so the operator is told there, not by a service that won't start.
            logger.error("the ledger's stored tree cannot be built: %s", exc)

    def check_schema_current(self) -> None:
        """Raise SchemaBehind unless the database holds every migration of this code.

        A revision this code does not know counts as current: a newer release migrated first
        (docs/operations.md, "Upgrades"), and its migrations keep the old code working while
        the processes are rolled."""
        from alembic.runtime.migration import MigrationContext

        heads, known = _code_revisions()
        with _pool_outage(), self.engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
        if current == heads or current - known:
            return
        at = ", ".join(sorted(current)) or "no schema"
        raise SchemaBehind(
            f"the database is at revision {at}, this code needs {', '.join(sorted(heads))}: "
            "run `examvault db upgrade`"
        )

    def has_schema(self) -> bool:
        return inspect(self.engine).has_table("alembic_version")

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _pool_outage() -> Iterator[None]:
    """No pooled connection freed up in time: every connection is stuck on a database that
    does not answer (or the load is far beyond the pool); either way, try again later."""
    try:
        yield
    except PoolTimeout as exc:
        raise DatabaseUnavailable(f"no database connection became free in time: {exc}") from exc


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


def schema_differences(connection: Connection) -> list[Any]:
    """What the database's schema lacks or has beyond the models, ignoring the job queue's
    own tables (procrastinate's, made by migration 0015, not described by our models)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.models import Base

    def ours(name: str | None, kind: str, _parent: Any) -> bool:
        return not (kind in ("table", "index") and (name or "").startswith("procrastinate_"))

    context = MigrationContext.configure(connection, opts={"include_name": ours})
    return list(compare_metadata(context, Base.metadata))


@functools.cache
def _code_revisions() -> tuple[set[str], set[str]]:
    """(heads, every revision) of this code's migrations, read from their files once."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return set(script.get_heads()), {revision.revision for revision in script.walk_revisions()}


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config
