"""Readiness, checked in the background and answered from the last result.

Each dependency (database, blob store, migrations current, local disk) is checked by its own
thread every `EXAMVAULT_READINESS_INTERVAL_SECONDS`, so `/readyz` never waits on a dependency
and never takes a request thread, and one dependency that hangs does not hold up the others'
answers. A check that has not finished for longer than its bound counts as failed ("no answer
for N s"): a blackholed store is reported within seconds even though the call itself is still
waiting.

The disk check also reports what the local filesystems hold (free bytes, the spool's backlog)
for /metrics, and a write that failed on a full disk keeps readiness down for a while, even if
space came back in between: the operator sees that uploads were failing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text

from services.background import BackgroundThread
from services.operations.ledger_watch import LedgerWatch
from services.operations.purge_watch import PurgeWatch
from services.settings import Settings
from storage.blobs import BlobStore, BlobStoreError, LocalBlobStore
from storage.db import Database, DatabaseUnavailable, SchemaBehind
from storage.space import free_bytes, is_disk_full

logger = logging.getLogger(__name__)

MiB = 1024 * 1024


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    problem: str | None
    finished_at: float  # time.monotonic()
    seconds: float


@dataclass(frozen=True)
class DiskFigures:
    """What the local filesystems hold, as of the last disk check."""

    free_bytes: dict[str, int]  # "data", "spool", "store" (a local store only)
    waiting_files: int
    waiting_bytes: int
    # Modification time (epoch seconds) of the oldest waiting file: how far ingest lags.
    oldest_waiting_mtime: float | None


class DependencyCheck(BackgroundThread):
    """One dependency's check, run every `interval` seconds in a thread of its own."""

    def __init__(self, name: str, check: Callable[[], None], interval: float, bound: float):
        super().__init__()
        self.name = f"readiness-{name}"
        self.dependency = name
        self._check = check
        self._interval = interval
        # A check still running after this long counts as failed.
        self._bound = bound
        self.latest: CheckResult | None = None
        self._started_at: float | None = None
        self.first_result = threading.Event()

    def run_once(self) -> float:
        self._started_at = started = time.monotonic()
        try:
            self._check()
            problem = None
        except Exception as exc:
            problem = describe(exc)
        finished = time.monotonic()
        previous = self.latest
        self.latest = CheckResult(problem is None, problem, finished, finished - started)
        self.first_result.set()
        if problem is not None and (previous is None or previous.ok):
            logger.warning("not ready: %s: %s", self.dependency, problem)
        elif problem is None and previous is not None and not previous.ok:
            logger.info("ready again: %s answers (%.2f s)", self.dependency, finished - started)
        return self._interval

    def status(self, now: float) -> tuple[bool, str | None]:
        """(ok, problem) as of `now`: the last result, unless the check is overdue."""
        latest, started = self.latest, self._started_at
        overdue = now - (latest.finished_at if latest else (started or now))
        if started is not None and overdue > self._interval + self._bound:
            return False, f"the check has not answered for {overdue:.0f} s"
        if latest is None:
            return False, "not checked yet"
        return latest.ok, latest.problem


def public_name(check: str) -> str:
    return check.replace(" ", "_")


def describe(exc: Exception) -> str:
    """One line for an operator; our own exceptions say what and where, without secrets."""
    if isinstance(exc, BlobStoreError | DatabaseUnavailable | SchemaBehind | OSError):
        return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return exc.__class__.__name__


@dataclass
class Readiness:
    """The checks of one process, started and stopped with the app (a BackgroundJob)."""

    settings: Settings
    db: Database
    store: BlobStore
    # Witnesses whose cosignatures the ledger watch follows (EXAMVAULT_WITNESSES' key ids).
    witness_key_ids: tuple[str, ...] = ()
    checks: dict[str, DependencyCheck] = field(init=False)
    ledger_watch: LedgerWatch = field(init=False)
    purge_watch: PurgeWatch = field(init=False)
    disk: DiskFigures | None = field(default=None, init=False)
    _last_disk_full: tuple[float, str] | None = field(default=None, init=False)
    _started: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        interval = self.settings.readiness_interval_seconds
        # What one call may take with the configured timeouts, and some slack for a busy host.
        bound = 2 * max(
            self.settings.s3_connect_timeout_seconds,
            self.settings.database_connect_timeout_seconds,
        )
        self.checks = {
            "database": DependencyCheck("database", self._check_database, interval, bound),
            "blob store": DependencyCheck("blob store", self.store.check_ready, interval, bound),
            # Behind means this code would query columns that are not there yet.
            "migrations": DependencyCheck(
                "migrations", self.db.check_schema_current, interval, bound
            ),
            "disk": DependencyCheck("disk", self._check_disk, interval, bound),
        }
        # Not readiness checks: a late signature or a failed purge is an alert, not a reason
        # to refuse traffic.
        self.ledger_watch = LedgerWatch(self.db, self.witness_key_ids, interval)
        self.purge_watch = PurgeWatch(self.db, interval)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for check in self.checks.values():
            check.start()
        self.ledger_watch.start()
        self.purge_watch.start()

    def stop(self, timeout: float = 30.0) -> None:
        for check in self.checks.values():
            check.stop(timeout=min(timeout, 5.0))
        self.ledger_watch.stop(timeout=min(timeout, 5.0))
        self.purge_watch.stop(timeout=min(timeout, 5.0))
        # Fresh threads for the next start (another app on the same services, in tests).
        self._started = False
        self.__post_init__()

    @property
    def started(self) -> bool:
        return self._started

    def wait_for_first_results(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(
            check.first_result.wait(max(0.0, deadline - time.monotonic()))
            for check in self.checks.values()
        )

    def problems(self) -> list[str]:
        now = time.monotonic()
        found = []
        for name, check in self.checks.items():
            ok, problem = check.status(now)
            if not ok:
                found.append(f"{name}: {problem}")
        return found

    def failing(self, name: str) -> str | None:
        """The named check's problem if its last result (in time) failed, else None."""
        ok, problem = self.checks[name].status(time.monotonic())
        return None if ok or self.checks[name].latest is None else problem

    def dependency_up(self) -> dict[str, bool]:
        """Each check's state as of now, by its public name (`blob_store`), as /readyz and the
        `dependency` label of /metrics say it."""
        now = time.monotonic()
        return {public_name(name): check.status(now)[0] for name, check in self.checks.items()}

    def note_failure(self, exc: BaseException) -> None:
        """A write failed (ingest, an upload): a full disk keeps readiness down for a while."""
        if is_disk_full(exc):
            self._last_disk_full = (time.monotonic(), str(exc).splitlines()[0] if str(exc) else "")

    def _check_database(self) -> None:
        with self.db.read() as session:
            session.execute(text("SELECT 1"))

    def _watched_paths(self) -> dict[str, Path]:
        paths = {
            "data": self.settings.data_dir.resolve(),
            "spool": self.settings.resolved_spool_dir,
        }
        if isinstance(self.store, LocalBlobStore):
            paths["store"] = self.store.root
        return paths

    def _check_disk(self) -> None:
        free = {
            name: found
            for name, path in self._watched_paths().items()
            if (found := free_bytes(path)) is not None
        }
        backlog = spool_backlog(self.settings.resolved_spool_dir)
        self.disk = DiskFigures(
            free_bytes=free,
            waiting_files=backlog.files,
            waiting_bytes=backlog.bytes,
            oldest_waiting_mtime=backlog.oldest_mtime,
        )
        floor = self.settings.min_free_bytes
        short = [f"{name} {found // MiB} MiB" for name, found in free.items() if found < floor]
        if short:
            raise OSError(
                f"only {', '.join(short)} free, below EXAMVAULT_MIN_FREE_BYTES "
                f"({floor // MiB} MiB); uploads will fail"
            )
        failed = self._last_disk_full
        window = self.settings.write_failure_window_seconds
        if failed is not None and time.monotonic() - failed[0] < window:
            ago = time.monotonic() - failed[0]
            raise OSError(f"a write failed {ago:.0f} s ago on a full disk: {failed[1]}")


@dataclass(frozen=True)
class SpoolBacklog:
    files: int
    bytes: int
    oldest_mtime: float | None  # None when nothing waits


def spool_backlog(spool_dir: Path) -> SpoolBacklog:
    """Files and bytes waiting to become evidence: complete spool recordings (not `.part`)
    in camera folders, and HTTP uploads kept as `.incoming/*.bin`. Symlinks are not followed."""
    files = size = 0
    oldest: float | None = None
    try:
        folders = list(os.scandir(spool_dir))
    except OSError:
        return SpoolBacklog(0, 0, None)
    for folder in folders:
        if not folder.is_dir(follow_symlinks=False):
            continue
        incoming = folder.name == ".incoming"
        if folder.name.startswith(".") and not incoming:
            continue
        try:
            entries = list(os.scandir(folder.path))
        except OSError:
            continue
        for entry in entries:
            waiting = entry.name.endswith(".bin") if incoming else not entry.name.endswith(".part")
            if not waiting or entry.name.startswith("."):
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    found = entry.stat(follow_symlinks=False)
                    files += 1
                    size += found.st_size
                    oldest = found.st_mtime if oldest is None else min(oldest, found.st_mtime)
            except OSError:
                continue
    return SpoolBacklog(files, size, oldest)
