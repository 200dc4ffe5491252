"""The PostgreSQL job queue (procrastinate): work any number of `examvault worker` processes, on
any machines, take safely (docs/architecture.md "The job queue").

The work itself is the same functions the embedded (SQLite) setup runs in its threads: the
pipeline, the health checker, the verdict sweep, the checkpoint writer, the purge. Only the
scheduling differs: here each piece is a job row that one worker locks, runs, and marks done.

- `ingest` queue: a staged HTTP upload (`ingest_upload`) or a spool file (`ingest_spool_file`),
  each with a procrastinate `lock` on the file (two jobs for one file never run at once) and a
  `queueing_lock` (at most one waiting job per file, however many scanners offer it). Both are
  idempotent by content: the pipeline claims the file with `flock` and finds a stored SHA-256.
- `health` queue: health sampling of a stored segment and the catch-up round: slow (keyframe
  decoding), so on a queue of its own that never delays ingest.
- `periodic` queue: the verdict sweep, ledger checkpoints, the daily purge and the retry of
  stalled jobs. Periodic jobs are deferred by every worker, but procrastinate records each
  (task, period) once in `procrastinate_periodic_defers`, so each period runs once in all.
- A worker killed mid-job stops sending heartbeats; after EXAMVAULT_QUEUE_STALLED_SECONDS the
  `retry_stalled_jobs` job (every 10 s) puts its jobs back to `todo` for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from procrastinate import App, PsycopgConnector, RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued, UniqueViolation
from procrastinate.jobs import Status
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import text
from sqlalchemy.engine import make_url

from services.ingest.pipeline import IngestResult, Outcome
from services.ingest.spool import is_spool_recording, spool_arrival, spool_entry_problem
from services.ingest.uploads import UPLOAD_ID, ingest_staged_upload
from storage.outages import outage_of

if TYPE_CHECKING:
    from services.context import Services

logger = logging.getLogger(__name__)

QUEUE_INGEST = "ingest"
QUEUE_HEALTH = "health"
QUEUE_PERIODIC = "periodic"
QUEUES = (QUEUE_INGEST, QUEUE_HEALTH, QUEUE_PERIODIC)
# How often the stalled-job check runs (croniter's sixth column is the seconds).
STALLED_CHECK_CRON = "* * * * * */10"


def conninfo(database_url: str) -> str:
    """libpq's URI for SQLAlchemy's `postgresql+psycopg://...` (options such as the test
    suite's search_path carried over, so the queue lives beside our tables)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def every(seconds: float) -> str:
    """A procrastinate cron for "about every `seconds`": the largest step that divides the
    minute (or the hour) and is no longer than asked, so periods line up on all workers."""
    if seconds < 60:
        step = max(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) if d <= max(1, seconds))
        return f"* * * * * */{step}"
    minutes = seconds / 60
    if minutes < 60:
        step = max(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) if d <= minutes)
        return f"*/{step} * * * *"
    return "0 * * * *"


def spool_job_key(path: Path) -> str:
    """The lock of a spool file's jobs: its path's bytes hashed (names need not be UTF-8)."""
    return "spool:" + hashlib.sha256(os.fsencode(path)).hexdigest()[:32]


class JobMetrics:
    """What this worker's jobs did, for the worker's own /metrics (`--metrics-port`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter(
            "examvault_jobs",
            "Jobs this worker finished, by task and outcome (succeeded, failed: retried or "
            "given up by the queue)",
            ("task", "outcome"),
            registry=self.registry,
        )
        self.ingest = Counter(
            "examvault_job_ingest_outcomes",
            "What ingest jobs made of their file: stored, duplicate, conflict, rejected, skipped",
            ("outcome",),
            registry=self.registry,
        )
        self.seconds = Histogram(
            "examvault_job_seconds",
            "Time one job took, by task",
            ("task",),
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.stalled = Counter(
            "examvault_jobs_stalled_retried",
            "Jobs of workers that stopped sending heartbeats, put back for another worker",
            registry=self.registry,
        )


class JobQueue:
    """procrastinate wired to the services: the tasks, how to defer them, how to run them."""

    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings
        self.metrics = JobMetrics()
        info = conninfo(settings.resolved_database_url)
        # One async app: it runs the worker (LISTEN/NOTIFY) and defers; plain threads (the
        # spool scanner, an ingest's listeners) defer through the worker's own event loop.
        self.app = App(
            connector=PsycopgConnector(conninfo=info, min_size=1, max_size=4),
            periodic_defaults={"max_delay": 120},
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._register()

    # -- the tasks -------------------------------------------------------------------------

    def _register(self) -> None:
        settings = self.services.settings
        outage_retry = RetryStrategy(max_attempts=20, wait=settings.outage_retry_seconds)

        @self.app.task(name="ingest_upload", queue=QUEUE_INGEST, retry=outage_retry)
        def ingest_upload(upload_id: str) -> None:
            self._timed("ingest_upload", lambda: self.ingest_upload(upload_id))

        @self.app.task(name="ingest_spool_file", queue=QUEUE_INGEST, retry=outage_retry)
        def ingest_spool_file(path_hex: str) -> None:
            # The path's bytes in hex: spool names need not be UTF-8, JSON arguments must be.
            path = Path(os.fsdecode(bytes.fromhex(path_hex)))
            self._timed("ingest_spool_file", lambda: self.ingest_spool_file(path))

        @self.app.task(name="check_health", queue=QUEUE_HEALTH, retry=outage_retry)
        def check_health(segment_id: int) -> None:
            self._timed("check_health", lambda: self.services.health.check_logged(segment_id))

        @self.app.periodic(cron=every(60))
        @self.app.task(
            name="health_catch_up",
            queue=QUEUE_HEALTH,
            lock="health_catch_up",
            queueing_lock="health_catch_up",
        )
        def health_catch_up(timestamp: int) -> None:
            if settings.health_checks:
                self._timed("health_catch_up", self.services.health.check_unchecked)

        @self.app.periodic(cron=every(settings.verdict_sweep_seconds))
        @self.app.task(name="sweep_verdicts", queue=QUEUE_PERIODIC, lock="sweep_verdicts")
        def sweep_verdicts(timestamp: int) -> None:
            from services.coverage.verdicts import sweep_pending

            changed = self._timed(
                "sweep_verdicts", lambda: sweep_pending(self.services.db, settings)
            )
            if changed:
                logger.info("verdict sweep: %d sitting(s) changed verdict", changed)

        @self.app.periodic(cron=every(settings.ledger_checkpoint_seconds))
        @self.app.task(name="write_checkpoint", queue=QUEUE_PERIODIC, lock="write_checkpoint")
        def write_checkpoint(timestamp: int) -> None:
            self._timed("write_checkpoint", lambda: self._checkpoints().write_if_grown())

        if settings.purge_schedule:
            # Every minute, and only the minute EXAMVAULT_PURGE_SCHEDULE names (local time)
            # purges: the zone's offset (and its daylight saving) is applied at each minute.
            @self.app.periodic(cron="* * * * *")
            @self.app.task(
                name="purge",
                queue=QUEUE_PERIODIC,
                lock="purge",
                retry=RetryStrategy(max_attempts=5, wait=300),
            )
            def purge(timestamp: int) -> None:
                at = datetime.fromtimestamp(timestamp, UTC).astimezone(settings.zone)
                if at.strftime("%H:%M") == settings.purge_schedule:
                    self._timed("purge", self.purge)

        @self.app.periodic(cron=STALLED_CHECK_CRON)
        @self.app.task(
            name="retry_stalled_jobs",
            queue=QUEUE_PERIODIC,
            queueing_lock="retry_stalled_jobs",
            pass_context=True,
        )
        async def retry_stalled_jobs(context: Any, timestamp: int) -> None:
            manager = context.app.job_manager
            stalled = await manager.get_stalled_jobs(
                seconds_since_heartbeat=settings.queue_stalled_seconds
            )
            for job in stalled:
                try:
                    await manager.retry_job(job)
                except UniqueViolation:
                    # A scanner already queued the same file again (the queueing lock allows
                    # one waiting job per file): that one does the work. Closing this one
                    # releases the file's lock, which kept the new one from starting.
                    assert job.id is not None
                    await manager.finish_job_by_id_async(
                        job_id=job.id, status=Status.FAILED, delete_job=True
                    )
                    logger.warning(
                        "job %s (%s) of a worker silent for %g s: closed, a waiting job for "
                        "the same work is given to another worker",
                        job.id,
                        job.task_name,
                        settings.queue_stalled_seconds,
                    )
                else:
                    logger.warning(
                        "job %s (%s) of a worker silent for %g s: given to another worker",
                        job.id,
                        job.task_name,
                        settings.queue_stalled_seconds,
                    )
                self.metrics.stalled.inc()

    def _timed(self, task: str, work: Callable[[], Any]) -> Any:
        began = time.monotonic()
        try:
            value = work()
        except Exception as exc:
            self.metrics.jobs.labels(task, "failed").inc()
            if outage_of(exc) is not None:
                # The queue retries it; one line here, readiness says more.
                logger.warning("%s waits for a dependency: %s", task, exc)
            raise
        finally:
            self.metrics.seconds.labels(task).observe(time.monotonic() - began)
        self.metrics.jobs.labels(task, "succeeded").inc()
        if isinstance(value, IngestResult):
            self.metrics.ingest.labels(value.outcome.value).inc()
        return value

    def ingest_upload(self, upload_id: str) -> IngestResult | None:
        if not UPLOAD_ID.match(upload_id):
            raise ValueError(f"not an upload id: {upload_id!r}")
        data_path = self.services.settings.incoming_dir / f"{upload_id}.bin"
        return ingest_staged_upload(self.services.pipeline, data_path)

    def ingest_spool_file(self, path: Path) -> IngestResult | None:
        spool_dir = self.services.settings.resolved_spool_dir
        if not is_spool_recording(path, spool_dir) or not os.path.lexists(path):
            return None  # already ingested (and removed) by an earlier run of this job
        problem = spool_entry_problem(path, spool_dir)
        if problem is not None:
            logger.warning("spool entry %s skipped: %s", path, problem)
            return None
        arrival = spool_arrival(path, spool_dir)
        return self.services.pipeline.ingest(arrival, actor="ingest")

    def _checkpoints(self) -> Any:
        from services.ledger.checkpoints import CheckpointWriter

        settings = self.services.settings
        return CheckpointWriter(
            self.services.db,
            self.services.store,
            settings.data_dir,
            every_entries=settings.ledger_checkpoint_entries,
            every_seconds=settings.ledger_checkpoint_seconds,
        )

    def purge(self) -> None:
        from services.retention.purge import STOPPED, describe_result, execute_purge

        result = execute_purge(
            self.services.db, self.services.store, self.services.settings, actor="schedule"
        )
        logger.info("scheduled purge: %s", describe_result(result).replace("\n", ";"))
        if result.status == STOPPED:
            # The store stopped it: the queue tries again (5 times, 5 minutes apart).
            raise RuntimeError("the scheduled purge was stopped by the store; retried")

    # -- deferring ---------------------------------------------------------------------------

    async def defer_upload(self, upload_id: str) -> None:
        """From the API (async): one staged upload to ingest."""
        # AlreadyEnqueued: a sweep offered it first, and one waiting job is enough.
        key = f"upload:{upload_id}"
        await self._defer("ingest_upload", key, key, upload_id=upload_id)

    async def _defer(self, name: str, lock: str, queueing_lock: str | None, **args: Any) -> None:
        with contextlib.suppress(AlreadyEnqueued):
            await self.app.configure_task(
                name=name, lock=lock, queueing_lock=queueing_lock
            ).defer_async(**args)

    def _defer_from_thread(
        self, name: str, lock: str, queueing_lock: str | None, **args: Any
    ) -> None:
        if self._loop is None:
            raise RuntimeError("the job queue's worker is not running: nothing can be deferred")
        asyncio.run_coroutine_threadsafe(
            self._defer(name, lock, queueing_lock, **args), self._loop
        ).result(timeout=60)

    def defer_arrival(self, path: Path) -> None:
        """From a thread (the spool scanner): a spool file or a kept upload to ingest."""
        incoming = self.services.settings.incoming_dir
        if path.suffix == ".bin" and path.parent == incoming:
            key = f"upload:{path.stem}"
            self._defer_from_thread("ingest_upload", key, key, upload_id=path.stem)
        else:
            key = spool_job_key(path)
            self._defer_from_thread("ingest_spool_file", key, key, path_hex=os.fsencode(path).hex())

    def defer_health(self, result: IngestResult) -> None:
        """An ingest listener: a stored segment's health check, on the slow queue."""
        if result.outcome is not Outcome.STORED or result.segment is None:
            return
        segment_id = result.segment.id
        self._defer_from_thread("check_health", f"health:{segment_id}", None, segment_id=segment_id)

    # -- running -----------------------------------------------------------------------------

    async def work(
        self,
        *,
        queues: Iterable[str],
        concurrency: int,
        name: str | None = None,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        """Run a procrastinate worker until SIGINT/SIGTERM (procrastinate's own handlers:
        the running jobs finish, then it stops)."""
        settings = self.services.settings
        async with self.app.open_async():
            self._loop = asyncio.get_running_loop()
            if on_started is not None:
                on_started()
            await self.app.run_worker_async(
                queues=list(queues),
                concurrency=concurrency,
                name=name,
                # Heartbeats three times per stalled period: one lost beat is not a death.
                update_heartbeat_interval=settings.queue_stalled_seconds / 3,
                stalled_worker_timeout=settings.queue_stalled_seconds,
                # Succeeded jobs are forgotten (the ledger and the metrics keep what happened);
                # failed ones stay for an operator to see and retry.
                delete_jobs="successful",
                fetch_job_polling_interval=2.0,
            )

    def close(self) -> None:
        self._loop = None


def queue_depths(services: Services) -> dict[tuple[str, str], int]:
    """(queue, status) -> jobs waiting (`todo`), running (`doing`) or given up (`failed`),
    read with one query bounded to 2 s so a slow database cannot hold /metrics."""
    with services.db.read() as session:
        session.execute(text("SET LOCAL statement_timeout = 2000"))
        rows = session.execute(
            text(
                "SELECT queue_name, status::text, count(*) FROM procrastinate_jobs "
                "WHERE status IN ('todo', 'doing', 'failed') GROUP BY queue_name, status"
            )
        ).all()
    depths = {(queue, status): 0 for queue in QUEUES for status in ("todo", "doing", "failed")}
    for queue, status, count in rows:
        depths[(queue, status)] = int(count)
    return depths


def run_worker(
    services: Services, *, queues: Iterable[str], concurrency: int, metrics_port: int | None
) -> None:
    """`examvault worker` on PostgreSQL: the procrastinate worker, plus (when it serves the
    ingest queue) the spool scanner that turns each waiting file into a job."""
    from services.ingest.worker import IngestWorker

    queue = JobQueue(services)
    queues = list(queues)
    if services.settings.health_checks:
        services.pipeline.listeners.append(queue.defer_health)
    scanner = (
        IngestWorker(services.pipeline, dispatch=queue.defer_arrival)
        if QUEUE_INGEST in queues
        else None
    )
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=queue.metrics.registry)
    try:
        asyncio.run(
            queue.work(
                queues=queues,
                concurrency=concurrency,
                name=f"examvault-{os.uname().nodename}-{os.getpid()}",
                on_started=scanner.start if scanner is not None else None,
            )
        )
    finally:
        if scanner is not None:
            scanner.stop()
        queue.close()
