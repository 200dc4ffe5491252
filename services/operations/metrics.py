"""The process's own counters and gauges for /metrics, in a registry of its own (one per
`Services`, so tests and several apps in one process never share figures).

What to alert on is in docs/operations.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.operations.readiness import Readiness

logger = logging.getLogger(__name__)

# From a small segment on an idle local disk to a large one on a slow store.
_INGEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class OperationsMetrics:
    def __init__(self, readiness: Readiness) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_ingest_answers = Counter(
            "examvault_http_ingest_answers",
            "Answers to PUT /api/v1/ingest/..., by HTTP status and error code",
            ("status", "code"),
            registry=self.registry,
        )
        self.http_ingest_seconds = Histogram(
            "examvault_http_ingest_seconds",
            "Time from a push's request to its answer, body upload included",
            buckets=_INGEST_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_ReadinessCollector(readiness))
        self.registry.register(_LedgerCollector(readiness))
        self.registry.register(_PurgeCollector(readiness))

    def watch_queue(self, depths: Callable[[], dict[tuple[str, str], int]]) -> None:
        """Queue depth per queue and status, from `depths` (services/jobs.queue_depths) at
        each scrape: the jobs table is the one place that knows all workers' backlog."""
        self.registry.register(_QueueCollector(depths))

    def render(self) -> str:
        return generate_latest(self.registry).decode("utf-8")


class _ReadinessCollector(Collector):
    """Gauges read from the readiness checks' last results: no I/O at scrape time."""

    def __init__(self, readiness: Readiness) -> None:
        self._readiness = readiness

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not self._readiness.started:
            return
        up = GaugeMetricFamily(
            "examvault_dependency_up",
            "1 when the dependency's last readiness check passed in time, else 0",
            labels=("dependency",),
        )
        for name, ok in self._readiness.dependency_up().items():
            up.add_metric((name,), 1 if ok else 0)
        yield up
        ready = GaugeMetricFamily("examvault_ready", "1 when /readyz answers ready")
        ready.add_metric((), 0 if self._readiness.problems() else 1)
        yield ready
        disk = self._readiness.disk
        if disk is None:
            return
        free = GaugeMetricFamily(
            "examvault_free_bytes",
            "Free bytes on the filesystem of the data dir, the spool and a local store",
            labels=("path",),
        )
        for name, value in sorted(disk.free_bytes.items()):
            free.add_metric((name,), value)
        yield free
        files = GaugeMetricFamily(
            "examvault_spool_waiting_files", "Recordings and kept uploads waiting to be stored"
        )
        files.add_metric((), disk.waiting_files)
        yield files
        size = GaugeMetricFamily(
            "examvault_spool_waiting_bytes", "Bytes of the recordings waiting to be stored"
        )
        size.add_metric((), disk.waiting_bytes)
        yield size
        # Wall clock against the file's mtime: how long the oldest recording has waited.
        oldest = GaugeMetricFamily(
            "examvault_spool_oldest_waiting_seconds",
            "Age of the oldest recording or kept upload waiting to be stored; 0 when none",
        )
        waited = disk.oldest_waiting_mtime
        oldest.add_metric((), 0.0 if waited is None else max(0.0, time.time() - waited))
        yield oldest


class _LedgerCollector(Collector):
    """How late the ledger's signatures are (services/operations/ledger_watch.py): instants read
    in the background, turned into ages against the clock now, so no query runs at scrape time
    and an age keeps growing while nothing new gets signed."""

    def __init__(self, readiness: Readiness) -> None:
        self._readiness = readiness

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = self._readiness.ledger_watch.latest
        if figures is None:
            return
        now = datetime.now(UTC)

        def age(moment: datetime | None) -> float:
            return 0.0 if moment is None else max(0.0, (now - moment).total_seconds())

        size = GaugeMetricFamily(
            "examvault_ledger_checkpoint_size", "Entries the latest signed checkpoint covers"
        )
        size.add_metric((), figures.checkpoint_size)
        yield size
        if figures.checkpoint_signed_at is not None:
            signed = GaugeMetricFamily(
                "examvault_ledger_checkpoint_age_seconds",
                "Seconds since the latest checkpoint was signed (grows while the ledger is idle)",
            )
            signed.add_metric((), age(figures.checkpoint_signed_at))
            yield signed
        unsigned = GaugeMetricFamily(
            "examvault_ledger_unsigned_age_seconds",
            "Age of the oldest ledger entry no signed checkpoint covers; 0 when all are covered",
        )
        unsigned.add_metric((), age(figures.unsigned_since))
        yield unsigned
        if not figures.witnesses:
            return
        cosigned = GaugeMetricFamily(
            "examvault_witness_cosigned_size",
            "Size of the newest checkpoint the witness cosigned; 0 when none yet",
            labels=("witness",),
        )
        cosignature_age = GaugeMetricFamily(
            "examvault_witness_cosignature_age_seconds",
            "Seconds since the witness's newest cosignature was kept (absent before the first)",
            labels=("witness",),
        )
        waiting = GaugeMetricFamily(
            "examvault_witness_waiting_seconds",
            "Seconds since the oldest checkpoint the witness has not cosigned was signed; "
            "0 when it cosigned the newest",
            labels=("witness",),
        )
        for key_id, witness in sorted(figures.witnesses.items()):
            cosigned.add_metric((key_id,), witness.cosigned_size)
            if witness.cosigned_at is not None:
                cosignature_age.add_metric((key_id,), age(witness.cosigned_at))
            waiting.add_metric((key_id,), age(witness.waiting_since))
        yield cosigned
        yield cosignature_age
        yield waiting


class _PurgeCollector(Collector):
    """The purge's runs and leftovers (services/operations/purge_watch.py), read in the
    background like the ledger's figures."""

    # Every status a run can have, so a rate over `stopped` exists before the first failure.
    _STATUSES = ("running", "completed", "stopped", "interrupted")

    def __init__(self, readiness: Readiness) -> None:
        self._readiness = readiness

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = self._readiness.purge_watch.latest
        if figures is None:
            return
        runs = GaugeMetricFamily(
            "examvault_purge_runs",
            "Purge runs recorded, by how they ended (stopped: the store failed; interrupted: "
            "asked to stop or killed)",
            labels=("status",),
        )
        for status in sorted({*self._STATUSES, *figures.runs}):
            runs.add_metric((status,), figures.runs.get(status, 0))
        yield runs
        if figures.last_completed_at is not None:
            completed = GaugeMetricFamily(
                "examvault_purge_last_completed_timestamp_seconds",
                "When the newest completed purge run finished (Unix time)",
            )
            completed.add_metric((), figures.last_completed_at.timestamp())
            yield completed
        pending = GaugeMetricFamily(
            "examvault_purge_blobs_pending_deletion",
            "Tombstoned segments whose blob is still in the store, left for the next run",
        )
        pending.add_metric((), figures.blobs_pending_deletion)
        yield pending


class _QueueCollector(Collector):
    """`examvault_queue_jobs{queue, status}`: jobs waiting (todo), running (doing) and given up
    after their retries (failed) in the PostgreSQL job queue. One bounded query per scrape."""

    def __init__(self, depths: Callable[[], dict[tuple[str, str], int]]) -> None:
        self._depths = depths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            depths = self._depths()
        except Exception as exc:
            # The database's own gauge (examvault_dependency_up) says it is down.
            logger.warning("queue depth not read for /metrics: %s", exc)
            return
        jobs = GaugeMetricFamily(
            "examvault_queue_jobs",
            "Jobs in the PostgreSQL queue by queue (ingest, health, periodic) and status "
            "(todo: waiting, doing: running, failed: given up after retries)",
            labels=("queue", "status"),
        )
        for (queue, status), count in sorted(depths.items()):
            jobs.add_metric((queue, status), count)
        yield jobs
