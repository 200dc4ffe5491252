"""Footage API: a sitting's segments, original bytes with HTTP Range, time-range playback remuxed
without transcoding (gaps reported, keyframe landing), thumbnail strips cached in the store;
scoped like the rest (404 unknown, 403 not for this role, 403 outside the assignment) and every
read in the ledger. Real videos (PyAV), both databases."""

from __future__ import annotations

import io
import itertools
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import av
import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from services.access.tokens import create_token
from services.api.app import create_app
from services.context import Services
from services.health.sampling import frame_at
from services.registry import import_registry
from services.retention.purge import execute_purge, reconcile
from services.settings import Settings
from storage.keys import THUMBNAIL_PREFIX
from storage.models import Camera, LedgerEntry, Segment
from storage.stores import init_blob_store
from tests.api.conftest import (
    FOREIGN_CAMERAS,
    START,
    assign_now,
    ingest_file,
    login,
    make_user,
)
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY, VideoFactory
from tests.s3server import ACCESS_KEY, SECRET_KEY

GOP = timedelta(seconds=2)
FPS = 10
# CAMERA_FRONT in sitting OWN-1 (START .. START+1h): A [0 s, 6 s), B [6 s, 12 s), a gap, then
# C [20 s, 26 s); a keyframe every 2 s in each.
LAYOUT = ((0, "a"), (6, "b"), (20, "c"))


def _name(offset: float, ext: str = "mp4", tag: str = "") -> str:
    moment = START + timedelta(seconds=offset)
    return f"{moment:%Y%m%dT%H%M%S}Z{tag}.{ext}"


def _at(offset: float) -> str:
    return (START + timedelta(seconds=offset)).isoformat()


@pytest.fixture
def footage(
    world: tuple[TestClient, Services], admin_token: str, make_video: VideoFactory
) -> tuple[TestClient, Services, dict[str, str]]:
    client, services = world
    for seed, (offset, _) in enumerate(LAYOUT):
        video = make_video(_name(offset), seconds=6, seed=seed, gop_seconds=2, fps=FPS)
        ingest_file(services, CAMERA_FRONT, video)
    return client, services, {"Authorization": f"Bearer {admin_token}"}


def _segment_ids(services: Services, camera: str = CAMERA_FRONT) -> list[int]:
    with services.db.read() as session:
        return list(
            session.scalars(
                select(Segment.id)
                .join(Camera, Segment.camera_id == Camera.id)
                .where(Camera.code == camera)
                .order_by(Segment.starts_at)
            )
        )


def _segment(services: Services, segment_id: int) -> Segment:
    with services.db.read() as session:
        segment = session.get(Segment, segment_id)
        assert segment is not None
        return segment


def _original(services: Services, segment_id: int) -> bytes:
    return b"".join(services.store.read(_segment(services, segment_id).blob_key))


def _ledger(services: Services, action: str) -> list[LedgerEntry]:
    with services.db.read() as session:
        return list(
            session.scalars(
                select(LedgerEntry).where(LedgerEntry.action == action).order_by(LedgerEntry.seq)
            )
        )


def _frames(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data)) as container:
        return list(container.decode(container.streams.video[0]))


def _supervisor(client: TestClient, services: Services, name: str = "zhang") -> dict[str, str]:
    make_user(services, name, "supervisor")
    assign_now(services, name, "OWN-1")
    return login(client, name)


def test_segments_are_listed_per_camera_with_local_times(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, admin = footage
    response = client.get("/api/v1/sittings/OWN-1/segments", headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    cameras = {camera["camera"]: camera for camera in body["cameras"]}
    assert set(cameras) == {CAMERA_FRONT, CAMERA_BACK}
    front = cameras[CAMERA_FRONT]["segments"]
    assert [s["start"] for s in front] == [
        "2026-11-20T09:00:00.000+08:00",
        "2026-11-20T09:00:06.000+08:00",
        "2026-11-20T09:00:20.000+08:00",
    ]
    first = front[0]
    assert first["end"] == "2026-11-20T09:00:06.000+08:00"
    assert first["sha256"] == _segment(services, first["id"]).sha256
    assert first["size"] == len(_original(services, first["id"]))
    assert first["purged"] is False and first["content"].endswith(f"/{first['id']}/content")
    assert cameras[CAMERA_BACK]["segments"] == []


def test_institutions_see_the_segment_list_but_not_the_footage(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, _ = footage
    make_user(services, "jigou", "institution", institution_code="T1")
    institution = login(client, "jigou")
    assert client.get("/api/v1/sittings/OWN-1/segments", headers=institution).status_code == 200
    segment = _segment_ids(services)[0]
    refused = [
        client.get(f"/api/v1/segments/{segment}/content", headers=institution),
        client.get(
            f"/api/v1/cameras/{CAMERA_FRONT}/playback",
            params={"start": _at(0), "end": _at(10)},
            headers=institution,
        ),
        client.get(
            "/api/v1/sittings/OWN-1/playback", params={"camera": CAMERA_FRONT}, headers=institution
        ),
        client.get(
            f"/api/v1/sittings/OWN-1/cameras/{CAMERA_FRONT}/thumbnails", headers=institution
        ),
    ]
    assert [(r.status_code, r.json()["code"]) for r in refused] == [(403, "forbidden")] * 4
    assert all(r.json()["message_zh"] for r in refused)


def test_content_without_range_is_the_whole_file_with_etag(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, admin = footage
    segment = _segment_ids(services)[0]
    response = client.get(f"/api/v1/segments/{segment}/content", headers=admin)
    assert response.status_code == 200
    assert response.content == _original(services, segment)
    assert response.headers["etag"] == f'"{_segment(services, segment).sha256}"'
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(response.content)


def test_content_range_is_206_with_content_range(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, admin = footage
    segment = _segment_ids(services)[0]
    original = _original(services, segment)
    response = client.get(
        f"/api/v1/segments/{segment}/content", headers={**admin, "Range": "bytes=100-1099"}
    )
    assert response.status_code == 206
    assert response.content == original[100:1100]
    assert response.headers["content-range"] == f"bytes 100-1099/{len(original)}"
    suffix = client.get(
        f"/api/v1/segments/{segment}/content", headers={**admin, "Range": "bytes=-500"}
    )
    assert suffix.status_code == 206 and suffix.content == original[-500:]


def test_content_range_past_the_end_is_416(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, admin = footage
    segment = _segment_ids(services)[0]
    size = len(_original(services, segment))
    response = client.get(
        f"/api/v1/segments/{segment}/content", headers={**admin, "Range": f"bytes={size}-"}
    )
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"
    assert response.json()["code"] == "range_not_satisfiable"
    assert response.json()["message_zh"] != response.json()["message"]


def test_content_revalidation_and_if_range(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, admin = footage
    segment = _segment_ids(services)[0]
    etag = f'"{_segment(services, segment).sha256}"'
    unchanged = client.get(
        f"/api/v1/segments/{segment}/content", headers={**admin, "If-None-Match": etag}
    )
    assert unchanged.status_code == 304 and unchanged.content == b""
    stale = client.get(
        f"/api/v1/segments/{segment}/content",
        headers={**admin, "Range": "bytes=0-9", "If-Range": '"another"'},
    )
    assert stale.status_code == 200  # another version: the whole file, not a piece of it
    assert len(stale.content) == len(_original(services, segment))


def test_a_304_to_a_content_read_is_ledgered_as_not_modified(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, _ = footage
    supervisor = _supervisor(client, services)
    segment = _segment_ids(services)[0]
    etag = f'"{_segment(services, segment).sha256}"'
    unchanged = client.get(
        f"/api/v1/segments/{segment}/content", headers={**supervisor, "If-None-Match": etag}
    )
    assert unchanged.status_code == 304
    # The 304 confirms the client's cached copy is this footage: a read like any other.
    (entry,) = _ledger(services, "footage.content")
    assert (entry.actor, entry.subject_id) == ("supervisor:zhang", str(segment))
    details = json.loads(entry.details)
    assert details["not_modified"] is True and details["bytes"] == 0
    assert details["sha256"] == _segment(services, segment).sha256


def test_content_of_a_purged_segment_is_410_with_its_tombstone_time(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, admin = footage
    segment = _segment_ids(services)[0]
    with services.db.write() as session:
        session.execute(
            update(Segment)
            .where(Segment.id == segment)
            .values(expires_at=datetime.now(UTC) - timedelta(days=1))
        )
    execute_purge(services.db, services.store, services.settings, actor="test")
    response = client.get(f"/api/v1/segments/{segment}/content", headers=admin)
    assert response.status_code == 410
    body = response.json()
    assert body["code"] == "purged" and body["message_zh"] != body["message"]
    assert body["purged_at"].endswith("+08:00")
    listed = client.get("/api/v1/sittings/OWN-1/segments", headers=admin).json()
    front = next(c for c in listed["cameras"] if c["camera"] == CAMERA_FRONT)
    assert front["segments"][0]["purged"] is True


def test_playback_crosses_segments_and_reports_the_gap(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, _, admin = footage
    response = client.get(
        f"/api/v1/cameras/{CAMERA_FRONT}/playback",
        params={"start": _at(3.3), "end": _at(26)},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    # The keyframe at or before 3.3 s is the one at 2 s.
    assert response.headers["x-playback-start"] == "2026-11-20T09:00:02.000+08:00"
    gaps = json.loads(response.headers["x-playback-gaps"])
    assert [(g["start"], g["end"], g["cause"]) for g in gaps] == [
        ("2026-11-20T09:00:12.000+08:00", "2026-11-20T09:00:20.000+08:00", "not_received")
    ]
    assert gaps[0]["media_at"] == 10.0  # 2..12 s played before the cut
    frames = _frames(response.content)
    # 2..6 s of A, all of B, all of C: 16 s at 10 fps, timestamps running on without a jump.
    assert len(frames) == 16 * FPS
    times = [float(frame.time) for frame in frames]
    assert times[0] == 0.0
    assert max(b - a for a, b in itertools.pairwise(times)) == pytest.approx(0.1)


def test_playback_lands_within_one_keyframe_interval_of_the_instant(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, admin = footage
    asked = START + timedelta(seconds=9.7)
    response = client.get(
        f"/api/v1/cameras/{CAMERA_FRONT}/playback",
        params={"start": asked.isoformat(), "end": _at(12)},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    first = datetime.fromisoformat(response.headers["x-playback-start"])
    assert timedelta(0) <= asked - first <= GOP
    # The first frame out is the picture the source shows at that instant, bit for bit.
    segment = _segment(services, _segment_ids(services)[1])
    source = services.store.local_path(segment.blob_key)
    assert source is not None
    expected = frame_at(source, (first - segment.starts_at).total_seconds())
    got = _frames(response.content)[0].to_ndarray(format="bgr24")
    assert np.array_equal(got, expected)


def test_playback_plan_lists_pieces_offsets_and_gaps(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, admin = footage
    response = client.get(
        f"/api/v1/cameras/{CAMERA_FRONT}/playback",
        params={"start": _at(-5), "end": _at(30), "format": "json"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    plan = response.json()
    ids = _segment_ids(services)
    assert [(p["segment"], p["media_offset"], p["seconds"]) for p in plan["pieces"]] == [
        (ids[0], 0.0, 6.0),
        (ids[1], 6.0, 6.0),
        (ids[2], 12.0, 6.0),
    ]
    assert plan["start"] == "2026-11-20T09:00:00.000+08:00"
    assert [(g["start"], g["end"], g["media_at"]) for g in plan["gaps"]] == [
        ("2026-11-20T08:59:55.000+08:00", "2026-11-20T09:00:00.000+08:00", 0.0),
        ("2026-11-20T09:00:12.000+08:00", "2026-11-20T09:00:20.000+08:00", 12.0),
        ("2026-11-20T09:00:26.000+08:00", "2026-11-20T09:00:30.000+08:00", 18.0),
    ]
    assert plan["continue_at"] is None


def test_playback_names_holes_near_a_suspect_clock_as_the_report_does(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, admin = footage
    params = {"start": _at(0), "end": _at(26), "format": "json"}
    url = f"/api/v1/cameras/{CAMERA_FRONT}/playback"
    before = client.get(url, params=params, headers=admin).json()
    assert [g["cause"] for g in before["gaps"]] == ["not_received"]
    with services.db.write() as session:  # the last segment's host clock ran ahead
        session.execute(
            update(Segment)
            .where(Segment.id == _segment_ids(services)[-1])
            .values(clock_flags=["clock_ahead"])
        )
    after = client.get(url, params=params, headers=admin).json()
    assert [g["cause"] for g in after["gaps"]] == ["clock_suspect"]


def test_playback_pinned_to_a_plans_segments_ignores_others(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, admin = footage
    first, second, _third = _segment_ids(services)
    url = f"/api/v1/cameras/{CAMERA_FRONT}/playback"
    params = {"start": _at(0), "end": _at(26), "segments": f"{first},{second}"}
    plan = client.get(url, params={**params, "format": "json"}, headers=admin).json()
    assert [p["segment"] for p in plan["pieces"]] == [first, second]
    streamed = client.get(url, params=params, headers=admin)
    assert streamed.headers["x-playback-segments"] == f"{first},{second}"
    bad = client.get(url, params={**params, "segments": "1;2"}, headers=admin)
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_request")


@pytest.mark.parametrize("ext", ["mkv", "ts", "ps"])
def test_playback_of_matroska_mpegts_and_mpegps_segments(
    world: tuple[TestClient, Services], admin_token: str, make_video: VideoFactory, ext: str
) -> None:
    client, services = world
    for seed, offset in enumerate((0, 6)):
        video = make_video(_name(offset, ext), seconds=6, seed=seed, gop_seconds=2, fps=FPS)
        ingest_file(services, CAMERA_FRONT, video)
    response = client.get(
        f"/api/v1/cameras/{CAMERA_FRONT}/playback",
        params={"start": _at(4.5), "end": _at(12)},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-playback-start"] == "2026-11-20T09:00:04.000+08:00"
    assert json.loads(response.headers["x-playback-gaps"]) == []
    assert len(_frames(response.content)) == 8 * FPS


def test_playback_stops_where_the_resolution_changes(
    world: tuple[TestClient, Services], admin_token: str, make_video: VideoFactory
) -> None:
    client, services = world
    ingest_file(services, CAMERA_FRONT, make_video(_name(0), seconds=4, fps=FPS))
    bigger = make_video(_name(4), seconds=4, fps=FPS, width=640, height=480, scene=None)
    ingest_file(services, CAMERA_FRONT, bigger)
    auth = {"Authorization": f"Bearer {admin_token}"}
    params = {"start": _at(0), "end": _at(8)}
    response = client.get(f"/api/v1/cameras/{CAMERA_FRONT}/playback", params=params, headers=auth)
    assert response.status_code == 200, response.text
    assert response.headers["x-playback-continue-at"] == "2026-11-20T09:00:04.000+08:00"
    frames = _frames(response.content)
    assert len(frames) == 4 * FPS and {(f.width, f.height) for f in frames} == {(320, 240)}
    plan = client.get(
        f"/api/v1/cameras/{CAMERA_FRONT}/playback",
        params={**params, "format": "json"},
        headers=auth,
    ).json()
    assert plan["continue_at"] == "2026-11-20T09:00:04.000+08:00"
    assert "640x480" in plan["stop_reason"]


def test_sitting_playback_defaults_to_the_sitting_start(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, _, admin = footage
    response = client.get(
        "/api/v1/sittings/OWN-1/playback",
        params={"camera": CAMERA_FRONT, "format": "json"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["asked_start"] == "2026-11-20T09:00:00.000+08:00"
    assert plan["asked_end"] == "2026-11-20T10:00:00.000+08:00"
    assert plan["gaps"][-1]["end"] == "2026-11-20T10:00:00.000+08:00"


def test_playback_needs_instants_with_offsets(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, _, admin = footage
    response = client.get(
        f"/api/v1/cameras/{CAMERA_FRONT}/playback",
        params={"start": "2026-11-20T09:00:00", "end": _at(10)},
        headers=admin,
    )
    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


def test_supervisor_outside_the_window_is_403_with_the_windows(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, _ = footage
    supervisor = _supervisor(client, services)
    inside = client.get(
        f"/api/v1/cameras/{CAMERA_FRONT}/playback",
        params={"start": _at(0), "end": _at(10)},
        headers=supervisor,
    )
    assert inside.status_code == 200, inside.text
    outside = client.get(
        f"/api/v1/cameras/{CAMERA_FRONT}/playback",
        params={"start": _at(-600), "end": _at(10)},
        headers=supervisor,
    )
    assert outside.status_code == 403
    body = outside.json()
    assert body["code"] == "outside_assignment" and body["message_zh"] != body["message"]
    assert body["windows"] == [
        {"start": "2026-11-20T09:00:00.000+08:00", "end": "2026-11-20T10:00:00.000+08:00"}
    ]


def test_supervisor_playback_never_starts_before_the_window(
    world: tuple[TestClient, Services], admin_token: str, make_video: VideoFactory
) -> None:
    client, services = world
    # Keyframes at -3 s, -1 s and +1 s around the sitting's start.
    ingest_file(services, CAMERA_BACK, make_video(_name(-3), seconds=6, fps=FPS))
    params = {"start": _at(0), "end": _at(3)}
    path = f"/api/v1/cameras/{CAMERA_BACK}/playback"
    admin = client.get(path, params=params, headers={"Authorization": f"Bearer {admin_token}"})
    assert admin.headers["x-playback-start"] == "2026-11-20T08:59:59.000+08:00"
    supervisor = client.get(path, params=params, headers=_supervisor(client, services))
    assert supervisor.status_code == 200, supervisor.text
    assert supervisor.headers["x-playback-start"] == "2026-11-20T09:00:01.000+08:00"


def test_footage_out_of_scope_is_404(
    footage: tuple[TestClient, Services, dict[str, str]], make_video: VideoFactory
) -> None:
    client, services, _ = footage
    ingest_file(services, FOREIGN_CAMERAS[0], make_video(_name(0, tag="_far"), seconds=3))
    foreign_segment = _segment_ids(services, FOREIGN_CAMERAS[0])[0]
    supervisor = _supervisor(client, services)
    answers = [
        client.get(f"/api/v1/segments/{foreign_segment}/content", headers=supervisor),
        client.get("/api/v1/segments/999999/content", headers=supervisor),
        client.get(
            f"/api/v1/cameras/{FOREIGN_CAMERAS[0]}/playback",
            params={"start": _at(0), "end": _at(3)},
            headers=supervisor,
        ),
        client.get("/api/v1/sittings/FAR-1/segments", headers=supervisor),
        client.get(
            f"/api/v1/sittings/FAR-1/cameras/{FOREIGN_CAMERAS[0]}/thumbnails", headers=supervisor
        ),
        client.get(
            f"/api/v1/sittings/OWN-1/cameras/{FOREIGN_CAMERAS[0]}/thumbnails", headers=supervisor
        ),
    ]
    assert [r.status_code for r in answers] == [404] * 6
    assert {r.json()["code"] for r in answers} == {"not_found"}


def test_camera_hosts_read_no_footage(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, _ = footage
    _, token = services.db.run_write(
        lambda s: create_token(
            s, role="camera_host", name="host", cameras=[CAMERA_FRONT], actor="test"
        )
    )
    host = {"Authorization": f"Bearer {token}"}
    segment = _segment_ids(services)[0]
    answers = [
        client.get("/api/v1/sittings/OWN-1/segments", headers=host),
        client.get(f"/api/v1/segments/{segment}/content", headers=host),
        client.get(
            f"/api/v1/cameras/{CAMERA_FRONT}/playback",
            params={"start": _at(0), "end": _at(3)},
            headers=host,
        ),
    ]
    assert [r.status_code for r in answers] == [403, 403, 403]


def test_every_footage_read_is_in_the_ledger(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, _ = footage
    supervisor = _supervisor(client, services)
    segment = _segment_ids(services)[0]
    client.get(
        f"/api/v1/segments/{segment}/content", headers={**supervisor, "Range": "bytes=10-19"}
    )
    client.get(
        f"/api/v1/cameras/{CAMERA_FRONT}/playback",
        params={"start": _at(3.3), "end": _at(26)},
        headers=supervisor,
    )
    client.get(f"/api/v1/sittings/OWN-1/cameras/{CAMERA_FRONT}/thumbnails", headers=supervisor)

    (content,) = _ledger(services, "footage.content")
    assert (content.actor, content.subject_type, content.subject_id) == (
        "supervisor:zhang",
        "segment",
        str(segment),
    )
    assert json.loads(content.details)["range"] == [10, 19]
    (playback,) = _ledger(services, "footage.playback")
    details = json.loads(playback.details)
    assert playback.subject_id == CAMERA_FRONT and details["segments"] == _segment_ids(services)
    assert details["start"] == (START + timedelta(seconds=2)).isoformat()
    (strip,) = _ledger(services, "footage.thumbnails")
    assert json.loads(strip.details)["sitting"] == "OWN-1"


def test_thumbnails_are_cached_and_read_back(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, admin = footage
    path = f"/api/v1/sittings/OWN-1/cameras/{CAMERA_FRONT}/thumbnails"
    first = client.get(path, params={"every": 10}, headers=admin)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/jpeg"
    assert first.headers["x-thumbnail-cached"] == "false"
    strip = cv2.imdecode(np.frombuffer(first.content, np.uint8), cv2.IMREAD_COLOR)
    assert strip.shape[1] == 160 * 360 and strip.shape[0] == 120  # 1 h / 10 s tiles
    second = client.get(path, params={"every": 10}, headers=admin)
    assert second.headers["x-thumbnail-cached"] == "true"
    assert second.content == first.content
    cached = [key for key in services.store.keys(THUMBNAIL_PREFIX) if key.endswith(".jpg")]
    assert len(cached) == 1 and cached[0].startswith(f"{THUMBNAIL_PREFIX}OWN-1/{CAMERA_FRONT}/")


def test_thumbnail_index_gives_each_tile_its_instant_or_gap(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, _, admin = footage
    response = client.get(
        f"/api/v1/sittings/OWN-1/cameras/{CAMERA_FRONT}/thumbnails",
        params={"every": 10, "format": "json"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    tiles = response.json()["tiles"]
    assert len(tiles) == 360
    assert [(t["at"], t["shown_at"], t["gap"]) for t in tiles[:4]] == [
        ("2026-11-20T09:00:00.000+08:00", "2026-11-20T09:00:00.000+08:00", False),
        ("2026-11-20T09:00:10.000+08:00", "2026-11-20T09:00:10.000+08:00", False),
        ("2026-11-20T09:00:20.000+08:00", "2026-11-20T09:00:20.000+08:00", False),
        ("2026-11-20T09:00:30.000+08:00", None, True),
    ]
    assert tiles[3]["cause"] == "no_footage"


def test_new_footage_gives_a_new_strip(
    footage: tuple[TestClient, Services, dict[str, str]], make_video: VideoFactory
) -> None:
    client, services, admin = footage
    path = f"/api/v1/sittings/OWN-1/cameras/{CAMERA_FRONT}/thumbnails"
    before = client.get(path, headers=admin)
    ingest_file(services, CAMERA_FRONT, make_video(_name(60), seconds=4, seed=7, fps=FPS))
    after = client.get(path, headers=admin)
    assert after.headers["x-thumbnail-cached"] == "false"
    assert after.headers["etag"] != before.headers["etag"]
    index = client.get(path, params={"format": "json"}, headers=admin).json()
    assert index["tiles"][1]["shown_at"] == "2026-11-20T09:01:00.000+08:00"


def test_cached_strips_are_not_orphan_evidence_for_reconcile(
    footage: tuple[TestClient, Services, dict[str, str]],
) -> None:
    client, services, admin = footage
    client.get(f"/api/v1/sittings/OWN-1/cameras/{CAMERA_FRONT}/thumbnails", headers=admin)
    assert list(services.store.keys(THUMBNAIL_PREFIX))
    assert reconcile(services.db, services.store).blobs_without_rows == []


@pytest.fixture
def s3_footage(
    settings: Settings, s3_endpoint: str, make_video: VideoFactory
) -> Iterator[tuple[TestClient, Services, dict[str, str]]]:
    settings.storage_url = f"s3://ev-{uuid.uuid4().hex[:12]}?endpoint={s3_endpoint}&secure=false"
    settings.s3_access_key = ACCESS_KEY
    settings.s3_secret_key = SECRET_KEY
    init_blob_store(settings.storage_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    services = Services.from_settings(settings)
    try:
        services.db.run_write(lambda s: import_registry(s, json.dumps(REGISTRY), actor="test"))
        for seed, (offset, _) in enumerate(LAYOUT[:2]):
            video = make_video(_name(offset), seconds=6, seed=seed, fps=FPS)
            ingest_file(services, CAMERA_FRONT, video)
        _, token = services.db.run_write(
            lambda s: create_token(s, role="admin", name="centre", actor="test")
        )
        with TestClient(create_app(services)) as client:
            yield client, services, {"Authorization": f"Bearer {token}"}
    finally:
        services.close()


def test_content_range_from_s3(s3_footage: tuple[TestClient, Services, dict[str, str]]) -> None:
    client, services, admin = s3_footage
    assert services.store.local_path("any") is None  # really the S3 store
    segment = _segment_ids(services)[0]
    original = _original(services, segment)
    response = client.get(
        f"/api/v1/segments/{segment}/content", headers={**admin, "Range": "bytes=1000-"}
    )
    assert response.status_code == 206
    assert response.content == original[1000:]
    assert response.headers["content-range"] == f"bytes 1000-{len(original) - 1}/{len(original)}"


def test_playback_from_s3(s3_footage: tuple[TestClient, Services, dict[str, str]]) -> None:
    client, _, admin = s3_footage
    response = client.get(
        f"/api/v1/cameras/{CAMERA_FRONT}/playback",
        params={"start": _at(1), "end": _at(12)},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-playback-start"] == "2026-11-20T09:00:00.000+08:00"
    assert len(_frames(response.content)) == 12 * FPS
