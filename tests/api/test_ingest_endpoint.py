"""PUT /api/v1/ingest/{camera}/{name}: every answer of SPEC.md's "HTTP push", through the real
ASGI app (httpx transport in-process; the end-to-end test drives a real server process)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.access.tokens import create_token
from services.api.app import create_app
from services.context import Services
from storage.models import QuarantineRecord, Segment
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, VideoFactory
from tests.reliability import Reliability

NAME = "20261124T090000+0800.mp4"
URL = f"/api/v1/ingest/{CAMERA_FRONT}/{NAME}"


def _token(services: Services, role: str, cameras: list[str] | None = None) -> str:
    _, plaintext = services.db.run_write(
        lambda session: create_token(
            session, role=role, name=f"test-{role}", cameras=cameras, actor="test"
        )
    )
    return plaintext


@pytest.fixture
def client(registered: Services) -> Iterator[TestClient]:
    with TestClient(create_app(registered)) as test_client:
        yield test_client


@pytest.fixture
def host_auth(registered: Services) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(registered, 'camera_host', [CAMERA_FRONT])}"}


@pytest.fixture
def video(make_video: VideoFactory) -> bytes:
    return make_video("clip.mp4", seconds=3).read_bytes()


def _segments(services: Services) -> int:
    with services.db.read() as session:
        return session.scalar(select(func.count()).select_from(Segment)) or 0


def _quarantined(services: Services) -> int:
    with services.db.read() as session:
        return session.scalar(select(func.count()).select_from(QuarantineRecord)) or 0


def test_201_stores_and_answers_the_servers_sha256(
    client: TestClient, host_auth: dict[str, str], video: bytes, registered: Services
) -> None:
    sha = hashlib.sha256(video).hexdigest()
    response = client.put(URL, content=video, headers={**host_auth, "X-Content-SHA256": sha})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["sha256"] == sha and body["status"] == "stored"
    assert body["start"] == "2026-11-24T09:00:00.000+08:00"
    assert body["camera"] == CAMERA_FRONT
    assert _segments(registered) == 1
    assert list(registered.settings.incoming_dir.iterdir()) == []


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "application/json"])
def test_any_declared_content_type_stores_the_bytes_as_sent(
    client: TestClient,
    host_auth: dict[str, str],
    video: bytes,
    registered: Services,
    content_type: str,
) -> None:
    # `curl --data-binary` declares a form unless told otherwise: the body is still a video,
    # streamed to the spool as it comes, never parsed as a form or as JSON.
    sha = hashlib.sha256(video).hexdigest()
    headers = {**host_auth, "X-Content-SHA256": sha, "Content-Type": content_type}
    response = client.put(URL, content=video, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == sha and _segments(registered) == 1


def test_200_for_a_retry_of_the_same_bytes(
    client: TestClient, host_auth: dict[str, str], video: bytes, registered: Services
) -> None:
    first = client.put(URL, content=video, headers=host_auth)
    again = client.put(URL, content=video, headers=host_auth)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["segment_id"] == first.json()["segment_id"]
    assert again.json()["status"] == "duplicate"
    assert _segments(registered) == 1


def test_409_for_different_bytes_at_the_same_start(
    client: TestClient, host_auth: dict[str, str], make_video: VideoFactory, registered: Services
) -> None:
    client.put(URL, content=make_video("a.mp4", seed=1).read_bytes(), headers=host_auth)
    response = client.put(URL, content=make_video("b.mp4", seed=2).read_bytes(), headers=host_auth)
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert response.json()["quarantine_id"] is not None
    assert _quarantined(registered) == 1


def test_422_for_a_file_that_is_not_a_video_and_it_is_kept(
    client: TestClient, host_auth: dict[str, str], registered: Services
) -> None:
    response = client.put(URL, content=b"not a video at all" * 100, headers=host_auth)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "not_a_video" and body["message"] and body["message_zh"]
    assert _quarantined(registered) == 1


def test_422_for_an_empty_body(
    client: TestClient, host_auth: dict[str, str], registered: Services
) -> None:
    response = client.put(URL, content=b"", headers=host_auth)
    assert (response.status_code, response.json()["code"]) == (422, "empty_file")


def test_422_for_an_unregistered_camera_with_an_admin_token(
    client: TestClient, video: bytes, registered: Services
) -> None:
    admin = {"Authorization": f"Bearer {_token(registered, 'admin')}"}
    response = client.put(f"/api/v1/ingest/NO-SUCH-CAM/{NAME}", content=video, headers=admin)
    assert (response.status_code, response.json()["code"]) == (422, "unknown_camera")


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        (f"/api/v1/ingest/{CAMERA_FRONT}/..mp4", {}, "bad_file_name"),
        (f"/api/v1/ingest/{CAMERA_FRONT}/sub%2F{NAME}", {}, "bad_file_name"),
        (f"/api/v1/ingest/{CAMERA_FRONT}/sub/{NAME}", {}, "bad_file_name"),
        (f"/api/v1/ingest/{CAMERA_FRONT}/a%5Cb.mp4", {}, "bad_file_name"),
        (f"/api/v1/ingest/{CAMERA_FRONT}/20261399T090000Z.mp4", {}, "bad_file_name"),
        (f"/api/v1/ingest/{CAMERA_FRONT}/clip.mp4", {}, "missing_start"),
        (
            f"/api/v1/ingest/{CAMERA_FRONT}/clip.mp4",
            {"X-Recording-Start": "2026-11-24 9am"},
            "bad_start_header",
        ),
        (
            f"/api/v1/ingest/{CAMERA_FRONT}/clip.mp4",
            {"X-Recording-Start": "2026-11-24T09:00:00"},
            "bad_start_header",
        ),
        (URL, {"X-Recording-Start": "2026-11-24T10:00:00+08:00"}, "start_mismatch"),
        (URL, {"X-Content-SHA256": "abc"}, "bad_checksum_header"),
        (URL, {"X-Content-SHA256": "0" * 64}, "checksum_mismatch"),
    ],
)
def test_400_for_bad_names_and_headers_leaves_nothing_behind(
    client: TestClient,
    host_auth: dict[str, str],
    video: bytes,
    registered: Services,
    path: str,
    headers: dict[str, str],
    code: str,
) -> None:
    response = client.put(path, content=video, headers={**host_auth, **headers})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert _segments(registered) == 0 and _quarantined(registered) == 0
    incoming = registered.settings.incoming_dir
    assert not incoming.exists() or list(incoming.iterdir()) == []


def test_start_from_the_header_when_the_name_has_none(
    client: TestClient, host_auth: dict[str, str], video: bytes
) -> None:
    response = client.put(
        f"/api/v1/ingest/{CAMERA_FRONT}/clip.mp4",
        content=video,
        headers={**host_auth, "X-Recording-Start": "2026-11-24T01:00:00Z"},
    )
    assert response.status_code == 201
    assert response.json()["start"] == "2026-11-24T09:00:00.000+08:00"


def test_401_without_or_with_an_unknown_token(client: TestClient, video: bytes) -> None:
    assert client.put(URL, content=video).status_code == 401
    unknown = client.put(URL, content=video, headers={"Authorization": "Bearer evt_nope"})
    assert unknown.status_code == 401
    assert unknown.json()["code"] == "unauthorized"
    assert unknown.headers["WWW-Authenticate"] == "Bearer"


def test_403_for_another_hosts_camera_or_a_role_that_may_not_push(
    client: TestClient, host_auth: dict[str, str], video: bytes, registered: Services
) -> None:
    other = client.put(f"/api/v1/ingest/{CAMERA_BACK}/{NAME}", content=video, headers=host_auth)
    assert (other.status_code, other.json()["code"]) == (403, "forbidden")
    supervisor = {"Authorization": f"Bearer {_token(registered, 'supervisor')}"}
    assert client.put(URL, content=video, headers=supervisor).status_code == 403
    assert _segments(registered) == 0


def test_413_over_the_size_limit_by_header_or_by_stream(
    client: TestClient, host_auth: dict[str, str], video: bytes, registered: Services
) -> None:
    registered.settings.max_upload_bytes = len(video) - 1
    declared = client.put(URL, content=video, headers=host_auth)
    assert (declared.status_code, declared.json()["code"]) == (413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for offset in range(0, len(video), 4096):
            yield video[offset : offset + 4096]

    streamed = client.put(URL, content=chunks(), headers=host_auth)
    assert streamed.status_code == 413
    assert list(registered.settings.incoming_dir.iterdir()) == []
    assert _segments(registered) == 0


def test_expired_or_revoked_tokens_are_refused(
    client: TestClient, video: bytes, registered: Services
) -> None:
    from datetime import UTC, datetime, timedelta

    from storage.models import ApiToken

    token = _token(registered, "camera_host", [CAMERA_FRONT])
    with registered.db.write() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.name == "test-camera_host"))
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert (
        client.put(URL, content=video, headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )


def test_healthz_answers_once_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_unknown_routes_answer_json_errors(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_503_and_nothing_written_outside_when_the_upload_folder_is_a_symlink(
    client: TestClient,
    host_auth: dict[str, str],
    video: bytes,
    registered: Services,
    tmp_path: Path,
) -> None:
    incoming = registered.settings.incoming_dir
    if incoming.exists():
        incoming.rmdir()
    incoming.parent.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    incoming.symlink_to(outside, target_is_directory=True)
    response = client.put(URL, content=video, headers=host_auth)
    assert (response.status_code, response.json()["code"]) == (503, "spool_unavailable")
    assert list(outside.iterdir()) == []
    assert _segments(registered) == 0


@pytest.mark.parametrize(
    "start",
    ["9999-12-31T23:50:00Z", "9997-06-01T00:00:00+08:00", "2100-01-01T00:00:00Z"],
)
def test_a_start_past_2100_is_quarantined_not_a_500_nor_a_kept_upload(
    client: TestClient,
    host_auth: dict[str, str],
    video: bytes,
    registered: Services,
    start: str,
    reliability: Reliability,
) -> None:
    # Near year 9999 the retention date (three years after the end) cannot be computed: the
    # push answered 500 and its kept upload failed again at every sweep.
    response = client.put(
        f"/api/v1/ingest/{CAMERA_FRONT}/clip.mp4",
        content=video,
        headers={**host_auth, "X-Recording-Start": start},
    )
    reliability.record(
        "hostile files",
        f"a real video pushed with X-Recording-Start {start}",
        tries=1,
        answers={f"{response.status_code} {response.json().get('code')}": 1},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "clock_far_ahead"
    assert _segments(registered) == 0 and _quarantined(registered) == 1
    assert list(registered.settings.incoming_dir.iterdir()) == []


@pytest.mark.parametrize("start", ["9999-12-31T23:00:00-14:00", "0001-01-01T00:00:00+14:00"])
def test_a_start_header_outside_the_calendar_in_utc_answers_400(
    client: TestClient, host_auth: dict[str, str], video: bytes, start: str
) -> None:
    response = client.put(
        f"/api/v1/ingest/{CAMERA_FRONT}/clip.mp4",
        content=video,
        headers={**host_auth, "X-Recording-Start": start},
    )
    assert (response.status_code, response.json()["code"]) == (400, "bad_start_header")
