"""POST /api/v1/sittings/{code}/exports: who may export, the JSON errors, the ledger entry, a
package that verifies, a stream cut on damaged bytes, and a response that starts before the
footage is read (a real server, since the test client buffers whole responses)."""

from __future__ import annotations

import io
import json
import stat
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.access.people import assign, create_user
from services.access.tokens import create_token
from services.api.app import create_app
from services.context import Services
from services.evidence.package import MANIFEST, TrustedKey, verify_package
from services.ledger.keys import load_or_create_signer
from storage.blobs import BlobStore
from storage.models import LedgerEntry, Segment
from tests.conftest import CAMERA_FRONT, VideoFactory
from tests.evidence.test_exports import SITTING, Footage, record_sitting_with_footage
from tests.processes import free_port

URL = f"/api/v1/sittings/{SITTING}/exports"
PASSWORD = "correct horse battery"
BODY = {"reason": "质量督导抽查 quality review"}


@pytest.fixture
def footage(registered: Services, make_video: VideoFactory) -> Footage:
    return record_sitting_with_footage(registered, make_video)


@pytest.fixture
def client(registered: Services, footage: Footage) -> Iterator[TestClient]:
    with TestClient(create_app(registered)) as test_client:
        yield test_client


def _token(services: Services, role: str, **extra: object) -> dict[str, str]:
    _, plaintext = services.db.run_write(
        lambda session: create_token(session, role=role, name=f"t-{role}", actor="test", **extra)
    )
    return {"Authorization": f"Bearer {plaintext}"}


def _person(client: TestClient, services: Services, name: str, role: str, **extra: str) -> dict:
    services.db.run_write(
        lambda s: create_user(s, name=name, role=role, password=PASSWORD, actor="test", **extra)
    )
    answer = client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _exports(services: Services) -> list[LedgerEntry]:
    with services.db.read() as session:
        return list(
            session.scalars(select(LedgerEntry).where(LedgerEntry.action == "export.created"))
        )


def test_admin_export_is_a_zip_attachment_that_verifies(
    client: TestClient, registered: Services, footage: Footage, tmp_path: Path
) -> None:
    response = client.post(URL, json=BODY, headers=_token(registered, "admin"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="examvault-EX-2026-001-')
    package = tmp_path / "package.zip"
    package.write_bytes(response.content)
    centre = load_or_create_signer(registered.settings.data_dir)
    verdict = verify_package(package, TrustedKey.of(centre.public_key))
    assert verdict.verified, [check.line() for check in verdict.failed]

    (entry,) = _exports(registered)
    assert entry.actor == "admin:t-admin" and entry.subject_id == SITTING
    assert str(entry.seq) == response.headers["x-export-ledger-seq"]
    details = json.loads(entry.details)
    assert details["reason"] == BODY["reason"]
    assert sorted(details["segments"]) == sorted(footage.originals)
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read(MANIFEST))
    assert manifest["export"]["ledger_seq"] == entry.seq
    assert manifest["export"]["id"] == response.headers["x-export-id"]


def test_assigned_supervisor_exports_and_a_foreign_sitting_is_404(
    client: TestClient, registered: Services
) -> None:
    auth = _person(client, registered, "zhang", "supervisor")
    assert client.post(URL, json=BODY, headers=auth).status_code == 404  # not assigned yet
    now = datetime.now(UTC)
    registered.db.run_write(
        lambda s: assign(
            s,
            user_name="zhang",
            sitting_code=SITTING,
            valid_from=now - timedelta(hours=1),
            valid_until=now + timedelta(hours=1),
            actor="test",
        )
    )
    assert client.post(URL, json=BODY, headers=auth).status_code == 200
    assert [e.actor for e in _exports(registered)] == ["supervisor:zhang"]
    officer = _person(client, registered, "wang", "district_officer", district="江北区")
    foreign = client.post(URL, json=BODY, headers=officer)
    assert (foreign.status_code, foreign.json()["code"]) == (404, "not_found")
    missing = client.post("/api/v1/sittings/NOPE/exports", json=BODY, headers=auth)
    assert missing.status_code == 404


def test_institution_and_camera_host_are_403(client: TestClient, registered: Services) -> None:
    institution = _person(client, registered, "jigou", "institution", institution_code="T1")
    refused = client.post(URL, json=BODY, headers=institution)
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert refused.json()["message_zh"]
    host = _token(registered, "camera_host", cameras=[CAMERA_FRONT])
    assert client.post(URL, json=BODY, headers=host).status_code == 403
    assert client.post(URL, json=BODY).status_code == 401
    assert _exports(registered) == []


@pytest.mark.parametrize(
    "body",
    [None, {}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}, {"reason": 7}],
    ids=["no-body", "no-reason", "empty", "blank", "too-long", "not-text"],
)
def test_a_reason_is_required(
    client: TestClient, registered: Services, body: dict[str, object] | None
) -> None:
    response = client.post(URL, json=body, headers=_token(registered, "admin"))
    assert response.status_code == 400
    answer = response.json()
    assert answer["code"] == "invalid_request" and answer["message"] and answer["message_zh"]
    assert _exports(registered) == []


def _blob(services: Services, segment_id: int) -> Path:
    with services.db.read() as session:
        path = services.store.local_path(session.get_one(Segment, segment_id).blob_key)
    assert path is not None
    return path


def test_missing_blob_is_a_json_500_before_streaming(
    client: TestClient, registered: Services, footage: Footage
) -> None:
    _blob(registered, min(footage.originals)).unlink()
    response = client.post(URL, json=BODY, headers=_token(registered, "admin"))
    assert response.status_code == 500
    assert response.json()["code"] == "evidence_missing" and response.json()["message_zh"]
    assert _exports(registered) == []


def test_damaged_bytes_cut_the_stream(registered: Services, footage: Footage) -> None:
    blob = _blob(registered, max(footage.originals))
    blob.chmod(stat.S_IRUSR | stat.S_IWUSR)
    data = bytearray(blob.read_bytes())
    data[200] ^= 0xFF
    blob.write_bytes(bytes(data))
    with TestClient(create_app(registered), raise_server_exceptions=False) as client:
        response = client.post(URL, json=BODY, headers=_token(registered, "admin"))
    assert response.status_code == 200  # the headers were gone before the damage was found
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(response.content))
    with registered.db.read() as session:
        actions = list(session.scalars(select(LedgerEntry.action).order_by(LedgerEntry.seq)))
    assert actions[-3:] == ["export.created", "export.aborted", "export.interrupted"]


class _GatedStore:
    """The real store, whose reads wait for `gate`: if the response's first bytes arrive while
    it is shut, they were sent before any footage was read."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.gate = threading.Event()

    def read(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        yield from self.inner.read(key, start, length)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_the_response_starts_before_any_footage_is_read(
    registered: Services, footage: Footage
) -> None:
    gated = _GatedStore(registered.store)
    registered.store = gated  # type: ignore[assignment]
    auth = _token(registered, "admin")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(registered), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(100):
                if server.started:
                    break
                threading.Event().wait(0.05)
            with http.stream("POST", URL, json=BODY, headers=auth) as response:
                assert response.status_code == 200
                chunks = response.iter_bytes()
                first = next(chunks)
                assert first.startswith(b"PK") and not gated.gate.is_set()
                gated.gate.set()
                body = first + b"".join(chunks)
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            assert archive.testzip() is None
            assert len([n for n in archive.namelist() if n.startswith("segments/")]) == len(
                footage.originals
            )
    finally:
        gated.gate.set()
        server.should_exit = True
        thread.join(timeout=30)
