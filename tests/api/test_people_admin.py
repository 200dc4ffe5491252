"""Ending access: logout, token revocation, assignment revocation, disabling a person; the
caller's own view (/me); district officers placing holds in their district only."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.cli import main
from services.context import Services
from storage.models import LedgerEntry
from tests.api.conftest import PASSWORD, assign_now, login, make_user
from tests.conftest import CAMERA_FRONT

World = tuple[TestClient, Services]


def _actions(services: Services) -> list[str]:
    with services.db.read() as session:
        return list(session.scalars(select(LedgerEntry.action).order_by(LedgerEntry.seq)))


def test_logout_ends_the_session_at_once(world: World) -> None:
    client, services = world
    make_user(services, "zhang", "supervisor")
    auth = login(client, "zhang")
    assert client.get("/api/v1/me", headers=auth).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=auth).status_code == 204
    after = client.get("/api/v1/me", headers=auth)
    assert (after.status_code, after.json()["code"]) == (401, "unauthorized")
    assert "token.revoked" in _actions(services)


def test_admin_creates_lists_and_revokes_a_machine_token(world: World, admin_token: str) -> None:
    client, _ = world
    admin = {"Authorization": f"Bearer {admin_token}"}
    made = client.post(
        "/api/v1/tokens",
        json={"name": "host-1", "role": "camera_host", "cameras": [CAMERA_FRONT]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    secret, token_id = made.json()["token"], made.json()["id"]
    listed = client.get("/api/v1/tokens", headers=admin).json()["tokens"]
    assert [t["name"] for t in listed if t["id"] == token_id] == ["host-1"]
    assert secret not in str(listed)

    host = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/me", headers=host).json()["role"] == "camera_host"
    revoked = client.post(
        f"/api/v1/tokens/{token_id}/revoke", json={"reason": "主机丢失"}, headers=admin
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert client.get("/api/v1/me", headers=host).status_code == 401
    again = client.post(f"/api/v1/tokens/{token_id}/revoke", json={"reason": "x"}, headers=admin)
    assert (again.status_code, again.json()["code"]) == (409, "already_revoked")
    missing = client.post("/api/v1/tokens/99999/revoke", json={"reason": "x"}, headers=admin)
    assert missing.status_code == 404
    bad = client.post("/api/v1/tokens", json={"name": "h", "role": "camera_host"}, headers=admin)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_token")


def test_revoking_an_assignment_ends_access_now(world: World, admin_token: str) -> None:
    client, services = world
    admin = {"Authorization": f"Bearer {admin_token}"}
    make_user(services, "zhang", "supervisor")
    assign_now(services, "zhang", "OWN-1")
    auth = login(client, "zhang")
    mine = client.get("/api/v1/me", headers=auth).json()
    assert [a["sitting"] for a in mine["assignments"]] == ["OWN-1"]
    assert client.get("/api/v1/sittings/OWN-1", headers=auth).status_code == 200

    listed = client.get("/api/v1/assignments?user=zhang", headers=admin).json()["assignments"]
    assert [a["live"] for a in listed] == [True]
    ended = client.post(
        f"/api/v1/assignments/{listed[0]['id']}/revoke", json={"reason": "回避"}, headers=admin
    )
    assert ended.status_code == 200 and ended.json()["live"] is False
    assert client.get("/api/v1/sittings/OWN-1", headers=auth).status_code == 404
    assert client.get("/api/v1/me", headers=auth).json()["assignments"] == []
    assert "assignment.revoked" in _actions(services)


def test_disabling_a_person_ends_their_sessions_and_logins(world: World, admin_token: str) -> None:
    client, services = world
    admin = {"Authorization": f"Bearer {admin_token}"}
    make_user(services, "zhang", "supervisor")
    auth = login(client, "zhang")
    done = client.post("/api/v1/users/zhang/disable", json={"reason": "离职"}, headers=admin)
    assert done.status_code == 200 and done.json()["disabled_at"]
    assert client.get("/api/v1/me", headers=auth).status_code == 401
    refused = client.post("/api/v1/auth/token", data={"username": "zhang", "password": PASSWORD})
    assert refused.status_code == 401
    names = [u["name"] for u in client.get("/api/v1/users", headers=admin).json()["users"]]
    assert "zhang" in names


def test_district_officer_places_holds_in_their_district_only(
    world: World, admin_token: str
) -> None:
    client, services = world
    admin = {"Authorization": f"Bearer {admin_token}"}
    make_user(services, "wang", "district_officer", district="渝中区")
    officer = login(client, "wang")
    placed = client.post(
        "/api/v1/holds", json={"reason": "投诉调查", "sitting": "OWN-1"}, headers=officer
    )
    assert placed.status_code == 201, placed.text
    assert placed.json()["placed_by"] == "district_officer:wang"
    foreign = client.post(
        "/api/v1/holds", json={"reason": "x", "sitting": "FAR-1"}, headers=officer
    )
    assert foreign.status_code == 404
    client.post("/api/v1/holds", json={"reason": "centre", "sitting": "FAR-1"}, headers=admin)
    seen = client.get("/api/v1/holds", headers=officer).json()["holds"]
    assert [h["placed_by"] for h in seen] == ["district_officer:wang"]
    assert len(client.get("/api/v1/holds", headers=admin).json()["holds"]) == 2
    release = client.post(
        f"/api/v1/holds/{placed.json()['id']}/release", json={"reason": "x"}, headers=officer
    )
    assert release.status_code == 403

    make_user(services, "zhang", "supervisor")
    assign_now(services, "zhang", "OWN-1")
    supervisor = login(client, "zhang")
    refused = client.post(
        "/api/v1/holds", json={"reason": "x", "sitting": "OWN-1"}, headers=supervisor
    )
    assert refused.status_code == 403


def test_cli_revokes_tokens_and_disables_people(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, services = world
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", services.settings.resolved_database_url)
    make_user(services, "zhang", "supervisor")
    session = login(client, "zhang")
    assert main(["token", "create", "--role", "admin", "--name", "script"]) == 0
    printed = capsys.readouterr().out.splitlines()
    token_id = int(printed[0].split()[1])
    script = {"Authorization": f"Bearer {printed[-1]}"}
    assert client.get("/api/v1/me", headers=script).status_code == 200

    assert main(["token", "revoke", str(token_id), "--reason", "泄露"]) == 0
    assert client.get("/api/v1/me", headers=script).status_code == 401
    assert main(["token", "revoke", str(token_id), "--reason", "again"]) == 2
    assert "revoked already" in capsys.readouterr().err

    assert main(["user", "disable", "zhang", "--reason", "离职"]) == 0
    assert client.get("/api/v1/me", headers=session).status_code == 401
    assert main(["user", "disable", "nobody", "--reason", "x"]) == 2
