"""The ingest worker in-process: watchdog events, the periodic rescan, and the upload sweep."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.context import Services
from services.ingest.spool import STALE_UPLOAD_SECONDS
from services.ingest.worker import IngestWorker
from storage.models import LedgerEntry, Segment
from tests.conftest import CAMERA_FRONT, VideoFactory
from tests.processes import wait_until


def _segments(services: Services) -> int:
    with services.db.read() as session:
        return session.scalar(select(func.count()).select_from(Segment)) or 0


@pytest.fixture
def camera_dir(registered: Services) -> Path:
    folder = registered.settings.resolved_spool_dir / CAMERA_FRONT
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def _running(services: Services, *, watch: bool) -> Iterator[IngestWorker]:
    worker = IngestWorker(services.pipeline, watch=watch)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def watching(registered: Services) -> Iterator[IngestWorker]:
    registered.settings.spool_rescan_seconds = 3600  # events only
    with _running(registered, watch=True) as worker:
        yield worker


def test_rename_from_part_is_ingested_by_the_watcher(
    registered: Services, camera_dir: Path, watching: IngestWorker, make_video: VideoFactory
) -> None:
    part = camera_dir / "20261124T090000+0800.mp4.part"
    part.write_bytes(make_video("a.mp4").read_bytes())
    time.sleep(0.5)
    assert _segments(registered) == 0  # a .part is still being written
    part.rename(camera_dir / "20261124T090000+0800.mp4")
    wait_until(lambda: _segments(registered) == 1, timeout=20)
    assert list(camera_dir.iterdir()) == []


def test_a_final_name_written_directly_is_ingested_once_settled(
    registered: Services, camera_dir: Path, watching: IngestWorker, make_video: VideoFactory
) -> None:
    (camera_dir / "20261124T090000+0800.mp4").write_bytes(make_video("a.mp4").read_bytes())
    wait_until(lambda: _segments(registered) == 1, timeout=20)


def test_the_rescan_finds_files_no_event_announced(
    registered: Services, camera_dir: Path, make_video: VideoFactory
) -> None:
    (camera_dir / "20261124T090000+0800.mp4").write_bytes(make_video("a.mp4").read_bytes())
    registered.settings.spool_rescan_seconds = 0.3
    with _running(registered, watch=False):
        (camera_dir / "20261124T090200+0800.mp4").write_bytes(
            make_video("b.mp4", seed=3).read_bytes()
        )
        wait_until(lambda: _segments(registered) == 2, timeout=20)


def test_an_orphaned_upload_is_finished_by_the_sweep(
    registered: Services, make_video: VideoFactory
) -> None:
    incoming = registered.settings.incoming_dir
    incoming.mkdir(parents=True, exist_ok=True)
    data = incoming / "abc.bin"
    data.write_bytes(make_video("a.mp4").read_bytes())
    (incoming / "abc.json").write_text(
        json.dumps(
            {
                "camera": CAMERA_FRONT,
                "file_name": "clip.mp4",
                "declared_start": "2026-11-24T09:00:00+08:00",
                "received_at": datetime(2026, 11, 24, 1, 5, tzinfo=UTC).isoformat(),
            }
        )
    )
    old = time.time() - 120  # the request that wrote it died two minutes ago
    os.utime(data, (old, old))
    registered.settings.spool_rescan_seconds = 0.3
    with _running(registered, watch=False):
        wait_until(lambda: _segments(registered) == 1, timeout=20)
    with registered.db.read() as session:
        segment = session.scalar(select(Segment))
        assert segment is not None
        assert (segment.source, segment.declared_start) == ("http", "2026-11-24T09:00:00+08:00")
    assert list(incoming.iterdir()) == []


def test_an_upload_finished_by_the_sweep_is_ledgered_as_its_uploader(
    registered: Services, make_video: VideoFactory
) -> None:
    incoming = registered.settings.incoming_dir
    incoming.mkdir(parents=True, exist_ok=True)
    data = incoming / "abc.bin"
    data.write_bytes(make_video("a.mp4").read_bytes())
    sha256 = hashlib.sha256(data.read_bytes()).hexdigest()
    # The sidecar as the upload endpoint writes it.
    (incoming / "abc.json").write_text(
        json.dumps(
            {
                "camera": CAMERA_FRONT,
                "file_name": "20261124T090000+0800.mp4",
                "declared_start": None,
                "received_at": datetime(2026, 11, 24, 1, 5, tzinfo=UTC).isoformat(),
                "sha256": sha256,
                "actor": "camera_host:host-1",
            }
        )
    )
    old = time.time() - 120
    os.utime(data, (old, old))
    registered.settings.spool_rescan_seconds = 0.3
    with _running(registered, watch=False):
        wait_until(lambda: _segments(registered) == 1, timeout=20)
    with registered.db.read() as session:
        actor = session.scalar(
            select(LedgerEntry.actor).where(LedgerEntry.action == "segment.ingested")
        )
    assert actor == "camera_host:host-1"


def test_an_abandoned_partial_upload_is_removed(registered: Services) -> None:
    incoming = registered.settings.incoming_dir
    incoming.mkdir(parents=True, exist_ok=True)
    part = incoming / "gone.part"
    part.write_bytes(b"half an upload")
    old = time.time() - STALE_UPLOAD_SECONDS - 1
    os.utime(part, (old, old))
    fresh = incoming / "live.part"
    fresh.write_bytes(b"still arriving")
    registered.settings.spool_rescan_seconds = 0.3
    with _running(registered, watch=False):
        wait_until(lambda: not part.exists(), timeout=10)
    assert fresh.exists()
