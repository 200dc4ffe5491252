"""A camera replaced during a sitting, end to end through the real registry import, ingest
pipeline, CLI and API: each camera is required only over the part of the sitting it was in
service, so a fully filmed sitting is `complete` and a real hole in either part is a gap.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.access.tokens import create_token
from services.api.app import create_app
from services.cli import main
from services.context import Services
from services.demo.footage import classroom_scene
from services.registry import import_registry
from storage.models import Sitting
from tests.conftest import (
    CAMERA_BACK,
    CAMERA_FRONT,
    REGISTRY,
    ROOM,
    VideoFactory,
    import_sitting,
    ingest_file,
)

# 09:00-09:12 local on 18 November 2026, long past its grace period; the back camera is
# swapped for a new one at 09:06.
START = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)
SEGMENT = timedelta(minutes=3)
REPLACED_AT = START + 2 * SEGMENT
END = START + 4 * SEGMENT
CAMERA_NEW_BACK = "T1-S1-R1-B2"
SITTING = "CQ-REPLACED-001"


def _replace_back_camera(services: Services) -> None:
    document = copy.deepcopy(REGISTRY)
    room = document["institutions"][0]["sites"][0]["rooms"][0]
    room["cameras"] = [
        {"code": CAMERA_FRONT, "position": "front"},
        {"code": CAMERA_NEW_BACK, "position": "back"},
    ]
    services.db.run_write(
        lambda session: import_registry(
            session, json.dumps(document), actor="test", now=REPLACED_AT
        )
    )


def _schedule(services: Services) -> None:
    import_sitting(services, SITTING, START, END, room=ROOM)


def _push(services: Services, make_video: VideoFactory, camera: str, index: int) -> None:
    """Film the camera's `index`-th three minutes and ingest them (the name carries the start)."""
    start = START + index * SEGMENT
    path = make_video(
        f"{start:%Y%m%dT%H%M%S}Z.mp4",
        seconds=SEGMENT.total_seconds(),
        fps=2,
        width=160,
        height=120,
        scene=classroom_scene(160, 120, seed=len(camera) * 10 + index),
    )
    ingest_file(services, camera, path)


def _coverage_via_cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    services: Services,
    *args: str,
) -> str:
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", services.settings.resolved_database_url)
    capsys.readouterr()
    assert main(["coverage", SITTING, *args]) == 0
    return capsys.readouterr().out


def _stored_verdict(services: Services) -> str:
    with services.db.read() as session:
        return session.scalars(select(Sitting.coverage_status).where(Sitting.code == SITTING)).one()


def _by_camera(report: dict) -> dict[str, dict]:
    return {camera["camera"]: camera for camera in report["cameras"]}


def test_a_camera_replaced_mid_sitting_is_required_only_while_in_service(
    registered: Services,
    make_video: VideoFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = registered
    zone = services.settings.zone
    _replace_back_camera(services)
    _schedule(services)
    for index in range(4):
        _push(services, make_video, CAMERA_FRONT, index)
    # The old back camera filmed until it was retired; its 09:03-09:06 segment is late.
    _push(services, make_video, CAMERA_BACK, 0)
    for index in (2, 3):
        _push(services, make_video, CAMERA_NEW_BACK, index)

    def local(moment: datetime) -> str:
        return moment.astimezone(zone).isoformat(timespec="milliseconds")

    report = json.loads(_coverage_via_cli(capsys, monkeypatch, services, "--json"))
    assert report["status"] == "incomplete"
    cameras = _by_camera(report)
    assert sorted(cameras) == sorted([CAMERA_FRONT, CAMERA_BACK, CAMERA_NEW_BACK])
    old, new = cameras[CAMERA_BACK], cameras[CAMERA_NEW_BACK]
    # The real hole in the old camera's part is a gap; nothing after its retirement is.
    assert old["gaps"] == [
        {
            "start": local(START + SEGMENT),
            "end": local(REPLACED_AT),
            "seconds": 180.0,
            "cause": "not_received",
        }
    ]
    assert new["gaps"] == [] and new["covered_seconds"] == 360.0 and new["ratio"] == 1.0
    assert cameras[CAMERA_FRONT]["gaps"] == []
    assert cameras[CAMERA_FRONT]["required_seconds"] == 720.0
    assert (old["required_start"], old["required_end"]) == (local(START), local(REPLACED_AT))
    assert (new["required_start"], new["required_end"]) == (local(REPLACED_AT), local(END))
    assert old["required_seconds"] == 360.0 and new["required_seconds"] == 360.0

    _push(services, make_video, CAMERA_BACK, 1)
    assert _stored_verdict(services) == "complete"

    _, token = services.db.run_write(
        lambda session: create_token(session, role="admin", name="centre", actor="test")
    )
    with TestClient(create_app(services)) as client:
        answer = client.get(
            f"/api/v1/sittings/{SITTING}/coverage", headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 200, answer.text
    api = answer.json()
    assert api["status"] == "complete"
    cameras = _by_camera(api)
    assert all(camera["gaps"] == [] for camera in cameras.values())
    assert cameras[CAMERA_BACK]["covered_seconds"] == 360.0
    assert cameras[CAMERA_BACK]["required_end"] == local(REPLACED_AT)
    assert cameras[CAMERA_NEW_BACK]["required_start"] == local(REPLACED_AT)

    table = _coverage_via_cli(capsys, monkeypatch, services)
    assert "complete" in table
    assert f"在用 in service 09:00:00 → 09:06:00 {360.0:>8.1f} s" in table
    assert f"在用 in service 09:06:00 → 09:12:00 {360.0:>8.1f} s" in table


def test_a_hole_in_the_replacement_cameras_part_is_still_a_gap(
    registered: Services,
    make_video: VideoFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = registered
    zone = services.settings.zone
    _replace_back_camera(services)
    _schedule(services)
    for index in range(4):
        _push(services, make_video, CAMERA_FRONT, index)
    for index in (0, 1):
        _push(services, make_video, CAMERA_BACK, index)
    _push(services, make_video, CAMERA_NEW_BACK, 3)  # 09:06-09:09 never arrives

    report = json.loads(_coverage_via_cli(capsys, monkeypatch, services, "--json"))
    assert report["status"] == "incomplete"
    assert _stored_verdict(services) == "incomplete"
    cameras = _by_camera(report)
    assert cameras[CAMERA_BACK]["gaps"] == []
    [gap] = cameras[CAMERA_NEW_BACK]["gaps"]
    assert (gap["start"], gap["end"], gap["seconds"]) == (
        REPLACED_AT.astimezone(zone).isoformat(timespec="milliseconds"),
        (REPLACED_AT + SEGMENT).astimezone(zone).isoformat(timespec="milliseconds"),
        180.0,
    )
    assert cameras[CAMERA_NEW_BACK]["covered_seconds"] == 180.0
