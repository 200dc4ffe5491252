"""The issue's acceptance scenario, end to end through the real pipeline, CLI and API.

A sitting with two cameras: the back camera misses 3 minutes in the middle and shows a 2-minute
black stretch. It must be reported `incomplete` with exactly that gap and that health flag; when
the missing segment is pushed late, it becomes `complete` with the black flag still shown; both
verdict changes are in the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.access.tokens import create_token
from services.api.app import create_app
from services.cli import main
from services.context import Services
from services.coverage.schedule import parse_json
from services.demo.footage import black_scene, classroom_scene, spliced, write_recording
from storage import ledger
from storage.models import LedgerEntry
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, ROOM, ingest_file

# 09:00-09:12 local on 20 November 2026: long past its grace period on any day this runs.
START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
SEGMENT = timedelta(minutes=3)
SITTING = "CQ-SCENARIO-001"
FPS, GOP = 2, 2.0


def _name(start: datetime) -> str:
    return f"{start:%Y%m%dT%H%M%S}Z.mp4"


def _write(folder: Path, start: datetime, *, seed: int, black_from: float | None = None) -> Path:
    normal = classroom_scene(160, 120, seed=seed)
    scene = (
        normal
        if black_from is None
        else spliced((black_from, normal), (black_from + 120, black_scene(160, 120)), (1e9, normal))
    )
    path = folder / _name(start)
    write_recording(
        path,
        seconds=SEGMENT.total_seconds(),
        fps=FPS,
        width=160,
        height=120,
        gop_seconds=GOP,
        scene=scene,
    )
    return path


@pytest.fixture
def scenario(registered: Services, tmp_path: Path) -> Iterator[tuple[Services, Path]]:
    notes: list[str] = []
    rows = parse_json(
        {
            "sittings": [
                {
                    "sitting_code": SITTING,
                    "room_code": ROOM,
                    "kind": "theory",
                    "occupation": "电工",
                    "level": "四级",
                    "starts_at": START.isoformat(),
                    "ends_at": (START + 4 * SEGMENT).isoformat(),
                }
            ]
        },
        registered.settings.zone,
        notes,
    )
    registered.db.run_write(
        lambda session: registered.import_schedule(
            session,
            rows,
            actor="test",
            zone_assumed=notes,
        )
    )
    footage = tmp_path / "footage"
    footage.mkdir()
    for index in range(4):
        start = START + index * SEGMENT
        ingest_file(registered, CAMERA_FRONT, _write(footage, start, seed=10 + index))
        if index == 1:
            continue  # the back camera's 09:03-09:06 segment has not arrived
        ingest_file(
            registered,
            CAMERA_BACK,
            _write(footage, start, seed=20 + index, black_from=30.0 if index == 3 else None),
        )
    assert registered.health.check_unchecked() == 7
    yield registered, footage


def _coverage_via_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, services: Services
) -> dict:
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", services.settings.resolved_database_url)
    capsys.readouterr()
    assert main(["coverage", SITTING, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _verdicts(services: Services) -> list[str]:
    with services.db.read() as session:
        return [
            json.loads(details)["to"]
            for details in session.scalars(
                select(LedgerEntry.details)
                .where(
                    LedgerEntry.action == "coverage.verdict_changed",
                    LedgerEntry.subject_id == SITTING,
                )
                .order_by(LedgerEntry.seq)
            )
        ]


def _back(report: dict) -> dict:
    return next(camera for camera in report["cameras"] if camera["camera"] == CAMERA_BACK)


def test_gap_and_black_stretch_then_late_segment_completes(
    scenario: tuple[Services, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services, footage = scenario
    zone = services.settings.zone

    def local(moment: datetime) -> str:
        return moment.astimezone(zone).isoformat(timespec="milliseconds")

    report = _coverage_via_cli(capsys, monkeypatch, services)
    assert report["status"] == "incomplete"
    front = next(c for c in report["cameras"] if c["camera"] == CAMERA_FRONT)
    assert front["gaps"] == [] and front["health"] == []
    back = _back(report)
    assert back["gaps"] == [
        {
            "start": local(START + SEGMENT),
            "end": local(START + 2 * SEGMENT),
            "seconds": 180.0,
            "cause": "not_received",
        }
    ]
    assert back["covered_seconds"] == 540.0 and back["required_seconds"] == 720.0
    [black] = back["health"]
    assert black["kind"] == "black"
    truth_start = START + 3 * SEGMENT + timedelta(seconds=30)
    sample = timedelta(seconds=GOP)
    assert abs(datetime.fromisoformat(black["start"]) - truth_start) <= sample
    assert (
        abs(datetime.fromisoformat(black["end"]) - (truth_start + timedelta(minutes=2))) <= sample
    )

    _, token = services.db.run_write(
        lambda session: create_token(session, role="admin", name="centre", actor="test")
    )
    with TestClient(create_app(services)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        api = client.get(f"/api/v1/sittings/{SITTING}/coverage", headers=auth).json()
        assert api["status"] == "incomplete"
        assert _back(api)["gaps"] == back["gaps"]
        assert _back(api)["health"] == back["health"]

        late = _write(footage, START + SEGMENT, seed=21)
        pushed = client.put(
            f"/api/v1/ingest/{CAMERA_BACK}/{late.name}", content=late.read_bytes(), headers=auth
        )
        assert pushed.status_code == 201, pushed.text
        listed = client.get("/api/v1/sittings", params={"status": "complete"}, headers=auth)
        assert [s["code"] for s in listed.json()["sittings"]] == [SITTING]
    services.health.check_unchecked()

    after = _coverage_via_cli(capsys, monkeypatch, services)
    assert after["status"] == "complete"
    assert _back(after)["gaps"] == []
    assert [flag["kind"] for flag in _back(after)["health"]] == ["black"]

    verdicts = _verdicts(services)
    assert verdicts[-2:] == ["incomplete", "complete"]
    with services.db.read() as session:
        assert ledger.verify(session).ok
