"""The process's own counters and gauges for /metrics, in a registry of its own (one per
`Services`, so tests and several apps in one process never share figures).

What to alert on is in docs/operations.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

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
            up.add_metric((name.replace(" ", "_"),), 1 if ok else 0)
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
