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
from services.access.tokens import token_subject
from services.cli import build_parser
from services.context import Services
from services.demo.seed import DEMO_PEOPLE, demo_plan, seed_demo_if_empty, write_demo_footage
from services.ingest.probe import probe_recording
from storage.db import Database
from storage.models import (
    ApiToken,
    Camera,
    Finding,
    Hold,
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
        first = session.scalar(select(Sitting).order_by(Sitting.id))
        assert first is not None and first.ends_at == now - timedelta(days=1)
        assert session.scalar(select(func.count()).select_from(Camera)) == 6
        assert session.scalar(select(ApiToken.role).order_by(ApiToken.id)) == "admin"


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
    # Assigned to CQJD0001: its five sittings (three in the theory room, two in the practical).
    assert len(visible) == 5


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
    assert (counts["Institution"], counts["Camera"], counts["Sitting"]) == (2, 6, 8)
    assert "demo admin token (shown once)" in log.read_text()
    first = log.read_text()
    assert first.count("password ") == 4, first

    # Started again on the same database: nothing new, no password, and how to get one.
    with _serving(env, log, "--demo"):
        pass
    again = log.read_text()[len(first) :]
    # (Footage the first start wrote may be ingested meanwhile: rows of the registry, people
    # and schedule are what a second seeding would have added.)
    later = _counts(database_url)
    for model in ("Institution", "Camera", "Sitting", "User", "ApiToken"):
        assert later[model] == counts[model], model
    assert "demo data already present" in again and "user reset-password NAME" in again
    for password in _passwords(first).values():
        assert password not in again


def test_serve_no_longer_takes_no_demo() -> None:
    # Without a demo by default, `--no-demo` would mean nothing; a script that still passes
    # it is told so rather than silently served.
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["serve", "--no-demo"])
    assert refused.value.code == 2


def _passwords(output: str) -> dict[str, str]:
    """user name -> password, from the lines the first seeding prints."""
    found = {}
    for line in output.splitlines():
        if "for the web page (shown once): user " in line:
            user, password = line.split(": user ", 1)[1].split(", password ")
            found[user] = password.strip()
    return found


def _login_subject(services: Services, name: str, password: str) -> Subject:
    assert services.db.run_write(lambda session: log_in(session, name, password)) is not None
    with services.db.read() as session:
        user = session.scalar(select(User).where(User.name == name))
        assert user is not None
        return Subject(
            name=user.name,
            role=user.role,
            user_id=user.id,
            district=user.district,
            institution_id=user.institution_id,
        )


def _visible(services: Services, subject: Subject) -> dict[str, str]:
    """sitting code -> institution code, of what `subject` may see."""
    with services.db.read() as session:
        rows = session.execute(
            select(Sitting.code, Institution.code)
            .join(Room, Sitting.room_id == Room.id)
            .join(Site, Room.site_id == Site.id)
            .join(Institution, Site.institution_id == Institution.id)
            .where(sitting_scope(subject, datetime.now(UTC)))
        ).all()
    return dict(rows)


def test_one_person_per_role_each_logs_in_with_the_password_printed_once(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    assert seed_demo_if_empty(services, footage=False)
    out = capsys.readouterr().out
    passwords = _passwords(out)
    assert set(passwords) == {name for name, _, _ in DEMO_PEOPLE}
    assert len(set(passwords.values())) == 4 and all(len(p) >= 16 for p in passwords.values())
    with services.db.read() as session:
        roles = dict(session.execute(select(User.name, User.role)).all())
    assert sorted(roles.values()) == ["admin", "district_officer", "institution", "supervisor"]

    everything = _visible(services, _login_subject(services, "demo-admin", passwords["demo-admin"]))
    assert len(everything) == 8 and set(everything.values()) == {"CQJD0001", "CQJD0002"}
    district = _visible(
        services, _login_subject(services, "demo-district", passwords["demo-district"])
    )
    # 渝中区 only: CQJD0001's five sittings, none of 江北区's CQJD0002.
    assert set(district.values()) == {"CQJD0001"} and len(district) == 5
    institution = _visible(
        services, _login_subject(services, "demo-institution", passwords["demo-institution"])
    )
    assert institution == district
    # The camera host's token may push for every demo camera and is nobody's session.
    token_line = next(line for line in out.splitlines() if "camera host token" in line)
    with services.db.read() as session:
        host = token_subject(session, token_line.rsplit(": ", 1)[1])
        assert host is not None and host.role == "camera_host" and host.user_id is None
        assert set(host.cameras) == set(session.scalars(select(Camera.code)))


def test_the_demo_has_sittings_today_findings_in_two_districts_and_a_hold(
    services: Services,
) -> None:
    # 14:00 in Shanghai: the fixed-hour sittings of the morning are over, the afternoon's not.
    now = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    assert seed_demo_if_empty(services, now=now, footage=False)
    zone = services.settings.zone
    with services.db.read() as session:
        sittings = session.scalars(select(Sitting)).all()
        days = [s.starts_at.astimezone(zone).date().isoformat() for s in sittings]
        findings = session.execute(
            select(Sitting.code, Finding.author, Finding.category).join(
                Sitting, Finding.sitting_id == Sitting.id
            )
        ).all()
        holds = session.scalars(select(Hold)).all()
    assert days.count("2026-11-24") == 6
    assert {code[:16] for code, _, _ in findings} >= {"DEMO-2026-11-23-", "DEMO-2026-11-24-"}
    assert {author for _, author, _ in findings} == {
        "supervisor:demo-supervisor",
        "admin:demo-admin",
    }
    assert len(holds) == 1 and holds[0].released_at is None and holds[0].scope == "sitting"


def test_demo_plan_puts_footage_only_where_time_has_passed() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    now = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    sittings, footage = demo_plan(now, zone)
    assert len({s.code for s in sittings}) == len(sittings)
    for part in footage:
        assert part.end + timedelta(minutes=1) <= now  # no segment from the future
    # No two sittings in one room at once.
    for a in sittings:
        for b in sittings:
            if a is not b and a.room == b.room:
                assert a.end <= b.start or b.end <= a.start, (a.code, b.code)


def test_reset_password_from_the_command_line_ends_sessions_and_prints_the_new_one_once(
    tmp_path: Path, database_url: str
) -> None:
    env = examvault_env(tmp_path / "var", database_url)
    assert run_cli(env, "db", "upgrade").returncode == 0
    created = run_cli(
        env, "user", "create", "zhao", "--role", "supervisor", "--password-stdin",
        stdin="the old password\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    reset = run_cli(env, "user", "reset-password", "zhao")
    assert reset.returncode == 0, reset.stderr
    new = reset.stdout.strip().rsplit("new password (shown once): ", 1)[1]
    db = Database(database_url)
    try:
        assert db.run_write(lambda s: log_in(s, "zhao", "the old password")) is None
        assert db.run_write(lambda s: log_in(s, "zhao", new)) is not None
        with db.read() as session:
            actions = session.scalars(
                select(LedgerEntry.action).where(LedgerEntry.subject_id == "zhao")
            ).all()
        assert actions[:2] == ["user.created", "user.password_reset"]
    finally:
        db.dispose()
    unknown = run_cli(env, "user", "reset-password", "nobody")
    assert unknown.returncode != 0 and "no user 'nobody'" in unknown.stderr
