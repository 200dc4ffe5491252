from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from services.access.people import log_in
from services.access.scopes import Subject, sitting_scope
from services.cli import build_parser
from services.context import Services
from services.demo.seed import seed_demo_if_empty, write_demo_footage
from services.ingest.probe import probe_recording
from storage.db import Database
from storage.models import (
    ApiToken,
    Camera,
    Institution,
    LedgerEntry,
    Room,
    Segment,
    Site,
    Sitting,
    User,
)
from tests.processes import examvault_env, free_port, run_cli, spawn, wait_for_health

# What demo seeding writes; a server started without --demo must add none of it.
SEEDED = (Institution, Camera, Sitting, User, ApiToken, Segment, LedgerEntry)


def test_demo_seeds_an_empty_database_once(services: Services) -> None:
    now = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    assert seed_demo_if_empty(services, now=now, footage=False)
    assert not seed_demo_if_empty(services, now=now, footage=False)
    with services.db.read() as session:
        sitting = session.scalar(select(Sitting))
        assert sitting is not None and sitting.ends_at < now
        assert session.scalar(select(func.count()).select_from(Camera)) == 2
        assert session.scalar(select(ApiToken.role)) == "admin"


def test_demo_footage_covers_the_sitting_with_one_gap_on_the_back_camera(tmp_path: Path) -> None:
    start = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    write_demo_footage(tmp_path, start, start + timedelta(minutes=12), ZoneInfo("Asia/Shanghai"))
    front = sorted((tmp_path / "CQJD0001-S1-R101-F").iterdir())
    back = sorted((tmp_path / "CQJD0001-S1-R101-B").iterdir())
    assert len(front) == 7 and len(back) == 6  # [-1 min, +13 min) in two-minute segments
    assert not any(path.suffix == ".part" for path in front + back)
    assert probe_recording(front[0]).duration_seconds == 120.0


def test_demo_supervisor_logs_in_and_sees_the_demo_sitting(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    assert seed_demo_if_empty(services, footage=False)
    line = next(line for line in capsys.readouterr().out.splitlines() if "demo supervisor" in line)
    password = line.rsplit("password ", 1)[1]
    granted = services.db.run_write(lambda session: log_in(session, "demo-supervisor", password))
    assert granted is not None
    with services.db.read() as session:
        user_id = session.scalar(select(User.id).where(User.name == "demo-supervisor"))
        subject = Subject(name="demo-supervisor", role="supervisor", user_id=user_id)
        visible = session.scalars(
            select(Sitting.code)
            .join(Room, Sitting.room_id == Room.id)
            .join(Site, Room.site_id == Site.id)
            .join(Institution, Site.institution_id == Institution.id)
            .where(sitting_scope(subject, datetime.now(UTC)))
        ).all()
    assert [code for code in visible if code.startswith("DEMO-")] == list(visible)
    assert len(visible) == 1


def _counts(database_url: str) -> dict[str, int]:
    db = Database(database_url)
    try:
        with db.read() as session:
            return {
                model.__name__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in SEEDED
            }
    finally:
        db.dispose()


@contextmanager
def _serving(env: dict[str, str], log: Path, *options: str) -> Iterator[None]:
    """A real `examvault serve` until it answers /healthz (seeding happens before that)."""
    port = free_port()
    process = spawn(env, "serve", "--port", str(port), *options, log=log)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", process, log)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_serve_without_demo_leaves_an_empty_database_empty(
    tmp_path: Path, database_url: str
) -> None:
    env = examvault_env(tmp_path / "var", database_url)
    migrated = run_cli(env, "db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    before = _counts(database_url)
    assert before["Institution"] == 0
    log = tmp_path / "serve.log"
    with _serving(env, log):
        pass
    assert _counts(database_url) == before, log.read_text()
    assert "demo admin token" not in log.read_text()


def test_serve_with_demo_seeds_an_empty_database(tmp_path: Path, database_url: str) -> None:
    env = examvault_env(tmp_path / "var", database_url)
    log = tmp_path / "serve.log"
    with _serving(env, log, "--demo"):
        pass
    counts = _counts(database_url)
    assert (counts["Institution"], counts["Camera"], counts["Sitting"]) == (1, 2, 1)
    assert "demo admin token (shown once)" in log.read_text()


def test_serve_no_longer_takes_no_demo() -> None:
    # Without a demo by default, `--no-demo` would mean nothing; a script that still passes
    # it is told so rather than silently served.
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["serve", "--no-demo"])
    assert refused.value.code == 2
