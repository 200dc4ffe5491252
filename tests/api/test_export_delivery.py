"""How an export ended, in the ledger and at the client (issue 11, hole 17), against a real
`examvault serve`: a package taken to its last byte is `export.delivered`; a client that goes
away, a stream cut by damaged bytes, and a server SIGKILLed mid-stream are each
`export.interrupted` (the last one found at the next start-up), with the bytes sent; and a
failed stream ends without its terminating chunk, so the client sees an incomplete transfer.

The footage is random bytes under segment rows (an export streams bytes, it decodes nothing),
large enough that a stalled client fills the socket buffers and holds the server mid-stream."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from services.access.tokens import create_token
from services.context import Services
from services.registry import import_registry
from services.settings import load_settings
from storage import ledger
from storage.db import Database
from storage.models import LedgerEntry, Segment
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY, import_sitting
from tests.processes import examvault_env, free_port, spawn, wait_for_health, wait_until
from tests.reliability import Reliability
from tests.retention.test_purge import SegmentSpec, make_segments

SITTING = "EXD-2026-001"
START = datetime(2026, 11, 24, 1, tzinfo=UTC)
MiB = 1024 * 1024
# Per segment; two segments, well past what loopback socket buffers hold.
BLOB = 12 * MiB
BODY = {"reason": "督导抽查 delivery test"}


@dataclass
class Server:
    env: dict[str, str]
    data_dir: Path
    database_url: str
    log: Path
    token: str
    process: subprocess.Popen[bytes] | None = None
    base_url: str = ""

    def start(self) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.process = spawn(
            self.env, "serve", "--host", "127.0.0.1", "--port", str(port), log=self.log
        )
        wait_for_health(self.base_url, self.process, self.log)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def url(self) -> str:
        return f"{self.base_url}/api/v1/sittings/{SITTING}/exports"


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    data_dir = tmp_path / "var"
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    services = Services.from_settings(settings)
    try:
        services.db.run_write(
            lambda session: import_registry(session, json.dumps(REGISTRY), actor="test")
        )
        import_sitting(services, SITTING, START, START + timedelta(minutes=20))
        keep = datetime.now(UTC) + timedelta(days=3 * 366)
        make_segments(
            services,
            [
                SegmentSpec(CAMERA_FRONT, START, START + timedelta(minutes=20), keep),
                SegmentSpec(CAMERA_BACK, START, START + timedelta(minutes=20), keep),
            ],
            tmp_path / "blobs",
            size=BLOB,
        )
        _, token = services.db.run_write(
            lambda session: create_token(session, role="admin", name="exporter", actor="test")
        )
    finally:
        services.close()
    env = examvault_env(data_dir, database_url, EXAMVAULT_HEALTH_CHECKS="false")
    running = Server(env, data_dir, database_url, tmp_path / "serve.log", token)
    running.start()
    yield running
    running.stop()


def _outcomes(database_url: str) -> list[tuple[str, dict]]:
    """The export entries in ledger order: (action, details)."""
    db = Database(database_url)
    try:
        with db.read() as session:
            rows = session.execute(
                select(LedgerEntry.action, LedgerEntry.details)
                .where(LedgerEntry.action.like("export.%"))
                .order_by(LedgerEntry.seq)
            ).all()
            assert ledger.verify(session).ok
    finally:
        db.dispose()
    return [(action, json.loads(details)) for action, details in rows]


def _footage_intact(
    database_url: str, data_dir: Path, *, damaged: str | None = None
) -> tuple[int, int]:
    """(segments, of which readable with their recorded SHA-256): nothing an export does may
    change a byte of evidence. A blob the test damaged itself is left out."""
    import hashlib

    db = Database(database_url)
    try:
        with db.read() as session:
            rows = session.execute(
                select(Segment.blob_key, Segment.sha256).where(Segment.blob_key != (damaged or ""))
            ).all()
    finally:
        db.dispose()
    intact = sum(
        hashlib.sha256((data_dir / "objects" / key).read_bytes()).hexdigest() == sha256
        for key, sha256 in rows
    )
    return len(rows), intact


def test_a_package_taken_to_the_last_byte_is_ledgered_delivered(
    server: Server, reliability: Reliability
) -> None:
    with httpx.Client(timeout=60) as client:
        response = client.post(server.url, json=BODY, headers=server.headers)
    assert response.status_code == 200
    export_id = response.headers["x-export-id"]
    wait_until(lambda: len(_outcomes(server.database_url)) >= 2, timeout=30)
    outcomes = _outcomes(server.database_url)
    assert [action for action, _ in outcomes] == ["export.created", "export.delivered"]
    delivered = outcomes[1][1]
    assert delivered["export_id"] == export_id
    assert delivered["bytes_sent"] == len(response.content)
    assert delivered["export_seq"] == int(response.headers["x-export-ledger-seq"])
    segments, intact = _footage_intact(server.database_url, server.data_dir)
    reliability.record(
        "faults",
        "export streamed to the end",
        tries=1,
        acknowledged=segments,
        lost=segments - intact,
        answers={"200 complete": 1, "export.delivered": 1},
    )


def test_a_client_that_goes_away_is_ledgered_interrupted(
    server: Server, reliability: Reliability
) -> None:
    received = 0
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", server.url, json=BODY, headers=server.headers) as response,
    ):
        assert response.status_code == 200
        export_id = response.headers["x-export-id"]
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > 2 * MiB:
                break  # leaving the block closes the connection mid-package
    wait_until(lambda: len(_outcomes(server.database_url)) >= 2, timeout=30)
    outcomes = _outcomes(server.database_url)
    assert [action for action, _ in outcomes] == ["export.created", "export.interrupted"]
    interrupted = outcomes[1][1]
    assert interrupted["export_id"] == export_id
    assert received <= interrupted["bytes_sent"] < 2 * BLOB, (received, interrupted)
    assert "client went away" in interrupted["cause"]
    segments, intact = _footage_intact(server.database_url, server.data_dir)
    reliability.record(
        "faults",
        "export client disconnects mid-package",
        tries=1,
        acknowledged=segments,
        lost=segments - intact,
        answers={"200 then closed by the client": 1, "export.interrupted": 1},
    )


def test_a_failed_stream_ends_without_its_terminating_chunk(
    server: Server, reliability: Reliability
) -> None:
    db = Database(server.database_url)
    try:
        with db.read() as session:
            key = session.scalars(select(Segment.blob_key).order_by(Segment.id.desc())).first()
    finally:
        db.dispose()
    assert key is not None
    blob = server.data_dir / "objects" / key
    blob.chmod(0o600)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    received = 0
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", server.url, json=BODY, headers=server.headers) as response,
    ):
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            for chunk in response.iter_bytes():
                received += len(chunk)
    wait_until(lambda: len(_outcomes(server.database_url)) >= 3, timeout=30)
    actions = [action for action, _ in _outcomes(server.database_url)]
    assert actions == ["export.created", "export.aborted", "export.interrupted"]
    interrupted = _outcomes(server.database_url)[2][1]
    assert interrupted["bytes_sent"] == received
    assert "the stream failed" in interrupted["cause"]
    segments, intact = _footage_intact(server.database_url, server.data_dir, damaged=key)
    reliability.record(
        "faults",
        "export stream cut by damaged bytes",
        tries=1,
        acknowledged=segments,
        lost=segments - intact,
        answers={"200 then incomplete chunked body": 1, "export.interrupted": 1},
    )


def test_sigkill_mid_export_is_ledgered_interrupted_at_the_next_start(
    server: Server, reliability: Reliability
) -> None:
    received = 0
    client_saw: str = ""
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", server.url, json=BODY, headers=server.headers) as response,
    ):
        assert response.status_code == 200
        export_id = response.headers["x-export-id"]
        chunks = response.iter_raw()
        received += len(next(chunks))
        # The client stops reading: the server fills the socket buffers and waits, mid-stream.
        time.sleep(1.0)
        server.kill()
        try:
            for chunk in chunks:
                received += len(chunk)
        except httpx.HTTPError as exc:
            client_saw = type(exc).__name__
    assert client_saw, "the client saw a clean end of a package the server never finished"
    assert [action for action, _ in _outcomes(server.database_url)] == ["export.created"]

    server.start()
    outcomes = _outcomes(server.database_url)
    assert [action for action, _ in outcomes] == ["export.created", "export.interrupted"]
    interrupted = outcomes[1][1]
    assert interrupted["export_id"] == export_id
    assert "ended during the stream" in interrupted["cause"]
    assert interrupted["bytes_sent"] <= received < 2 * BLOB
    segments, intact = _footage_intact(server.database_url, server.data_dir)
    reliability.record(
        "crashes",
        "SIGKILL of serve mid-export, then a restart",
        tries=1,
        acknowledged=segments,
        lost=segments - intact,
        answers={f"client: {client_saw}": 1, "export.interrupted at restart": 1},
    )
