"""deploy/nginx/examvault.conf: it passes `nginx -t` (Debian's nginx), and in front of a real
`examvault serve` with EXAMVAULT_FOOTAGE_OFFLOAD a segment pushed through it comes back
through it by Range from nginx's internal location, with the ledger entry written first; the
internal location itself is not reachable from outside."""

from __future__ import annotations

import hashlib
import json
import signal
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import LedgerEntry, Segment
from tests.conftest import CAMERA_FRONT, REGISTRY, STRICT, VideoFactory
from tests.nginx import (
    Tls,
    check_config,
    nginx_missing,
    render_objects,
    render_site,
    running_nginx,
    self_signed,
)
from tests.processes import examvault_env, free_port, run_cli, spawn, wait_for_health


@pytest.fixture
def nginx_here() -> None:
    missing = nginx_missing()
    if missing is None:
        return
    if STRICT:
        pytest.fail(f"{missing}; CI must check the nginx configuration")
    pytest.skip(missing)


def test_deployed_configuration_passes_nginx_t(nginx_here: None, tmp_path: Path) -> None:
    tls = self_signed(tmp_path / "tls")
    https_port = free_port()
    site = render_site(
        upstreams=["127.0.0.1:18000", "127.0.0.1:18001"],
        objects_dir=tmp_path / "objects",
        http_port=free_port(),
        https_port=https_port,
        tls=tls,
    )
    # The object store's server (presigned reads) shares the TLS port, by server_name.
    objects = render_objects(upstream="127.0.0.1:17480", https_port=https_port, tls=tls)
    checked = check_config(tmp_path / "nginx", site + "\n" + objects)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_a_broken_configuration_fails_nginx_t(nginx_here: None, tmp_path: Path) -> None:
    """The check can fail: nginx -t really reads the file."""
    site = render_site(
        upstreams=["127.0.0.1:18000"],
        objects_dir=tmp_path / "objects",
        http_port=free_port(),
        https_port=free_port(),
        tls=self_signed(tmp_path / "tls"),
    )
    checked = check_config(tmp_path / "nginx", site.replace("internal;", "internal_only;"))
    assert checked.returncode != 0 and "internal_only" in checked.stderr


@dataclass(frozen=True)
class Fronted:
    base: str  # nginx, https
    tls: Tls
    env: dict[str, str]
    database_url: str


@pytest.fixture
def fronted(nginx_here: None, tmp_path: Path, database_url: str) -> Iterator[Fronted]:
    data_dir = tmp_path / "var"
    env = examvault_env(data_dir, database_url, EXAMVAULT_FOOTAGE_OFFLOAD="true")
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(REGISTRY, ensure_ascii=False), encoding="utf-8")
    imported = run_cli(env, "registry", "import", str(registry))
    assert imported.returncode == 0, imported.stderr
    api_port, https_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    process = spawn(env, "serve", "--port", str(api_port), log=log)
    tls = self_signed(tmp_path / "tls")
    site = render_site(
        upstreams=[f"127.0.0.1:{api_port}"],
        objects_dir=data_dir / "objects",
        http_port=free_port(),
        https_port=https_port,
        tls=tls,
    )
    try:
        wait_for_health(f"http://127.0.0.1:{api_port}", process, log)
        with running_nginx(tmp_path / "nginx", site, https_port) as base:
            yield Fronted(base=base, tls=tls, env=env, database_url=database_url)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()


def _token(env: dict[str, str], *args: str) -> str:
    created = run_cli(env, "token", "create", *args)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def _rows(database_url: str) -> tuple[list[Segment], list[LedgerEntry]]:
    db = Database(database_url)
    try:
        with db.read() as session:
            segments = list(session.scalars(select(Segment)))
            reads = list(
                session.scalars(select(LedgerEntry).where(LedgerEntry.action == "footage.content"))
            )
            return segments, reads
    finally:
        db.dispose()


def test_range_read_through_nginx_is_served_by_nginx_after_the_ledger_entry(
    fronted: Fronted, make_video: VideoFactory, tmp_path: Path
) -> None:
    host = _token(fronted.env, "--role", "camera_host", "--cameras", CAMERA_FRONT)
    video = tmp_path / "host" / "20261124T090000+0800_front.mp4"
    video.parent.mkdir()
    video.write_bytes(make_video("front.mp4", seconds=3, seed=4).read_bytes())
    original = video.read_bytes()
    # The camera-host client uploads through the proxy (TLS, unbuffered ingest location).
    pushed = run_cli(
        {**fronted.env, "SSL_CERT_FILE": str(fronted.tls.cert)},
        "push",
        "--server",
        fronted.base,
        "--token",
        host,
        "--camera",
        CAMERA_FRONT,
        str(video),
    )
    assert pushed.returncode == 0, pushed.stderr
    (segment,), reads = _rows(fronted.database_url)
    assert reads == []
    admin = _token(fronted.env, "--role", "admin", "--name", "reviewer")

    trust = ssl.create_default_context(cafile=str(fronted.tls.cert))
    with httpx.Client(base_url=fronted.base, verify=trust, timeout=30) as client:
        response = client.get(
            f"/api/v1/segments/{segment.id}/content",
            headers={"Authorization": f"Bearer {admin}", "Range": "bytes=1000-4999"},
        )
        assert response.status_code == 206, response.text
        assert response.content == original[1000:5000]
        assert response.headers["content-range"] == f"bytes 1000-4999/{len(original)}"
        assert response.headers["etag"] == f'"{hashlib.sha256(original).hexdigest()}"'
        assert response.headers["cache-control"] == "private, no-cache"
        assert response.headers["content-type"] == "video/mp4"
        assert response.headers["content-disposition"] == (
            f'inline; filename="segment-{segment.id}.mp4"'
        )
        assert "x-accel-redirect" not in response.headers

        _, reads = _rows(fronted.database_url)
        (entry,) = reads
        assert entry.subject_id == str(segment.id)
        assert json.loads(entry.details)["range"] == [1000, 4999]

        # The whole file, and If-Range with the API's ETag still gives the range.
        whole = client.get(
            f"/api/v1/segments/{segment.id}/content", headers={"Authorization": f"Bearer {admin}"}
        )
        assert whole.status_code == 200 and whole.content == original
        again = client.get(
            f"/api/v1/segments/{segment.id}/content",
            headers={
                "Authorization": f"Bearer {admin}",
                "Range": "bytes=-100",
                "If-Range": response.headers["etag"],
            },
        )
        assert again.status_code == 206 and again.content == original[-100:]

        # Without a token: refused by the API, nothing from the internal location.
        refused = client.get(f"/api/v1/segments/{segment.id}/content")
        assert refused.status_code == 401 and refused.content != original
        # Asked for directly, the internal location does not exist.
        direct = client.get(f"/_examvault/objects/{segment.blob_key}")
        assert direct.status_code == 404 and original[:100] not in direct.content
    _, reads = _rows(fronted.database_url)
    assert len(reads) == 3
