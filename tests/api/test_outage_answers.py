"""Failures that are not the request's fault are answered in the one error shape: an outage
(store, database, disk) 503 with a code and Retry-After, anything else JSON 500, never the
plain-text "Internal Server Error". The real faults are in tests/faults/."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.access.tokens import create_token
from services.api.app import create_app
from services.context import Services
from storage.blobs import StoreUnavailable
from storage.db import DatabaseUnavailable
from tests.conftest import CAMERA_FRONT

URL = f"/api/v1/ingest/{CAMERA_FRONT}/20261124T090000+0800.mp4"


@pytest.fixture
def client(registered: Services) -> Iterator[TestClient]:
    with TestClient(create_app(registered), raise_server_exceptions=False) as test_client:
        _, token = registered.db.run_write(
            lambda s: create_token(
                s, role="camera_host", name="host", cameras=[CAMERA_FRONT], actor="test"
            )
        )
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (StoreUnavailable("the object store did not answer"), "store_unavailable"),
        (DatabaseUnavailable("the database did not answer"), "database_unavailable"),
        (OSError(errno.ENOSPC, "No space left on device"), "disk_full"),
    ],
)
def test_an_outage_after_the_body_arrived_is_503_kept_with_retry_after(
    client: TestClient,
    registered: Services,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    code: str,
) -> None:
    def fail(*_: object, **__: object) -> None:
        raise failure

    monkeypatch.setattr(registered.pipeline, "ingest", fail)
    response = client.put(URL, content=b"bytes of a recording")
    assert response.status_code == 503
    body = response.json()
    assert (body["code"], body["kept"]) == (code, True)
    assert body["message_zh"]
    assert response.headers["retry-after"] == str(registered.settings.outage_retry_seconds)
    # Kept for the worker: the complete body and its sidecar.
    kept = sorted(path.suffix for path in registered.settings.incoming_dir.iterdir())
    assert kept == [".bin", ".json"]


def test_an_unexpected_error_is_json_500(
    client: TestClient, registered: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(registered.pipeline, "ingest", fail)
    response = client.put(URL, content=b"bytes of a recording")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
