"""Footage links: a browser's <video>/<img> opens one footage URL without a header, only that
URL, only while the minting token lives, and the route's own scope check still applies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.context import Services
from services.demo.footage import classroom_scene, write_recording
from services.footage.links import check_link, mint_link
from storage.models import LedgerEntry, Segment
from tests.api.conftest import START, assign_now, ingest_file, login, make_user
from tests.conftest import CAMERA_FRONT

World = tuple[TestClient, Services]


@pytest.fixture
def segment_id(world: World, tmp_path: Path) -> int:
    _, services = world
    path = write_recording(
        tmp_path / f"{START + timedelta(minutes=5):%Y%m%dT%H%M%S}Z.mp4",
        seconds=2,
        fps=5,
        width=160,
        height=120,
        scene=classroom_scene(160, 120, seed=1),
    )
    ingest_file(services, CAMERA_FRONT, path)
    with services.db.read() as session:
        return session.scalars(select(Segment.id)).one()


def _mint(client: TestClient, auth: dict[str, str], url: str) -> str:
    response = client.post("/api/v1/footage/links", json={"url": url}, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["url"])


def test_a_link_opens_its_footage_without_a_header_and_is_ledgered(
    world: World, segment_id: int
) -> None:
    client, services = world
    make_user(services, "zhang", "supervisor")
    assign_now(services, "zhang", "OWN-1")
    link = _mint(client, login(client, "zhang"), f"/api/v1/segments/{segment_id}/content")
    opened = client.get(link, headers={"Range": "bytes=0-99"})
    assert opened.status_code == 206 and len(opened.content) == 100
    with services.db.read() as session:
        reads = session.scalars(
            select(LedgerEntry.actor).where(LedgerEntry.action == "footage.content")
        ).all()
    assert reads == ["supervisor:zhang"]


def test_a_link_opens_only_its_own_url(world: World, segment_id: int) -> None:
    client, services = world
    make_user(services, "zhang", "supervisor")
    assign_now(services, "zhang", "OWN-1")
    link = _mint(client, login(client, "zhang"), f"/api/v1/segments/{segment_id}/content")
    other = link.replace(f"/segments/{segment_id}/", f"/segments/{segment_id + 1}/")
    assert client.get(other).status_code == 401
    assert client.get(link + "&extra=1").status_code == 401
    assert client.post(link).status_code in (401, 405)


def test_a_link_dies_with_its_session(world: World, segment_id: int) -> None:
    client, services = world
    make_user(services, "zhang", "supervisor")
    assign_now(services, "zhang", "OWN-1")
    auth = login(client, "zhang")
    link = _mint(client, auth, f"/api/v1/segments/{segment_id}/content")
    assert client.post("/api/v1/auth/logout", headers=auth).status_code == 204
    dead = client.get(link)
    assert (dead.status_code, dead.json()["code"]) == (401, "unauthorized")


def test_a_link_does_not_widen_scope(world: World, segment_id: int) -> None:
    client, services = world
    make_user(services, "jigou", "institution", institution_code="T1")
    link = _mint(client, login(client, "jigou"), f"/api/v1/segments/{segment_id}/content")
    assert client.get(link).status_code == 403  # institutions see verdicts, not footage


def test_only_footage_reads_can_be_linked(world: World, admin_token: str) -> None:
    client, _ = world
    admin = {"Authorization": f"Bearer {admin_token}"}
    for url in ("/api/v1/users", "https://elsewhere/api/v1/segments/1/content", "/healthz"):
        refused = client.post("/api/v1/footage/links", json={"url": url}, headers=admin)
        assert (refused.status_code, refused.json()["code"]) == (422, "invalid_link")


def test_links_expire() -> None:
    key = b"k" * 32
    minted = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    link = mint_link(key, 7, "/api/v1/segments/3/content", now=minted)
    value = link.url.split("link=", 1)[1]
    path, query = "/api/v1/segments/3/content", f"link={value}"
    assert check_link(key, value, path, query, now=minted + timedelta(minutes=59)) == 7
    assert check_link(key, value, path, query, now=minted + timedelta(minutes=61)) is None
    assert check_link(b"x" * 32, value, path, query, now=minted) is None
