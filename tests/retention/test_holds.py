"""Holds through the API (placed, listed, released, kept in history) and expiry that moves
later when a sitting is imported after its footage arrived."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.access.tokens import create_token
from services.api.app import create_app
from services.context import Services
from services.coverage.schedule import parse_json
from services.retention.purge import plan_purge
from services.settings import SettingsError, load_settings
from storage.models import LedgerEntry, Segment
from tests.conftest import CAMERA_FRONT, ROOM, VideoFactory

NAME = "20261124T090000+0800.mp4"


@pytest.fixture
def admin(registered: Services) -> Iterator[tuple[TestClient, dict[str, str]]]:
    _, token = registered.db.run_write(
        lambda session: create_token(session, role="admin", name="centre", actor="test")
    )
    with TestClient(create_app(registered)) as client:
        yield client, {"Authorization": f"Bearer {token}"}


def _push(client: TestClient, auth: dict[str, str], make_video: VideoFactory) -> int:
    video = make_video("a.mp4", seconds=3)
    response = client.put(
        f"/api/v1/ingest/{CAMERA_FRONT}/{NAME}", content=video.read_bytes(), headers=auth
    )
    assert response.status_code == 201
    return int(response.json()["segment_id"])


def test_hold_keeps_a_segment_out_of_the_plan_until_released(
    admin: tuple[TestClient, dict[str, str]], registered: Services, make_video: VideoFactory
) -> None:
    client, auth = admin
    segment_id = _push(client, auth, make_video)
    far = datetime(2031, 1, 1, tzinfo=UTC)
    placed = client.post(
        "/api/v1/holds",
        headers=auth,
        json={
            "reason": "投诉调查 complaint",
            "case_reference": "CQ-2026-77",
            "camera": CAMERA_FRONT,
            "from": "2026-11-24T08:00:00+08:00",
            "until": "2026-11-24T10:00:00+08:00",
        },
    )
    assert placed.status_code == 201, placed.text
    hold_id = placed.json()["id"]
    with registered.db.read() as session:
        plan = plan_purge(session, registered.settings, far)
    assert [item.segment_id for item in plan.items] == []
    assert plan.held == {segment_id: [hold_id]}

    released = client.post(
        f"/api/v1/holds/{hold_id}/release", headers=auth, json={"reason": "case closed"}
    )
    assert released.status_code == 200 and released.json()["released_at"]
    again = client.post(f"/api/v1/holds/{hold_id}/release", headers=auth, json={"reason": "twice"})
    assert (again.status_code, again.json()["code"]) == (409, "already_released")
    assert client.get("/api/v1/holds", headers=auth).json() == {"holds": []}
    assert [
        h["id"]
        for h in client.get("/api/v1/holds", headers=auth, params={"all": "true"}).json()["holds"]
    ] == [hold_id]
    with registered.db.read() as session:
        plan = plan_purge(session, registered.settings, far)
        actions = session.scalars(select(LedgerEntry.action)).all()
    assert [item.segment_id for item in plan.items] == [segment_id]
    assert "hold.placed" in actions and "hold.released" in actions


@pytest.mark.parametrize(
    "body",
    [
        {"reason": "x"},
        {"reason": "x", "sitting": "NOPE"},
        {"reason": "x", "camera": CAMERA_FRONT},
        {
            "reason": "x",
            "camera": CAMERA_FRONT,
            "from": "2026-11-24T10:00:00+08:00",
            "until": "2026-11-24T09:00:00+08:00",
        },
        {"reason": "x", "segment": 1, "sitting": "ALSO"},
    ],
)
def test_bad_holds_are_refused(admin: tuple[TestClient, dict[str, str]], body: dict) -> None:
    client, auth = admin
    response = client.post("/api/v1/holds", headers=auth, json=body)
    assert (response.status_code, response.json()["code"]) == (422, "invalid_hold")


def test_a_sitting_imported_after_its_footage_moves_expiry_later(
    admin: tuple[TestClient, dict[str, str]], registered: Services, make_video: VideoFactory
) -> None:
    client, auth = admin
    segment_id = _push(client, auth, make_video)
    with registered.db.read() as session:
        before = session.get(Segment, segment_id)
        assert before is not None
        assert before.expires_at == datetime(2029, 11, 24, 16, tzinfo=UTC)
    # The sitting the footage belongs to ends after midnight local: a day later.
    notes: list[str] = []
    rows = parse_json(
        {
            "sittings": [
                {
                    "sitting_code": "LATE-1",
                    "room_code": ROOM,
                    "kind": "theory",
                    "occupation": "电工",
                    "level": "四级",
                    "starts_at": "2026-11-24T08:30:00+08:00",
                    "ends_at": "2026-11-25T00:30:00+08:00",
                }
            ]
        },
        registered.settings.zone,
        notes,
    )
    registered.db.run_write(
        lambda session: registered.import_schedule(session, rows, actor="test", zone_assumed=notes)
    )
    with registered.db.read() as session:
        after = session.get(Segment, segment_id)
        assert after is not None
        assert after.expires_at == datetime(2029, 11, 25, 16, tzinfo=UTC)
        entry = session.scalar(
            select(LedgerEntry).where(LedgerEntry.action == "segment.expiry_extended")
        )
        assert entry is not None and json.loads(entry.details)["sitting"] == "LATE-1"

    # Moving the sitting earlier again never shortens the expiry.
    rows = parse_json(
        {
            "sittings": [
                {
                    "sitting_code": "LATE-1",
                    "room_code": ROOM,
                    "kind": "theory",
                    "occupation": "电工",
                    "level": "四级",
                    "starts_at": "2026-11-24T08:30:00+08:00",
                    "ends_at": "2026-11-24T10:00:00+08:00",
                }
            ]
        },
        registered.settings.zone,
        notes,
    )
    registered.db.run_write(
        lambda session: registered.import_schedule(session, rows, actor="test", zone_assumed=notes)
    )
    with registered.db.read() as session:
        kept = session.get(Segment, segment_id)
        assert kept is not None and kept.expires_at == datetime(2029, 11, 25, 16, tzinfo=UTC)


def test_purge_schedule_must_be_a_time_of_day() -> None:
    assert load_settings(purge_schedule="3:05").purge_schedule == "03:05"
    with pytest.raises(SettingsError, match="HH:MM"):
        load_settings(purge_schedule="daily")


def test_the_scheduler_purges_when_due_then_waits_for_the_next_day(
    registered: Services,
) -> None:
    from datetime import timedelta

    from services.retention.purge import PurgeScheduler
    from storage.models import PurgeRun

    registered.settings.purge_schedule = "03:00"
    scheduler = PurgeScheduler(registered.db, registered.store, registered.settings)
    first_wait = scheduler.run_once()  # learns the next 03:00, runs nothing yet
    assert 0 < first_wait <= 24 * 3600
    with registered.db.read() as session:
        assert session.scalars(select(PurgeRun)).all() == []
    assert scheduler._due is not None
    scheduler._due -= timedelta(days=1)  # as if that 03:00 had come
    scheduler.run_once()
    with registered.db.read() as session:
        runs = session.scalars(select(PurgeRun)).all()
        assert len(runs) == 1 and runs[0].actor == "schedule" and runs[0].finished_at
