"""EXAMVAULT_FOOTAGE_OFFLOAD: a segment's bytes leave through the proxy (X-Accel-Redirect to an
internal nginx location over the local store) or the object store (a presigned GET on S3),
after the same scope check and with the same ledger entry first. nginx itself in front of a
real `serve` is tests/deploy/test_nginx.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.access.tokens import create_token
from services.api.app import create_app
from services.context import Services
from services.registry import import_registry
from services.settings import Settings
from storage.models import LedgerEntry, Segment
from storage.stores import init_blob_store
from tests.api.conftest import START, assign_now, ingest_file, login, make_user
from tests.conftest import CAMERA_FRONT, REGISTRY, VideoFactory
from tests.s3server import ACCESS_KEY, SECRET_KEY

Footage = tuple[TestClient, Services, dict[str, str], int]


def _name(offset: float) -> str:
    return f"{START + timedelta(seconds=offset):%Y%m%dT%H%M%S}Z.mp4"


def _segment(services: Services, segment_id: int) -> Segment:
    with services.db.read() as session:
        segment = session.get(Segment, segment_id)
        assert segment is not None
        return segment


def _content_reads(services: Services) -> list[LedgerEntry]:
    with services.db.read() as session:
        return list(
            session.scalars(select(LedgerEntry).where(LedgerEntry.action == "footage.content"))
        )


@pytest.fixture
def offloaded(
    world: tuple[TestClient, Services], admin_token: str, make_video: VideoFactory
) -> Footage:
    client, services = world
    services.settings.footage_offload = True
    ingest_file(services, CAMERA_FRONT, make_video(_name(0), seconds=4, seed=1))
    with services.db.read() as session:
        (segment_id,) = session.scalars(select(Segment.id))
    return client, services, {"Authorization": f"Bearer {admin_token}"}, segment_id


def test_local_store_answers_with_x_accel_redirect_after_the_ledger_entry(
    offloaded: Footage,
) -> None:
    client, services, _, segment_id = offloaded
    make_user(services, "zhang", "supervisor")
    assign_now(services, "zhang", "OWN-1")
    supervisor = login(client, "zhang")
    segment = _segment(services, segment_id)

    response = client.get(
        f"/api/v1/segments/{segment_id}/content", headers={**supervisor, "Range": "bytes=10-19"}
    )

    assert response.status_code == 200 and response.content == b""
    assert response.headers["x-accel-redirect"] == f"/_examvault/objects/{segment.blob_key}"
    assert response.headers["etag"] == f'"{segment.sha256}"'
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["cache-control"] == "private, no-cache"
    (entry,) = _content_reads(services)
    assert entry.actor == "supervisor:zhang" and entry.subject_id == str(segment_id)
    assert json.loads(entry.details)["range"] == [10, 19]


def test_offload_keeps_the_scope_check(offloaded: Footage) -> None:
    client, services, _, segment_id = offloaded
    make_user(services, "li", "supervisor")  # assigned to nothing
    outsider = login(client, "li")
    response = client.get(f"/api/v1/segments/{segment_id}/content", headers=outsider)
    assert response.status_code == 404
    assert "x-accel-redirect" not in response.headers
    assert _content_reads(services) == []


def test_offload_still_answers_revalidation_itself(offloaded: Footage) -> None:
    client, services, admin, segment_id = offloaded
    etag = f'"{_segment(services, segment_id).sha256}"'
    response = client.get(
        f"/api/v1/segments/{segment_id}/content", headers={**admin, "If-None-Match": etag}
    )
    assert response.status_code == 304 and "x-accel-redirect" not in response.headers
    (entry,) = _content_reads(services)
    assert json.loads(entry.details)["not_modified"] is True


def test_offload_is_off_by_default(world: tuple[TestClient, Services]) -> None:
    _, services = world
    assert services.settings.footage_offload is False


@pytest.fixture
def s3_offloaded(
    settings: Settings, s3_endpoint: str, make_video: VideoFactory
) -> Iterator[Footage]:
    settings.storage_url = f"s3://ev-{uuid.uuid4().hex[:12]}?endpoint={s3_endpoint}&secure=false"
    settings.s3_access_key = ACCESS_KEY
    settings.s3_secret_key = SECRET_KEY
    settings.footage_offload = True
    settings.footage_presign_seconds = 30
    init_blob_store(settings.storage_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    services = Services.from_settings(settings)
    try:
        services.db.run_write(lambda s: import_registry(s, json.dumps(REGISTRY), actor="test"))
        ingest_file(services, CAMERA_FRONT, make_video(_name(0), seconds=4, seed=2))
        with services.db.read() as session:
            (segment_id,) = session.scalars(select(Segment.id))
        _, token = services.db.run_write(
            lambda s: create_token(s, role="admin", name="centre", actor="test")
        )
        with TestClient(create_app(services)) as client:
            yield client, services, {"Authorization": f"Bearer {token}"}, segment_id
    finally:
        services.close()


def test_s3_store_redirects_to_a_short_lived_presigned_get(s3_offloaded: Footage) -> None:
    client, services, admin, segment_id = s3_offloaded
    segment = _segment(services, segment_id)
    original = b"".join(services.store.read(segment.blob_key))

    response = client.get(
        f"/api/v1/segments/{segment_id}/content",
        headers={**admin, "Range": "bytes=100-"},
        follow_redirects=False,
    )

    assert response.status_code == 302
    assert response.headers["cache-control"] == "no-store"
    location = response.headers["location"]
    query = parse_qs(urlsplit(location).query)
    assert query["X-Amz-Expires"] == ["30"]
    assert query["response-content-type"] == ["video/mp4"]
    (entry,) = _content_reads(services)
    assert json.loads(entry.details)["range"] == [100, len(original) - 1]
    # The client repeats its Range at the store, which serves it without our credentials.
    fetched = httpx.get(location, headers={"Range": "bytes=100-"}, timeout=10)
    assert fetched.status_code == 206 and fetched.content == original[100:]


def test_presigned_reads_name_the_address_clients_reach(s3_endpoint: str) -> None:
    bucket = f"ev-{uuid.uuid4().hex[:12]}"
    url = (
        f"s3://{bucket}?endpoint={s3_endpoint}&secure=false&region=us-east-1"
        "&presign_endpoint=objects.example.cn&presign_secure=true"
    )
    store, _ = init_blob_store(url, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    signed = store.presigned_read_url(
        "segments/ab/cd.mp4", expires=timedelta(seconds=60), response_headers={}
    )
    assert signed is not None
    assert signed.startswith(f"https://objects.example.cn/{bucket}/segments/ab/cd.mp4?")
