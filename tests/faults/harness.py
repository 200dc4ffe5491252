"""A real `examvault serve` for the fault tests, and what a camera host and an operator do to
it: push segments, poll /healthz and /readyz, read the evidence back, verify the ledger."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.access.tokens import create_token
from services.registry import import_registry
from storage.db import Database
from tests.conftest import REGISTRY
from tests.processes import examvault_env, free_port, run_cli, spawn, wait_for_health

# Short bounds so a fault shows within a second or two; the defaults are in services/settings.py.
FAST_FAULTS = {
    "EXAMVAULT_HEALTH_CHECKS": "false",
    "EXAMVAULT_READINESS_INTERVAL_SECONDS": "0.5",
    "EXAMVAULT_S3_CONNECT_TIMEOUT_SECONDS": "1",
    "EXAMVAULT_S3_READ_TIMEOUT_SECONDS": "2",
    "EXAMVAULT_S3_RETRIES": "1",
    "EXAMVAULT_DATABASE_CONNECT_TIMEOUT_SECONDS": "2",
    "EXAMVAULT_DATABASE_POOL_TIMEOUT_SECONDS": "3",
    "EXAMVAULT_OUTAGE_RETRY_SECONDS": "1",
    "EXAMVAULT_WRITE_FAILURE_WINDOW_SECONDS": "2",
    "EXAMVAULT_MIN_FREE_BYTES": "0",
    "EXAMVAULT_METRICS_TOKEN": "fault-tests-scraper-0123456789",
}
# What Prometheus sends: /metrics is off without EXAMVAULT_METRICS_TOKEN (docs/operations.md).
SCRAPER = {"Authorization": f"Bearer {FAST_FAULTS['EXAMVAULT_METRICS_TOKEN']}"}
OUTAGE_CODES = {"store_unavailable", "database_unavailable", "disk_full"}
# /healthz's worst answer during a fault, measured from a client in the busy test process on a
# shared 2-core machine (typically under 0.5 s; before the fix it did not answer at all).
HEALTHZ_BOUND_SECONDS = 1.5


@dataclass
class Answer:
    status: int
    code: str | None
    body: dict[str, object]
    retry_after: str | None
    content_type: str
    seconds: float


@dataclass
class Server:
    base_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    admin: dict[str, str]
    host: dict[str, str]
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def push(self, camera: str, name: str, data: bytes) -> Answer:
        started = time.monotonic()
        response = self.client.put(
            f"{self.base_url}/api/v1/ingest/{camera}/{name}",
            content=data,
            headers={**self.host, "X-Content-SHA256": hashlib.sha256(data).hexdigest()},
        )
        return _answer(response, time.monotonic() - started)

    def readyz(self, timeout: float = 5) -> httpx.Response:
        # As the operator's scraper asks: the problems are shown only with its token.
        return self.client.get(f"{self.base_url}/readyz", headers=SCRAPER, timeout=timeout)

    def wait_readiness(self, ready: bool, timeout: float = 30) -> tuple[float, httpx.Response]:
        """Seconds until /readyz says `ready` (200) or not (503), and that answer."""
        started = time.monotonic()
        while True:
            response = self.readyz()
            if (response.status_code == 200) == ready:
                return time.monotonic() - started, response
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"/readyz did not turn {'ready' if ready else 'unready'} within {timeout} s: "
                    f"{response.status_code} {response.text}"
                )
            time.sleep(0.1)

    def metrics(self) -> str:
        response = self.client.get(f"{self.base_url}/metrics", headers=SCRAPER, timeout=10)
        assert response.status_code == 200, response.text
        return response.text

    def read_segment(self, segment_id: object) -> bytes:
        response = self.client.get(
            f"{self.base_url}/api/v1/segments/{segment_id}/content", headers=self.admin
        )
        assert response.status_code == 200, response.text
        return response.content


def _answer(response: httpx.Response, seconds: float) -> Answer:
    content_type = response.headers.get("content-type", "")
    try:
        body = response.json()
    except ValueError:
        body = {}
    return Answer(
        status=response.status_code,
        code=body.get("code") if isinstance(body, dict) else None,
        body=body if isinstance(body, dict) else {},
        retry_after=response.headers.get("retry-after"),
        content_type=content_type,
        seconds=seconds,
    )


def prepare_database(database_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """Schema, registry and two tokens (camera host for both cameras, admin): the bearer
    headers. Made in this process: every process start costs seconds on a loaded machine."""
    db = Database(database_url)
    db.upgrade()
    db.run_write(lambda session: import_registry(session, json.dumps(REGISTRY), actor="test"))
    cameras = [
        camera["code"] for camera in REGISTRY["institutions"][0]["sites"][0]["rooms"][0]["cameras"]
    ]
    _, host = db.run_write(
        lambda s: create_token(s, role="camera_host", name="host", cameras=cameras, actor="test")
    )
    _, admin = db.run_write(lambda s: create_token(s, role="admin", name="centre", actor="test"))
    db.dispose()
    return {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {host}"}


@contextmanager
def serving(
    tmp_path: Path, database_url: str, data_dir: Path | None = None, **extra: str
) -> Iterator[Server]:
    """`examvault serve` on a free port with FAST_FAULTS and `extra`; killed at the end."""
    admin, host = prepare_database(database_url)
    port = free_port()
    env = examvault_env(data_dir or tmp_path / "var", database_url, **{**FAST_FAULTS, **extra})
    log = tmp_path / "serve.log"
    process = spawn(env, "serve", "--port", str(port), log=log)
    server = Server(f"http://127.0.0.1:{port}", env, process, log, admin, host)
    try:
        wait_for_health(server.base_url, process, log, timeout=90)
        yield server
    finally:
        server.client.close()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LatencyWatch:
    """Polls a URL every `interval` seconds in a thread: the longest answer, and failures."""

    def __init__(
        self,
        url: str,
        interval: float = 0.05,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url, self.interval, self.timeout = url, interval, timeout
        self.headers = headers or {}
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LatencyWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = client.get(self.url, headers=self.headers).status_code
                    if status != 200:
                        self.failures.append(f"HTTP {status}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.latencies.append(time.monotonic() - started)
                self._stop.wait(self.interval)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)


def check_outage_answer(answer: Answer, codes: set[str]) -> None:
    """What a camera host must get while a dependency is down: JSON 503, a stable code,
    Retry-After; never a plain-text 500."""
    assert answer.status == 503, f"{answer.status} {answer.content_type} {answer.body}"
    assert answer.content_type.startswith("application/json"), answer.content_type
    assert answer.code in codes, answer.body
    assert answer.retry_after is not None and answer.retry_after.isdigit(), answer
    assert answer.body.get("message") and answer.body.get("message_zh"), answer.body


def push_until_acknowledged(
    server: Server, camera: str, name: str, data: bytes, timeout: float = 60
) -> Answer:
    """What a camera host does after an outage: push again until 200/201 (following
    Retry-After), which must come with the same SHA-256."""
    deadline = time.monotonic() + timeout
    while True:
        answer = server.push(camera, name, data)
        if answer.status in (200, 201):
            assert answer.body["sha256"] == hashlib.sha256(data).hexdigest(), answer.body
            return answer
        check_outage_answer(answer, OUTAGE_CODES)
        assert time.monotonic() < deadline, f"{name} still not acknowledged: {answer.body}"
        time.sleep(min(float(answer.retry_after or 1), 1.0))


def lost_segments(
    server: Server, acknowledged: dict[str, Answer], files: dict[str, bytes]
) -> set[str]:
    """Names of acknowledged segments not readable with their SHA-256, through the API."""
    lost = set()
    for name, answer in acknowledged.items():
        content = server.read_segment(answer.body["segment_id"])
        if hashlib.sha256(content).hexdigest() != hashlib.sha256(files[name]).hexdigest():
            lost.add(name)
    return lost


def ledger_verifies(server: Server) -> bool:
    result = run_cli(server.env, "ledger", "verify", timeout=120)
    return result.returncode == 0


def tally(answers: list[Answer]) -> Counter[str]:
    """Answers by status and code; `kept` marks an upload that arrived whole and is stored
    later without a resend."""
    return Counter(
        " ".join(
            part
            for part in (str(answer.status), answer.code, "kept" if answer.body.get("kept") else "")
            if part
        )
        for answer in answers
    )


class Pushes:
    """Pushes a batch in a thread, so a test can watch readiness from the fault's first moment."""

    def __init__(self, server: Server, camera: str, files: dict[str, bytes], names: list[str]):
        self.answers: dict[str, Answer] = {}
        self._thread = threading.Thread(
            target=lambda: self.answers.update(
                {name: server.push(camera, name, files[name]) for name in names}
            ),
            daemon=True,
        )
        self._thread.start()

    def join(self, timeout: float = 120) -> dict[str, Answer]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "pushes still running"
        return self.answers
