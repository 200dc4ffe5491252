"""Hostile things in the spool: symlinks (to files and to camera folders elsewhere), FIFOs named
like segments, and the same in the HTTP uploads' `.incoming` folder. The spool takes regular
files inside its own tree only, says why it skipped anything else (once), never reads, moves
or removes anything outside, and is never blocked (a FIFO must not stop a clean shutdown)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.context import Services
from services.ingest.pipeline import Arrival, IngestResult, Outcome
from services.ingest.spool import STALE_UPLOAD_SECONDS
from services.ingest.worker import IngestWorker
from services.registry import import_registry
from storage.db import Database
from storage.models import QuarantineRecord, Segment
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY, VideoFactory
from tests.processes import examvault_env, spawn, wait_until
from tests.reliability import Reliability

NAME = "20261124T090000+0800.mp4"
LATER = "20261124T090200+0800.mp4"


def _count(services: Services, model: type) -> int:
    with services.db.read() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@contextmanager
def _running(services: Services, *, watch: bool = False) -> Iterator[IngestWorker]:
    services.settings.spool_rescan_seconds = 0.2
    worker = IngestWorker(services.pipeline, watch=watch)
    worker.start()
    try:
        yield worker
    finally:
        started = time.monotonic()
        worker.stop(timeout=10)
        # Prompt and clean: the loop thread must not be stuck in an open().
        assert worker._thread is not None and not worker._thread.is_alive()
        assert time.monotonic() - started < 5


def _rescans(worker: IngestWorker, count: int = 3) -> None:
    """Let the worker's own loop rescan the spool a few times."""
    for _ in range(count):
        scanned = worker._next_scan
        wait_until(lambda seen=scanned: worker._next_scan > seen, timeout=10, interval=0.05)
    wait_until(worker.idle, timeout=10, interval=0.05)


def _old(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the data directory that the spool must never touch."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


@pytest.fixture
def spool(registered: Services) -> Path:
    folder = registered.settings.resolved_spool_dir
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_a_symlinked_camera_folder_is_neither_ingested_nor_emptied(
    registered: Services,
    spool: Path,
    outside: Path,
    make_video: VideoFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    video = outside / NAME
    video.write_bytes(make_video("a.mp4").read_bytes())
    garbage = outside / LATER
    garbage.write_bytes(b"not a video, and not the spool's to take")
    before = {path.name: path.read_bytes() for path in outside.iterdir()}
    (spool / CAMERA_FRONT).symlink_to(outside, target_is_directory=True)

    with caplog.at_level(logging.WARNING), _running(registered, watch=True) as worker:
        _rescans(worker)
    assert {path.name: path.read_bytes() for path in outside.iterdir()} == before
    assert _count(registered, Segment) == 0
    assert _count(registered, QuarantineRecord) == 0
    said = [r.getMessage() for r in caplog.records if str(spool / CAMERA_FRONT) in r.getMessage()]
    assert said == [f"skipping {spool / CAMERA_FRONT}: a symbolic link, not a camera folder"]


def test_a_symlink_to_a_file_elsewhere_is_not_quarantined(
    registered: Services, spool: Path, outside: Path
) -> None:
    secret = outside / "hostname"
    secret.write_text("db-primary.internal\n")
    (spool / CAMERA_FRONT).mkdir()
    (spool / CAMERA_FRONT / NAME).symlink_to(secret)

    with _running(registered) as worker:
        _rescans(worker)
    assert _count(registered, QuarantineRecord) == 0
    quarantine = registered.settings.data_dir / "quarantine"
    copied = [p for p in quarantine.rglob("*") if p.is_file()] if quarantine.exists() else []
    assert copied == []
    assert secret.read_text() == "db-primary.internal\n"
    assert (spool / CAMERA_FRONT / NAME).is_symlink()


def test_a_symlink_to_a_video_elsewhere_does_not_become_evidence(
    registered: Services, spool: Path, outside: Path, make_video: VideoFactory
) -> None:
    video = outside / "someone-elses.mp4"
    video.write_bytes(make_video("a.mp4").read_bytes())
    (spool / CAMERA_FRONT).mkdir()
    (spool / CAMERA_FRONT / NAME).symlink_to(video)
    # A real file beside it is still taken: the worker skips, it does not stop.
    (spool / CAMERA_FRONT / LATER).write_bytes(make_video("b.mp4", seed=2).read_bytes())

    with _running(registered) as worker:
        wait_until(lambda: not (spool / CAMERA_FRONT / LATER).exists(), timeout=20)
        _rescans(worker)
    with registered.db.read() as session:
        names = list(session.scalars(select(Segment.original_name)))
    assert names == [LATER]
    assert video.exists()


def test_a_fifo_named_like_a_segment_neither_blocks_the_worker_nor_its_shutdown(
    registered: Services, spool: Path, make_video: VideoFactory, caplog: pytest.LogCaptureFixture
) -> None:
    folder = spool / CAMERA_FRONT
    folder.mkdir()
    found = folder / "20261124T085800+0800.mp4"  # there before the worker: met by the scan
    os.mkfifo(found)
    announced = folder / NAME  # made while it watches: met through the watcher's event

    with caplog.at_level(logging.WARNING), _running(registered, watch=True) as worker:
        _rescans(worker, 1)
        os.mkfifo(announced)
        # Renamed in whole, as a camera host does: the fixture's settle time is 0, so a file
        # written in place could be taken while still empty (a loaded machine did just that).
        os.rename(make_video("b.mp4"), folder / LATER)
        wait_until(lambda: _count(registered, Segment) == 1, timeout=20)
        _rescans(worker)
    assert _count(registered, QuarantineRecord) == 0
    assert found.exists() and announced.exists()
    for fifo in (found, announced):
        said = [r.getMessage() for r in caplog.records if str(fifo) in r.getMessage()]
        assert said == [f"skipping {fifo}: a FIFO, not a regular file"]


def test_the_pipeline_refuses_a_fifo_without_opening_it_blocking(registered: Services) -> None:
    """The claim itself (shared by HTTP uploads and the worker) must not hang on a FIFO."""
    folder = registered.settings.resolved_spool_dir / CAMERA_FRONT
    folder.mkdir(parents=True)
    os.mkfifo(folder / NAME)
    arrival = Arrival(
        path=folder / NAME,
        camera_code=CAMERA_FRONT,
        file_name=NAME,
        source="spool",
        received_at=datetime.now(UTC),
    )
    results: list[IngestResult] = []
    # In a thread: on a blocking open the test fails instead of hanging with it.
    ingesting = threading.Thread(
        target=lambda: results.append(registered.pipeline.ingest(arrival)), daemon=True
    )
    ingesting.start()
    ingesting.join(timeout=5)
    assert not ingesting.is_alive(), "the claim is blocked opening a FIFO"
    assert [result.outcome for result in results] == [Outcome.SKIPPED]
    assert _count(registered, QuarantineRecord) == 0


def test_the_pipeline_refuses_a_file_reached_through_a_symlinked_camera_folder(
    registered: Services, spool: Path, outside: Path, make_video: VideoFactory
) -> None:
    """Even when handed such a path directly (a watcher event, a race with the scan)."""
    video = outside / NAME
    video.write_bytes(make_video("a.mp4").read_bytes())
    (spool / CAMERA_FRONT).symlink_to(outside, target_is_directory=True)
    result = registered.pipeline.ingest(
        Arrival(
            path=spool / CAMERA_FRONT / NAME,
            camera_code=CAMERA_FRONT,
            file_name=NAME,
            source="spool",
            received_at=datetime.now(UTC),
        )
    )
    assert result.outcome is Outcome.SKIPPED
    assert video.exists()
    assert _count(registered, Segment) == 0


def test_many_hostile_paths_are_said_once_each_and_then_only_counted(
    spool: Path, outside: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Imported here: on the code before this rule every other test still runs.
    from services.ingest.spool import SkippedPaths, scan_spool

    folder = spool / CAMERA_BACK
    folder.mkdir()
    for index in range(6):
        (folder / f"20261124T09{index:02d}00+0800.mp4").symlink_to(outside / "x")
    skipped = SkippedPaths(limit=4)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert list(scan_spool(spool, 0.0, skipped)) == []
    lines = [r.getMessage() for r in caplog.records if r.name == "services.ingest.spool"]
    assert len(lines) == 5
    assert lines[-1] == "more than 4 paths skipped in the spool; further ones are not logged"
    assert skipped.unlogged == 6  # 2 unsaid paths, each met in 3 scans


def _sidecar(incoming: Path, stem: str) -> Path:
    meta = incoming / f"{stem}.json"
    meta.write_text(
        json.dumps(
            {
                "camera": CAMERA_FRONT,
                "file_name": NAME,
                "declared_start": None,
                "received_at": datetime(2026, 11, 24, 1, 5, tzinfo=UTC).isoformat(),
            }
        )
    )
    return meta


def test_a_symlinked_incoming_folder_is_not_swept(
    registered: Services, spool: Path, outside: Path
) -> None:
    stale = outside / "someone.part"
    stale.write_bytes(b"a file the sweep would think abandoned")
    lonely = outside / "lonely.json"
    lonely.write_text("{}")
    for path in (stale, lonely):
        _old(path, STALE_UPLOAD_SECONDS + 60)
    (spool / ".incoming").symlink_to(outside, target_is_directory=True)

    with _running(registered) as worker:
        _rescans(worker)
    assert stale.exists() and lonely.exists()


def test_a_symlinked_upload_does_not_become_evidence(
    registered: Services, outside: Path, make_video: VideoFactory
) -> None:
    incoming = registered.settings.incoming_dir
    incoming.mkdir(parents=True)
    video = outside / "someone-elses.mp4"
    video.write_bytes(make_video("a.mp4").read_bytes())
    data = incoming / "abc.bin"
    data.symlink_to(video)
    _sidecar(incoming, "abc")
    for path in (data, video):
        _old(path, 120)

    with _running(registered) as worker:
        _rescans(worker)
    assert _count(registered, Segment) == 0
    assert video.exists()


def test_fifos_in_the_incoming_folder_do_not_block_the_sweep(
    registered: Services, make_video: VideoFactory
) -> None:
    incoming = registered.settings.incoming_dir
    incoming.mkdir(parents=True)
    os.mkfifo(incoming / "stale.part")
    _old(incoming / "stale.part", STALE_UPLOAD_SECONDS + 60)
    # A real upload whose sidecar is a FIFO: reading it must not hang.
    (incoming / "abc.bin").write_bytes(make_video("a.mp4").read_bytes())
    os.mkfifo(incoming / "abc.json")
    _old(incoming / "abc.bin", 120)
    # And a real, complete orphaned upload, which must still be finished.
    (incoming / "def.bin").write_bytes(make_video("b.mp4", seed=2).read_bytes())
    meta = _sidecar(incoming, "def")
    meta.write_text(meta.read_text().replace(NAME, LATER))
    _old(incoming / "def.bin", 120)

    with _running(registered) as worker:
        wait_until(lambda: _count(registered, Segment) == 1, timeout=20)
        _rescans(worker)
    assert (incoming / "stale.part").exists() and (incoming / "abc.bin").exists()


def test_a_worker_process_stops_promptly_on_sigterm_with_a_fifo_in_the_spool(
    tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "var"
    db = Database(database_url)
    db.upgrade()
    db.run_write(lambda session: import_registry(session, json.dumps(REGISTRY), actor="test"))
    db.dispose()
    folder = data_dir / "spool" / CAMERA_FRONT
    folder.mkdir(parents=True)
    env = examvault_env(
        data_dir,
        database_url,
        EXAMVAULT_SPOOL_SETTLE_SECONDS="0",
        EXAMVAULT_HEALTH_CHECKS="false",
    )
    log = tmp_path / "worker.log"
    process = spawn(env, "worker", log=log)
    try:
        wait_until(lambda: "ingest worker watching" in log.read_text(), timeout=60)
        # Made while it watches, so that the watcher's event hands it to the claim.
        os.mkfifo(folder / NAME)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: "a FIFO, not a regular file" in log.read_text(), timeout=10)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(timeout=20) == 0
        assert time.monotonic() - started < 10, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (folder / NAME).exists()
    assert log.read_text().count(f"skipping {folder.resolve() / NAME}") == 1


def test_file_names_that_are_not_utf8_leave_the_spool_with_a_readable_record(
    registered: Services, spool: Path, make_video: VideoFactory, reliability: Reliability
) -> None:
    # A camera host's file system may hand over any bytes: such a name used to reach the
    # quarantine's JSON record and the database as a lone surrogate, which neither can encode,
    # so the file stayed in the spool with a traceback at every rescan.
    folder = spool / CAMERA_FRONT
    folder.mkdir()
    video = os.fsencode(folder) + b"/20261124T090000+0800_\xff.mp4"
    junk = os.fsencode(folder) + b"/\xffnot-a-recording.mp4"
    with open(video, "wb") as handle:
        handle.write(make_video("a.mp4").read_bytes())
    with open(junk, "wb") as handle:
        handle.write(b"not a video")

    with _running(registered) as worker:
        wait_until(lambda: os.listdir(os.fsencode(folder)) == [], timeout=20)
        _rescans(worker)
    with registered.db.read() as session:
        rejected = dict(
            session.execute(
                select(QuarantineRecord.original_name, QuarantineRecord.reason_code)
            ).all()
        )
    # Recorded as the bytes were named, each undecodable byte as \xNN; such a name is not the
    # spool's grammar (no backslash after the start), so even the video is set aside whole.
    reliability.record(
        "hostile files",
        "spool file names that are not UTF-8 (a video and junk)",
        tries=2,
        answers=Counter(f"quarantined {code}" for code in rejected.values()),
    )
    assert rejected == {
        "20261124T090000+0800_\\xff.mp4": "unparseable_start",
        "\\xffnot-a-recording.mp4": "unparseable_start",
    }
