"""People and scoped access: a supervisor sees only assigned sittings, only inside the window;
district officers their district; institutions their own verdicts; logins are throttled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from services.access.people import assign
from services.access.tokens import create_token
from services.cli import main
from services.context import Services
from storage.models import Assignment, LedgerEntry
from tests.api.conftest import PASSWORD, START, login, make_user
from tests.conftest import CAMERA_FRONT


def _codes(client: TestClient, auth: dict[str, str]) -> list[str]:
    response = client.get("/api/v1/sittings", headers=auth)
    assert response.status_code == 200
    return sorted(s["code"] for s in response.json()["sittings"])


def test_supervisor_sees_only_the_assigned_sitting_inside_the_window(
    world: tuple[TestClient, Services],
) -> None:
    client, services = world
    make_user(services, "zhang", "supervisor")
    now = datetime.now(UTC)
    services.db.run_write(
        lambda s: assign(
            s,
            user_name="zhang",
            sitting_code="OWN-1",
            valid_from=now - timedelta(hours=1),
            valid_until=now + timedelta(hours=1),
            actor="test",
        )
    )
    auth = login(client, "zhang")
    assert _codes(client, auth) == ["OWN-1"]
    assert client.get("/api/v1/sittings/OWN-1/coverage", headers=auth).status_code == 200
    for hidden in ("OWN-2", "FAR-1", "NOPE"):
        response = client.get(f"/api/v1/sittings/{hidden}/coverage", headers=auth)
        assert response.status_code == 404  # the same answer as for what does not exist

    with services.db.write() as session:  # the assignment window closes
        session.execute(update(Assignment).values(valid_until=now - timedelta(minutes=1)))
    assert _codes(client, auth) == []
    assert client.get("/api/v1/sittings/OWN-1/coverage", headers=auth).status_code == 404


def test_supervisor_assigned_to_an_institution_over_dates(
    world: tuple[TestClient, Services],
) -> None:
    client, services = world
    make_user(services, "li", "supervisor")
    now = datetime.now(UTC)
    services.db.run_write(
        lambda s: assign(
            s,
            user_name="li",
            institution_code="T1",
            covers_from=START - timedelta(hours=1),
            covers_until=START + timedelta(hours=12),
            valid_from=now - timedelta(hours=1),
            valid_until=now + timedelta(days=1),
            actor="test",
        )
    )
    assert _codes(client, login(client, "li")) == ["OWN-1"]


def test_district_officer_and_institution_scopes(world: tuple[TestClient, Services]) -> None:
    client, services = world
    make_user(services, "wang", "district_officer", district="江北区")
    make_user(services, "jigou", "institution", institution_code="T1")
    assert _codes(client, login(client, "wang")) == ["FAR-1"]
    institution = login(client, "jigou")
    assert _codes(client, institution) == ["OWN-1", "OWN-2"]
    assert client.get("/api/v1/sittings/FAR-1", headers=institution).status_code == 404


def test_camera_hosts_read_nothing(world: tuple[TestClient, Services]) -> None:
    client, services = world
    _, token = services.db.run_write(
        lambda s: create_token(
            s, role="camera_host", name="host", cameras=[CAMERA_FRONT], actor="test"
        )
    )
    response = client.get("/api/v1/sittings", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_wrong_passwords_are_401_then_throttled_429(world: tuple[TestClient, Services]) -> None:
    client, services = world
    make_user(services, "zhao", "supervisor")
    for _ in range(5):
        wrong = client.post("/api/v1/auth/token", data={"username": "zhao", "password": "x"})
        assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_credentials")
    throttled = client.post("/api/v1/auth/token", data={"username": "zhao", "password": PASSWORD})
    assert (throttled.status_code, throttled.json()["code"]) == (429, "too_many_attempts")
    assert int(throttled.headers["Retry-After"]) > 0
    unknown = client.post("/api/v1/auth/token", data={"username": "ghost", "password": "x"})
    assert unknown.status_code == 401 and unknown.json()["code"] == "invalid_credentials"


def test_cli_creates_users_and_assignments(
    world: tuple[TestClient, Services],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, services = world
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", services.settings.resolved_database_url)
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(PASSWORD + "\n"))
    assert main(["user", "create", "sun", "--role", "supervisor", "--password-stdin"]) == 0
    assert main(["assign", "sun", "--sitting", "OWN-2"]) == 0
    assert main(["assign", "sun", "--sitting", "NOPE"]) == 2
    assert "no sitting 'NOPE'" in capsys.readouterr().err
    assert _codes(client, login(client, "sun")) == ["OWN-2"]
    with services.db.read() as session:
        actions = {entry.action for entry in session.query(LedgerEntry)}
    assert {"user.created", "assignment.granted", "user.logged_in"} <= actions
