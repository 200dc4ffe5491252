"""A small world for access tests: two institutions in two districts, three sittings, an admin
client; and helpers to make people, assign supervisors and log in."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from services.access.people import assign, create_user
from services.access.tokens import create_token
from services.api.app import create_app
from services.context import Services
from services.registry import import_registry
from tests.conftest import REGISTRY, ROOM, ingest_file

__all__ = ["ingest_file"]

PASSWORD = "correct horse battery"
START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
FOREIGN_ROOM = "T2-S1-R1"
FOREIGN_CAMERAS = ("T2-C1", "T2-C2")


def sitting_row(code: str, room: str, start: datetime) -> dict[str, str]:
    return {
        "sitting_code": code,
        "room_code": room,
        "kind": "theory",
        "occupation": "电工",
        "level": "四级",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
    }


@pytest.fixture
def admin_token(registered: Services) -> str:
    _, token = registered.db.run_write(
        lambda s: create_token(s, role="admin", name="centre", actor="test")
    )
    return token


@pytest.fixture
def world(registered: Services, admin_token: str) -> Iterator[tuple[TestClient, Services]]:
    """OWN-1 and OWN-2 in T1's room (district of REGISTRY), FAR-1 in T2's room (江北区)."""
    other = copy.deepcopy(REGISTRY)
    inst = other["institutions"][0]
    inst.update(code="T2", district="江北区")
    inst["sites"][0]["code"] = "T2-S1"
    inst["sites"][0]["rooms"][0]["code"] = FOREIGN_ROOM
    inst["sites"][0]["rooms"][0]["cameras"] = [
        {"code": FOREIGN_CAMERAS[0], "position": "front"},
        {"code": FOREIGN_CAMERAS[1], "position": "back"},
    ]
    registered.db.run_write(lambda s: import_registry(s, json.dumps(other), actor="test"))
    with TestClient(create_app(registered)) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        response = client.put(
            "/api/v1/sittings",
            json={
                "sittings": [
                    sitting_row("OWN-1", ROOM, START),
                    sitting_row("OWN-2", ROOM, START + timedelta(days=1)),
                    sitting_row("FAR-1", FOREIGN_ROOM, START),
                ]
            },
        )
        assert response.status_code == 200, response.text
        del client.headers["Authorization"]
        yield client, registered


def make_user(services: Services, name: str, role: str, **extra: str) -> None:
    services.db.run_write(
        lambda s: create_user(s, name=name, role=role, password=PASSWORD, actor="test", **extra)
    )


def assign_now(services: Services, name: str, sitting: str, hours: float = 1.0) -> None:
    """Assign supervisor `name` to `sitting`, valid from an hour ago for `hours` from now."""
    now = datetime.now(UTC)
    services.db.run_write(
        lambda s: assign(
            s,
            user_name=name,
            sitting_code=sitting,
            valid_from=now - timedelta(hours=1),
            valid_until=now + timedelta(hours=hours),
            actor="test",
        )
    )


def login(client: TestClient, name: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/api/v1/auth/token", data={"username": name, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_at"]
    return {"Authorization": f"Bearer {body['access_token']}"}
