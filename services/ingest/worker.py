"""The ingest worker: watches the spool, rescans it periodically, feeds files to the pipeline.

A thread with a `stop_event` (frigate's habit): `stop_event.wait(...)` between steps, so shutdown
is prompt. watchdog events make ingest immediate; the periodic rescan makes it certain (a missed
event or a restart loses nothing). A failing file is retried later, never dropped; a bad one is
quarantined by the pipeline and the loop goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from services.ingest.pipeline import IngestPipeline, Outcome
from services.ingest.spool import (
    Candidate,
    SkippedPaths,
    incoming_arrival,
    is_spool_recording,
    scan_spool,
    settled,
    spool_arrival,
    spool_entry_problem,
    sweep_incoming,
)
from storage.outages import outage_of

logger = logging.getLogger(__name__)

RETRY_SECONDS = 30.0


# With the job queue, a file offered again within this long is not deferred again: the job
# deferred before is still waiting or running (a lost one is offered again after it).
REDISPATCH_SECONDS = 60.0


class IngestWorker:
    """`dispatch`: instead of ingesting a ready file here, hand it on (the PostgreSQL job
    queue defers a job any worker may take); it raises when the hand-over failed."""

    def __init__(
        self,
        pipeline: IngestPipeline,
        *,
        watch: bool = True,
        dispatch: Callable[[Path], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.dispatch = dispatch
        self._dispatched: dict[Path, float] = {}
        settings = pipeline.settings
        self.spool_dir = settings.resolved_spool_dir
        self.incoming_dir = settings.incoming_dir
        self.settle_seconds = settings.spool_settle_seconds
        self.rescan_seconds = settings.spool_rescan_seconds
        self.outage_retry_seconds = float(settings.outage_retry_seconds)
        self.watch = watch
        self.stop_event = threading.Event()
        self.outcomes: Counter[str] = Counter()
        # Symlinks, FIFOs and the like in the spool: said once each, never ingested.
        self.skipped = SkippedPaths()
        self._pending: dict[Path, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: BaseObserver | None = None
        self._next_scan = 0.0

    def start(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        # FileExistsError: something that is not a folder (a dangling symlink...) is in its
        # place; the sweep says so and leaves it alone.
        with contextlib.suppress(FileExistsError):
            self.incoming_dir.mkdir(parents=True, exist_ok=True)
        removed = self.pipeline.store.recover()
        if removed:
            logger.warning("removed %d partial blob writes left by an interrupted run", removed)
        if self.watch:
            observer = Observer()
            observer.schedule(_SpoolEvents(self), str(self.spool_dir), recursive=True)
            observer.daemon = True
            observer.start()
            self._observer = observer
        self._thread = threading.Thread(target=self._run, name="ingest-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, path: Path, ready_at: float) -> None:
        with self._lock:
            known = self._pending.get(path)
            self._pending[path] = ready_at if known is None else min(known, ready_at)
        self._wake.set()

    def rescan(self) -> None:
        for candidate in (
            *scan_spool(self.spool_dir, self.settle_seconds, self.skipped),
            *sweep_incoming(self.incoming_dir, skipped=self.skipped),
        ):
            self.submit(candidate.path, candidate.ready_at)
        self._next_scan = time.time() + self.rescan_seconds

    def idle(self) -> bool:
        with self._lock:
            return not self._pending

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                if time.time() >= self._next_scan:
                    self.rescan()
                due = self._take_due()
                if due is None:
                    self._wake.clear()
                    self._wake.wait(self._sleep_for())
                    continue
                self._ingest(due)
            except Exception:
                # The loop must outlive any one failure (database down, disk full, ...).
                logger.exception("ingest loop error; retrying in %.0f s", RETRY_SECONDS)
                self.stop_event.wait(RETRY_SECONDS)

    def _take_due(self) -> Path | None:
        now = time.time()
        with self._lock:
            due = [path for path, ready in self._pending.items() if ready <= now]
            if not due:
                return None
            path = min(due, key=lambda p: self._pending[p])
            del self._pending[path]
            return path

    def _sleep_for(self) -> float:
        now = time.time()
        with self._lock:
            soonest = min(self._pending.values(), default=self._next_scan)
        return max(0.05, min(soonest, self._next_scan) - now)

    def _ingest(self, path: Path) -> None:
        upload = path.suffix == ".bin" and path.parent == self.incoming_dir
        if not (upload or is_spool_recording(path, self.spool_dir)):
            return
        problem = spool_entry_problem(path, self.spool_dir)
        if problem is not None:
            # Dropped, not retried: the next rescan offers it again and it is not said twice.
            self.skipped.note(path, problem)
            self.outcomes["not_regular"] += 1
            return
        if upload:
            arrival = incoming_arrival(path, self.skipped)
        elif os.path.lexists(path):
            candidate = settled(path, self.settle_seconds)
            if candidate.ready_at > time.time():
                # Still being written by a host that skips the .part convention.
                self.submit(path, candidate.ready_at)
                return
            arrival = spool_arrival(path, self.spool_dir)
        else:
            return
        if arrival is None:
            return
        if self.dispatch is not None:
            self._hand_on(path)
            return
        try:
            result = self.pipeline.ingest(arrival, actor=arrival.uploader or "ingest")
        except Exception as exc:
            outage = outage_of(exc)
            if outage is None:
                logger.exception("ingest of %s failed; it stays in the spool and is retried", path)
                self.submit(path, time.time() + RETRY_SECONDS)
                self.outcomes["error"] += 1
                return
            # Every other file would fail the same way: wait for the dependency, not per file.
            logger.warning(
                "ingest of %s waits (%s: %s); retrying in %.0f s",
                path.name,
                outage.code,
                exc,
                self.outage_retry_seconds,
            )
            self.outcomes[outage.code] += 1
            self.submit(path, time.time() + self.outage_retry_seconds)
            self.stop_event.wait(self.outage_retry_seconds)
            return
        self.outcomes[result.outcome.value] += 1
        if result.outcome is Outcome.SKIPPED and os.path.lexists(path):
            self.submit(path, time.time() + self.settle_seconds)

    def _hand_on(self, path: Path) -> None:
        now = time.monotonic()
        if now - self._dispatched.get(path, float("-inf")) < REDISPATCH_SECONDS:
            return
        assert self.dispatch is not None
        try:
            self.dispatch(path)
        except Exception as exc:
            if outage_of(exc) is None:
                logger.exception("could not queue %s; offered again in %.0f s", path, RETRY_SECONDS)
            else:
                logger.warning("could not queue %s (%s); offered again later", path, exc)
            self.submit(path, time.time() + RETRY_SECONDS)
            self.outcomes["not_queued"] += 1
            return
        if len(self._dispatched) > 100_000:
            # Forget what is long past (a spool with a huge backlog must not grow this forever).
            self._dispatched = {
                known: at for known, at in self._dispatched.items() if now - at < REDISPATCH_SECONDS
            }
        self._dispatched[path] = now
        self.outcomes["queued"] += 1


class _SpoolEvents(FileSystemEventHandler):
    def __init__(self, worker: IngestWorker) -> None:
        self.worker = worker

    def _offer(self, raw: str | bytes, *, complete: bool) -> None:
        path = Path(raw.decode() if isinstance(raw, bytes) else raw)
        if not is_spool_recording(path, self.worker.spool_dir):
            return
        # A rename from NAME.part is the host saying "complete"; a bare creation must settle.
        candidate = (
            Candidate(path, time.time()) if complete else settled(path, self.worker.settle_seconds)
        )
        self.worker.submit(candidate.path, candidate.ready_at)

    def on_moved(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileMovedEvent):
            self._offer(event.dest_path, complete=True)

    def on_created(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileCreatedEvent):
            self._offer(event.src_path, complete=False)

    def on_closed(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileClosedEvent):
            self._offer(event.src_path, complete=False)
