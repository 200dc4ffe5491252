"""A decode bomb (tiny file, 8192x8192 pictures) is refused from its header, over HTTP and in the
spool, and kept in quarantine with its reason; the limits come from the settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.access.tokens import create_token
from services.api.app import create_app
from services.context import Services
from services.ingest.pipeline import Arrival, Outcome
from storage.models import QuarantineRecord, Segment
from tests.conftest import CAMERA_FRONT, VideoFactory
from tests.large_picture import write_large_picture

NAME = "20261124T090000+0800.mp4"


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_large_picture(tmp_path_factory.mktemp("bomb") / "bomb.mp4").read_bytes()


def _spooled(services: Services, content: bytes) -> Arrival:
    folder = services.settings.resolved_spool_dir / CAMERA_FRONT
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / NAME
    path.write_bytes(content)
    return Arrival(
        path=path,
        camera_code=CAMERA_FRONT,
        file_name=NAME,
        source="spool",
        received_at=datetime.now(UTC),
    )


def _segments(services: Services) -> int:
    with services.db.read() as session:
        return session.scalar(select(func.count()).select_from(Segment)) or 0


@pytest.fixture
def client(registered: Services) -> Iterator[TestClient]:
    with TestClient(create_app(registered)) as test_client:
        yield test_client


def test_422_too_large_picture_over_http_and_the_file_is_kept(
    client: TestClient, registered: Services, bomb: bytes
) -> None:
    _, token = registered.db.run_write(
        lambda session: create_token(
            session, role="camera_host", name="host", cameras=[CAMERA_FRONT], actor="test"
        )
    )
    response = client.put(
        f"/api/v1/ingest/{CAMERA_FRONT}/{NAME}",
        content=bomb,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "too_large_picture"
    assert "8192x8192" in body["message"] and body["message_zh"]
    assert _segments(registered) == 0
    with registered.db.read() as session:
        assert session.scalar(select(QuarantineRecord.reason_code)) == "too_large_picture"


def test_a_spooled_bomb_is_quarantined_with_the_reason(registered: Services, bomb: bytes) -> None:
    arrival = _spooled(registered, bomb)
    result = registered.pipeline.ingest(arrival)
    assert (result.outcome, result.code) == (Outcome.REJECTED, "too_large_picture")
    assert not arrival.path.exists()
    with registered.db.read() as session:
        record = session.get(QuarantineRecord, result.quarantine_id)
        assert record is not None and record.reason_code == "too_large_picture"
        assert "8192x8192" in record.reason
    assert _segments(registered) == 0


def test_the_picture_limits_are_the_settings(
    registered: Services, make_video: VideoFactory
) -> None:
    registered.settings.max_picture_long_side = 300  # below the 320x240 test camera
    result = registered.pipeline.ingest(_spooled(registered, make_video("a.mp4").read_bytes()))
    assert (result.outcome, result.code) == (Outcome.REJECTED, "too_large_picture")
    assert "300x2160" in (result.reason or "")


def test_the_pixel_rate_limit_is_a_setting(registered: Services, make_video: VideoFactory) -> None:
    registered.settings.max_pixel_rate = 320 * 240 * 5  # the test camera films 10 frames/s
    result = registered.pipeline.ingest(
        _spooled(registered, make_video("a.mp4", fps=10).read_bytes())
    )
    assert (result.outcome, result.code) == (Outcome.REJECTED, "too_large_picture")
