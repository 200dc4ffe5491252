"""Sittings API: list with filters, one sitting, its coverage, the schedule push, references."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.access.tokens import create_token
from services.api.app import create_app
from services.context import Services
from storage.models import LedgerEntry
from tests.conftest import CAMERA_FRONT, ROOM, VideoFactory

START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def _sitting(code: str, start: datetime, minutes: int = 60) -> dict[str, str]:
    return {
        "sitting_code": code,
        "room_code": ROOM,
        "kind": "theory",
        "occupation": "电工",
        "level": "四级",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=minutes)).isoformat(),
    }


@pytest.fixture
def admin(registered: Services) -> Iterator[tuple[TestClient, dict[str, str]]]:
    _, token = registered.db.run_write(
        lambda session: create_token(session, role="admin", name="centre", actor="test")
    )
    with TestClient(create_app(registered)) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def test_schedule_push_then_list_filter_and_detail(
    admin: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = admin
    pushed = client.put(
        "/api/v1/sittings",
        headers=auth,
        json={
            "sittings": [
                _sitting("A-1", START),
                _sitting("A-2", START + timedelta(days=1)),
                {
                    **_sitting("A-3", START + timedelta(days=2)),
                    "starts_at": "2026-11-22T09:00:00",
                    "ends_at": "2026-11-22T10:00:00",
                },
            ]
        },
    )
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["created"] == ["A-1", "A-2", "A-3"]
    assert pushed.json()["zone_assumed"] == ["sittings[2], starts_at", "sittings[2], ends_at"]

    every = client.get("/api/v1/sittings", headers=auth).json()["sittings"]
    assert [s["code"] for s in every] == ["A-3", "A-2", "A-1"]
    assert {s["status"] for s in every} == {"missing"}  # no footage, grace long over
    window = client.get(
        "/api/v1/sittings",
        headers=auth,
        params={"from": "2026-11-21T00:00:00+08:00", "to": "2026-11-22T00:00:00+08:00"},
    )
    assert [s["code"] for s in window.json()["sittings"]] == ["A-2"]
    nope = client.get("/api/v1/sittings", headers=auth, params={"institution": "NOPE"}).json()
    assert nope["sittings"] == [] and nope["total"] == 0
    detail = client.get("/api/v1/sittings/A-1", headers=auth).json()
    assert detail["starts_at"] == "2026-11-20T09:00:00.000+08:00"
    assert detail["institution"] == "T1" and detail["room"] == ROOM


def test_coverage_report_shape(admin: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = admin
    client.put("/api/v1/sittings", headers=auth, json={"sittings": [_sitting("A-1", START)]})
    report = client.get("/api/v1/sittings/A-1/coverage", headers=auth).json()
    assert report["status"] == "missing"
    assert report["required_start"] == "2026-11-20T09:00:00.000+08:00"
    assert [c["camera"] for c in report["cameras"]] == sorted(
        c["camera"] for c in report["cameras"]
    )
    for camera in report["cameras"]:
        assert camera["covered_seconds"] == 0 and camera["required_seconds"] == 3600
        assert camera["gaps"] == [
            {
                "start": report["required_start"],
                "end": report["required_end"],
                "seconds": 3600.0,
                "cause": "not_received",
            }
        ]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"sittings": [{**_sitting("B-1", START), "room_code": "NOPE"}]}, "unknown room"),
        (
            {"sittings": [_sitting("B-1", START), _sitting("B-2", START + timedelta(minutes=30))]},
            "overlaps",
        ),
        (
            {"sittings": [{**_sitting("B-1", START), "ends_at": START.isoformat()}]},
            "ends before it starts",
        ),
    ],
)
def test_bad_schedule_is_422_and_imports_nothing(
    admin: tuple[TestClient, dict[str, str]], body: dict, fragment: str
) -> None:
    client, auth = admin
    response = client.put("/api/v1/sittings", headers=auth, json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_schedule" and fragment in response.json()["message"]
    assert client.get("/api/v1/sittings", headers=auth).json()["sittings"] == []


def test_unknown_sitting_is_404(admin: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = admin
    assert client.get("/api/v1/sittings/NOPE/coverage", headers=auth).status_code == 404


def test_bad_query_values_are_400(admin: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = admin
    assert (
        client.get("/api/v1/sittings", headers=auth, params={"status": "great"}).status_code == 400
    )
    naive = client.get("/api/v1/sittings", headers=auth, params={"from": "2026-11-20T09:00:00"})
    assert (naive.status_code, naive.json()["code"]) == (400, "invalid_request")


def test_camera_hosts_may_not_read_sittings(
    admin: tuple[TestClient, dict[str, str]], registered: Services
) -> None:
    client, _ = admin
    _, token = registered.db.run_write(
        lambda session: create_token(
            session, role="camera_host", name="host", cameras=[CAMERA_FRONT], actor="test"
        )
    )
    response = client.get("/api/v1/sittings", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_reference_from_upload_and_from_footage(
    admin: tuple[TestClient, dict[str, str]], registered: Services, make_video: VideoFactory
) -> None:
    client, auth = admin
    image = cv2.imencode(".png", np.full((120, 160, 3), 90, np.uint8))[1].tobytes()
    uploaded = client.put(
        f"/api/v1/cameras/{CAMERA_FRONT}/reference",
        content=image,
        headers={**auth, "Content-Type": "image/png"},
    )
    assert uploaded.status_code == 201, uploaded.text
    assert client.get(f"/api/v1/cameras/{CAMERA_FRONT}/reference", headers=auth).content == image
    refused = client.put(
        f"/api/v1/cameras/{CAMERA_FRONT}/reference",
        content=b"not an image",
        headers={**auth, "Content-Type": "image/jpeg"},
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "not_an_image")
    assert (
        client.put(
            f"/api/v1/cameras/{CAMERA_FRONT}/reference",
            content=image,
            headers={**auth, "Content-Type": "text/plain"},
        ).status_code
        == 415
    )

    video = make_video("20261124T090000+0800.mp4", seconds=3)
    client.put(
        f"/api/v1/ingest/{CAMERA_FRONT}/{video.name}", content=video.read_bytes(), headers=auth
    )
    from_footage = client.post(
        f"/api/v1/cameras/{CAMERA_FRONT}/reference/from-footage",
        headers=auth,
        json={"at": "2026-11-24T09:00:01.500+08:00"},
    )
    assert from_footage.status_code == 201, from_footage.text
    assert from_footage.json()["source"].startswith("footage at 2026-11-24T01:00:01.5")
    jpeg = client.get(f"/api/v1/cameras/{CAMERA_FRONT}/reference", headers=auth)
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
    nothing = client.post(
        f"/api/v1/cameras/{CAMERA_FRONT}/reference/from-footage",
        headers=auth,
        json={"at": "2026-11-24T12:00:00+08:00"},
    )
    assert (nothing.status_code, nothing.json()["code"]) == (422, "no_footage")


def test_metrics_count_sittings_by_verdict_and_ledger_entries(
    world: tuple[TestClient, Services], admin_token: str
) -> None:
    client, services = world
    listed = client.get(
        "/api/v1/sittings", headers={"Authorization": f"Bearer {admin_token}"}
    ).json()["sittings"]
    services.settings.metrics_token = "scraper-0123456789abcdef"
    text = client.get("/metrics", headers={"Authorization": "Bearer scraper-0123456789abcdef"}).text
    for status in ("pending", "complete", "incomplete", "missing"):
        count = sum(1 for sitting in listed if sitting["status"] == status)
        assert f'examvault_sittings{{status="{status}"}} {count}' in text
    assert len(listed) == 3
    with services.db.read() as session:
        head = session.scalar(select(func.max(LedgerEntry.seq)))
    assert head and f"examvault_ledger_entries {head}" in text
