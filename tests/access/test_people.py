"""User names: one normalised form, a restricted alphabet, the same rule at log-in. The login
throttle: refuses after `limit` attempts per name, forgives with time or success, and keeps its
rows bounded however many names a guesser invents (the count lives in the database:
tests/access/test_login_throttle.py shows it across processes and restarts)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.access.people import LoginThrottle, UserNameError, normalise_user_name
from services.access.tokens import create_token
from services.api.app import create_app
from services.cli import main
from services.context import Services
from storage.models import LoginAttempt, User
from tests.api.conftest import PASSWORD, make_user

BAD_NAMES = [
    "carol ",  # trailing space
    " carol",
    "car\u200bol",  # zero-width space
    "carol\u200d",  # zero-width joiner
    "car\x07ol",  # control character
    "car\tol",
    "ca/rol",
    "../carol",
    "",
    "a" * 65,
    "-carol",  # would read as an option on a command line
    ".carol",
    "carol@example",
    "kаrol",  # Cyrillic а, a look-alike of Latin a
]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("carol", "carol"),
        ("ｃａｒｏｌ", "carol"),  # full-width letters, NFKC
        ("li.si-2_x", "li.si-2_x"),
        ("张三", "张三"),
        ("王小明2", "王小明2"),
        ("a" * 64, "a" * 64),
    ],
)
def test_user_names_are_normalised(given: str, stored: str) -> None:
    assert normalise_user_name(given) == stored


@pytest.mark.parametrize("name", BAD_NAMES)
def test_user_names_outside_the_alphabet_are_refused(name: str) -> None:
    with pytest.raises(UserNameError):
        normalise_user_name(name)


@pytest.fixture
def admin_client(registered: Services) -> TestClient:
    _, token = registered.db.run_write(
        lambda s: create_token(s, role="admin", name="centre", actor="test")
    )
    client = TestClient(create_app(registered))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_api_refuses_a_bad_user_name_with_400(
    admin_client: TestClient, registered: Services
) -> None:
    for name in ["carol ", "car\u200bol", "ca/rol", "car\x07ol", "", "a" * 65]:
        body = {"name": name, "role": "supervisor", "password": PASSWORD}
        answer = admin_client.post("/api/v1/users", json=body)
        assert (answer.status_code, answer.json()["code"]) == (400, "invalid_user"), name
        assert answer.json()["message_zh"]
    with registered.db.read() as session:
        assert session.scalars(select(User.name)).all() == []


def test_api_stores_the_normalised_name(admin_client: TestClient, registered: Services) -> None:
    body = {"name": "ｃａｒｏｌ", "role": "supervisor", "password": PASSWORD}
    made = admin_client.post("/api/v1/users", json=body)
    assert made.status_code == 201 and made.json()["name"] == "carol"
    again = admin_client.post("/api/v1/users", json={**body, "name": "carol"})
    assert (again.status_code, again.json()["code"]) == (422, "invalid_user")


def test_log_in_normalises_the_name_the_same_way(registered: Services) -> None:
    make_user(registered, "carol", "supervisor")
    client = TestClient(create_app(registered))
    wide = client.post("/api/v1/auth/token", data={"username": "ｃａｒｏｌ", "password": PASSWORD})
    assert wide.status_code == 200, wide.text
    spaced = client.post("/api/v1/auth/token", data={"username": "carol ", "password": PASSWORD})
    assert (spaced.status_code, spaced.json()["code"]) == (400, "invalid_user")


def test_cli_refuses_a_bad_user_name_with_exit_2(
    registered: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(registered.settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", registered.settings.resolved_database_url)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["user", "create", "carol ", "--role", "supervisor", "--password-stdin"]) == 2
    assert "user name 'carol '" in capsys.readouterr().err
    with registered.db.read() as session:
        assert session.scalars(select(User.name)).all() == []


T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def _admit(services: Services, throttle: LoginThrottle, name: str, now: datetime) -> float:
    return services.db.run_write(lambda session: throttle.admit(session, name, now=now))


def _rows(services: Services) -> int:
    with services.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(LoginAttempt)) or 0)


def test_refuses_after_the_limit_and_success_forgives(services: Services) -> None:
    throttle = LoginThrottle(limit=3, window=60)
    for _ in range(3):
        assert _admit(services, throttle, "zhang", T0) == 0.0
    assert _admit(services, throttle, "zhang", T0) > 0
    assert _admit(services, throttle, "li", T0) == 0.0  # per name
    services.db.run_write(lambda session: throttle.succeeded(session, "zhang"))
    assert _admit(services, throttle, "zhang", T0) == 0.0


def test_failures_age_out_of_the_window(services: Services) -> None:
    throttle = LoginThrottle(limit=2, window=60)
    assert _admit(services, throttle, "zhang", T0) == 0.0
    assert _admit(services, throttle, "zhang", T0) == 0.0
    assert _admit(services, throttle, "zhang", T0) == pytest.approx(60.0)
    assert _admit(services, throttle, "zhang", T0 + timedelta(seconds=30)) == pytest.approx(30.0)
    assert _admit(services, throttle, "zhang", T0 + timedelta(seconds=61)) == 0.0


def test_a_success_leaves_no_row(services: Services) -> None:
    throttle = LoginThrottle(limit=3, window=60)
    _admit(services, throttle, "zhang", T0)
    services.db.run_write(lambda session: throttle.succeeded(session, "zhang"))
    assert _rows(services) == 0


def test_stale_rows_are_pruned(services: Services) -> None:
    throttle = LoginThrottle(limit=3, window=60, prune_every=1)
    for number in range(10):
        _admit(services, throttle, f"guess-{number}", T0)
    _admit(services, throttle, "zhang", T0 + timedelta(seconds=61))
    assert _rows(services) == 1


def test_invented_names_do_not_grow_rows_without_bound(services: Services) -> None:
    throttle = LoginThrottle(limit=3, window=600, max_names=100, prune_every=1)
    now = T0
    for _ in range(3):
        _admit(services, throttle, "zhang", now)
    for number in range(300):
        now += timedelta(milliseconds=10)
        _admit(services, throttle, f"guess-{number}", now)
        if number % 50 == 0:
            _admit(services, throttle, "zhang", now)  # the guesser keeps trying the real name
    assert _rows(services) <= 100
    assert _admit(services, throttle, "zhang", now) > 0  # the name under attack is remembered
