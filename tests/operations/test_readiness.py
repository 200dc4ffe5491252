"""Readiness from background checks (services/operations/readiness.py): a hung check is a
failed one, a write that failed on a full disk is reported, the spool's backlog is counted."""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

from services.context import Services
from services.operations.readiness import DependencyCheck, spool_backlog


def test_a_hung_check_counts_as_failed_once_overdue() -> None:
    release = threading.Event()
    check = DependencyCheck("store", lambda: release.wait(30) and None, interval=0.1, bound=0.2)
    check.start()
    try:
        time.sleep(0.5)
        ok, problem = check.status(time.monotonic())
        assert not ok and problem is not None and "has not answered" in problem
    finally:
        release.set()
        check.stop()
    assert check.latest is not None and check.latest.ok


def test_a_failing_check_says_why() -> None:
    def down() -> None:
        raise OSError("the object store did not answer")

    check = DependencyCheck("store", down, interval=10, bound=1)
    check.run_once()
    assert check.status(time.monotonic()) == (False, "the object store did not answer")


def test_a_write_that_failed_on_a_full_disk_makes_it_unready_for_a_while(
    services: Services,
) -> None:
    services.settings.min_free_bytes = 0
    services.settings.write_failure_window_seconds = 0.5
    readiness = services.readiness
    readiness.note_failure(OSError(errno.EINVAL, "not a disk problem"))
    readiness.checks["disk"].run_once()
    assert readiness.failing("disk") is None

    readiness.note_failure(OSError(errno.ENOSPC, "No space left on device"))
    readiness.checks["disk"].run_once()
    assert "full disk" in (readiness.failing("disk") or "")
    time.sleep(0.6)
    readiness.checks["disk"].run_once()
    assert readiness.failing("disk") is None
    assert readiness.disk is not None and readiness.disk.free_bytes["data"] > 0


def test_too_little_free_space_is_unready(services: Services) -> None:
    services.settings.min_free_bytes = 2**62
    services.readiness.checks["disk"].run_once()
    assert "EXAMVAULT_MIN_FREE_BYTES" in (services.readiness.failing("disk") or "")


def test_spool_backlog_counts_waiting_recordings_and_kept_uploads(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "CAM-1").mkdir(parents=True)
    (spool / ".incoming").mkdir()
    (spool / "CAM-1" / "20261124T090000+0800.mp4").write_bytes(b"x" * 10)
    (spool / "CAM-1" / "20261124T091000+0800.mp4.part").write_bytes(b"x" * 100)  # arriving
    (spool / ".incoming" / "a.bin").write_bytes(b"x" * 20)
    (spool / ".incoming" / "a.json").write_bytes(b"{}")
    (spool / ".incoming" / "b.part").write_bytes(b"x" * 1000)  # never acknowledged
    (spool / "CAM-1" / "elsewhere.mp4").symlink_to(tmp_path / "nothing")
    assert spool_backlog(spool) == (2, 30)
    assert spool_backlog(tmp_path / "missing") == (0, 0)
