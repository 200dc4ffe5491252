"""Issue 5's "done when", end to end through the HTTP API with real footage:

a supervisor assigned to one sitting logs in, reads its coverage, plays both cameras from an
arbitrary instant, records a finding and exports a package that `examvault verify-export`
verifies against the centre's published key; sees no other sitting, and not this one once the
assignment window has ended; all of it is in the ledger and `examvault ledger verify` passes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from services.cli import main
from services.context import Services
from services.demo.footage import classroom_scene, write_recording
from storage.models import Assignment, LedgerEntry
from tests.api.conftest import PASSWORD, ingest_file
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, ROOM

SITTING = "REVIEW-1"
BEGIN = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)  # 10:00 Beijing time
LENGTH = timedelta(minutes=2)
SEGMENT = timedelta(seconds=40)
GOP = 2.0


def _footage(services: Services, folder: Path) -> None:
    """Both cameras film the whole sitting in 40-second segments (small, but real H.264)."""
    folder.mkdir()
    for seed, camera in enumerate((CAMERA_FRONT, CAMERA_BACK)):
        start = BEGIN
        while start < BEGIN + LENGTH:
            path = folder / camera / f"{start:%Y%m%dT%H%M%S}Z.mp4"
            path.parent.mkdir(exist_ok=True)
            write_recording(
                path,
                seconds=SEGMENT.total_seconds(),
                fps=5,
                width=160,
                height=120,
                gop_seconds=GOP,
                scene=classroom_scene(160, 120, seed=seed),
            )
            ingest_file(services, camera, path)
            start += SEGMENT


def _first_frame_seconds(data: bytes, folder: Path) -> float:
    path = folder / "played.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream))
        assert frame.time is not None
        return float(frame.time)


@pytest.mark.slow
def test_a_supervisor_reviews_one_sitting_end_to_end(
    world: tuple[TestClient, Services],
    admin_token: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, services = world
    admin = {"Authorization": f"Bearer {admin_token}"}
    _footage(services, tmp_path / "footage")
    scheduled = client.put(
        "/api/v1/sittings",
        json={
            "sittings": [
                {
                    "sitting_code": SITTING,
                    "room_code": ROOM,
                    "kind": "practical",
                    "occupation": "电工",
                    "level": "三级",
                    "starts_at": BEGIN.isoformat(),
                    "ends_at": (BEGIN + LENGTH).isoformat(),
                }
            ]
        },
        headers=admin,
    )
    assert scheduled.status_code == 200, scheduled.text

    # The centre creates the supervisor and assigns the sitting for a window around now.
    now = datetime.now(UTC)
    made = client.post(
        "/api/v1/users",
        json={"name": "zhang", "role": "supervisor", "password": PASSWORD},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    granted = client.post(
        "/api/v1/assignments",
        json={
            "user": "zhang",
            "sitting": SITTING,
            "valid_from": (now - timedelta(minutes=5)).isoformat(),
            "valid_until": (now + timedelta(hours=2)).isoformat(),
        },
        headers=admin,
    )
    assert granted.status_code == 201, granted.text

    # Log in; only the assigned sitting is visible.
    token = client.post("/api/v1/auth/token", data={"username": "zhang", "password": PASSWORD})
    assert token.status_code == 200, token.text
    me = {"Authorization": f"Bearer {token.json()['access_token']}"}
    listed = client.get("/api/v1/sittings", headers=me).json()["sittings"]
    assert [s["code"] for s in listed] == [SITTING]
    for other in ("OWN-1", "OWN-2", "FAR-1"):
        assert client.get(f"/api/v1/sittings/{other}", headers=me).status_code == 404

    coverage = client.get(f"/api/v1/sittings/{SITTING}/coverage", headers=me).json()
    assert coverage["status"] == "complete"
    assert {c["camera"]: c["ratio"] for c in coverage["cameras"]} == {
        CAMERA_FRONT: 1.0,
        CAMERA_BACK: 1.0,
    }

    # Both cameras from an arbitrary instant, across a segment boundary: the first frame lands
    # at most one keyframe interval before the instant.
    instant = BEGIN + timedelta(seconds=53, milliseconds=300)
    for camera in (CAMERA_FRONT, CAMERA_BACK):
        played = client.get(
            f"/api/v1/sittings/{SITTING}/playback",
            params={"camera": camera, "at": instant.isoformat()},
            headers=me,
        )
        assert played.status_code == 200, played.text
        assert played.headers["content-type"].startswith("video/mp4")
        first = datetime.fromisoformat(played.headers["X-Playback-Start"])
        assert instant - timedelta(seconds=GOP) <= first <= instant
        assert _first_frame_seconds(played.content, tmp_path) < GOP
        assert played.headers["X-Playback-Gap-Count"] == "0"

    finding = client.post(
        f"/api/v1/sittings/{SITTING}/findings",
        json={
            "camera": CAMERA_BACK,
            "category": "absent_assessor",
            "observed_from": instant.isoformat(),
            "observed_until": (instant + timedelta(seconds=20)).isoformat(),
            "text": "考评员离开考场约20秒",
        },
        headers=me,
    )
    assert finding.status_code == 201, finding.text

    exported = client.post(
        f"/api/v1/sittings/{SITTING}/exports", json={"reason": "督导抽查"}, headers=me
    )
    assert exported.status_code == 200, exported.text
    package = tmp_path / "evidence.zip"
    package.write_bytes(exported.content)
    published = client.get("/api/v1/ledger/key", headers=me)
    assert published.status_code == 200, published.text
    key = tmp_path / "centre.pem"
    key.write_text(published.json()["public_key_pem"])
    assert main(["verify-export", str(package), "--key", str(key)]) == 0, capsys.readouterr()
    # The fingerprint the centre publishes is as good as its PEM.
    fingerprint = published.json()["fingerprint"]
    assert main(["verify-export", str(package), "--key-fingerprint", fingerprint]) == 0

    # The window ends: the sitting, its footage and its export are gone from this supervisor.
    with services.db.write() as session:
        session.execute(
            update(Assignment).values(valid_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert client.get("/api/v1/sittings", headers=me).json()["sittings"] == []
    for refused in (
        client.get(f"/api/v1/sittings/{SITTING}/coverage", headers=me),
        client.get(
            f"/api/v1/sittings/{SITTING}/playback", params={"camera": CAMERA_FRONT}, headers=me
        ),
        client.post(f"/api/v1/sittings/{SITTING}/exports", json={"reason": "x"}, headers=me),
        client.get(f"/api/v1/sittings/{SITTING}/findings", headers=me),
    ):
        assert refused.status_code == 404, refused.text

    # Everything the supervisor did is in the ledger, and the ledger verifies.
    with services.db.read() as session:
        actions = session.scalars(
            select(LedgerEntry.action)
            .where(LedgerEntry.actor == "supervisor:zhang")
            .order_by(LedgerEntry.seq)
        ).all()
    assert actions == [
        "user.logged_in",
        "footage.playback",
        "footage.playback",
        "finding.created",
        "export.created",
        "export.delivered",
    ]
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", services.settings.resolved_database_url)
    assert main(["ledger", "verify"]) == 0, capsys.readouterr()
