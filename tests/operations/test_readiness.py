"""Readiness from background checks (services/operations/readiness.py): a hung check is a
failed one, a write that failed on a full disk is reported, the spool's backlog is counted, a
schema behind the code is unready; /readyz tells anyone the verdict and only the operator why."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

from services.api.app import create_app
from services.context import Services
from services.operations.readiness import DependencyCheck, SpoolBacklog, spool_backlog

SCRAPER = "readiness-scraper-0123456789"


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
    os.utime(spool / ".incoming" / "a.bin", (1_700_000_000, 1_700_000_000))
    os.utime(spool / ".incoming" / "b.part", (1_600_000_000, 1_600_000_000))  # not counted
    assert spool_backlog(spool) == SpoolBacklog(2, 30, 1_700_000_000)
    assert spool_backlog(tmp_path / "missing") == SpoolBacklog(0, 0, None)


def _behind(services: Services, revision: str) -> None:
    """Pretend the schema is at `revision` (as after restoring an older backup)."""
    services.db.run_write(
        lambda session: session.execute(
            text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision}
        )
    )


def test_a_schema_behind_this_code_is_unready_and_says_run_db_upgrade(services: Services) -> None:
    migrations = services.readiness.checks["migrations"]
    migrations.run_once()
    assert services.readiness.failing("migrations") is None
    with services.db.read() as session:
        head = session.scalar(text("SELECT version_num FROM alembic_version"))
    _behind(services, "0011")
    migrations.run_once()
    problem = services.readiness.failing("migrations") or ""
    assert "revision 0011" in problem and "examvault db upgrade" in problem
    _behind(services, head)  # what `examvault db upgrade` ends with
    migrations.run_once()
    assert services.readiness.failing("migrations") is None


def test_a_schema_newer_than_this_code_is_ready_while_processes_are_rolled(
    services: Services,
) -> None:
    _behind(services, "9999_a_later_release")
    services.readiness.checks["migrations"].run_once()
    assert services.readiness.failing("migrations") is None


def test_readyz_tells_anyone_only_the_verdict_and_the_check_names(services: Services) -> None:
    services.settings.min_free_bytes = 2**62
    services.settings.metrics_token = SCRAPER
    with TestClient(create_app(services)) as client:
        for check in services.readiness.checks.values():
            check.run_once()
        anyone = client.get("/readyz")
        wrong = client.get("/readyz", headers={"Authorization": "Bearer not-the-scraper-token"})
        scraper = client.get("/readyz", headers={"Authorization": f"Bearer {SCRAPER}"})
    expected = {
        "status": "unavailable",
        "checks": {"database": "ok", "blob_store": "ok", "migrations": "ok", "disk": "failing"},
    }
    assert (anyone.status_code, anyone.json()) == (503, expected)
    assert (wrong.status_code, wrong.json()) == (503, expected)
    # Paths, sizes and setting names are for the operator only.
    assert str(services.settings.data_dir.parent) not in anyone.text
    assert scraper.status_code == 503
    (problem,) = scraper.json()["problems"]
    assert problem.startswith("disk: ") and "EXAMVAULT_MIN_FREE_BYTES" in problem


def test_readyz_answers_ready_with_every_check_ok(services: Services) -> None:
    with TestClient(create_app(services)) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ready",
        "checks": {"database": "ok", "blob_store": "ok", "migrations": "ok", "disk": "ok"},
    }
