"""The PostgreSQL job queue with real processes (services/jobs.py): `examvault serve` defers,
four `examvault worker`s take the jobs; every segment pushed over HTTP or dropped in the spool
is stored exactly once (one row, one `segment.ingested` entry, one blob), also when a worker is
killed mid-job; periodic jobs run once per period however many workers defer them.

PostgreSQL only: on SQLite there is no queue (the same work runs in-process, tested elsewhere).
`EXAMVAULT_SOAK=1` pushes more segments.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.access.tokens import create_token
from services.context import Services
from services.demo.footage import classroom_scene, write_recording
from services.ingest.push import PushError, push_file
from services.jobs import JobQueue, queue_depths
from services.registry import import_registry
from services.settings import load_settings
from storage.models import Camera, LedgerEntry, Segment
from tests.conftest import (
    CAMERA_BACK,
    CAMERA_FRONT,
    POSTGRES_URL,
    REGISTRY,
    STRICT,
    _postgres_schema_url,
)
from tests.processes import examvault_env, free_port, run_cli, spawn, wait_for_health, wait_until
from tests.reliability import Reliability

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SOAK = os.environ.get("EXAMVAULT_SOAK") == "1"
SEGMENTS = 600 if SOAK else 200
STALLED_SECONDS = 5
FIRST_START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not POSTGRES_URL:
        if STRICT:
            pytest.fail("EXAMVAULT_TEST_POSTGRES_URL is not set but CI must test PostgreSQL")
        pytest.skip("the job queue needs PostgreSQL (EXAMVAULT_TEST_POSTGRES_URL)")
    yield from _postgres_schema_url(POSTGRES_URL)


@dataclass
class Cluster:
    """One `serve` and N `worker` processes over one PostgreSQL schema and one data dir."""

    root: Path
    url: str
    env: dict[str, str]
    token: str = ""
    base_url: str = ""
    serve: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "var"

    def start_worker(self, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        index = len(self.workers)
        env = {**self.env, **extra_env}
        process = spawn(env, "worker", *args, log=self.root / f"worker-{index}.log")
        self.workers.append(process)
        return process

    def start_serve(self) -> None:
        port = free_port()
        log = self.root / "serve.log"
        self.serve = spawn(self.env, "serve", "--port", str(port), log=log)
        self.base_url = f"http://127.0.0.1:{port}"
        wait_for_health(self.base_url, self.serve, log)

    def stop(self) -> None:
        for process in [*self.workers, *([self.serve] if self.serve else [])]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.workers, *([self.serve] if self.serve else [])]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted(self.root.glob("*.log"))
        )


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    env = examvault_env(
        tmp_path / "var",
        postgres_url,
        EXAMVAULT_HEALTH_CHECKS="false",
        EXAMVAULT_QUEUE_STALLED_SECONDS=str(STALLED_SECONDS),
        EXAMVAULT_UPLOAD_WAIT_SECONDS="90",
        EXAMVAULT_OUTAGE_RETRY_SECONDS="2",
        EXAMVAULT_QUEUE="postgres",
    )
    built = Cluster(root=tmp_path, url=postgres_url, env=env)
    upgraded = run_cli(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    services = Services.from_settings(_settings(built))
    try:
        services.db.run_write(
            lambda session: import_registry(session, json.dumps(REGISTRY), actor="test")
        )
        _row, built.token = services.db.run_write(
            lambda session: create_token(
                session,
                role="camera_host",
                name="host",
                cameras=[CAMERA_FRONT, CAMERA_BACK],
                actor="test",
            )
        )
    finally:
        services.close()
    try:
        yield built
    finally:
        built.stop()


def _settings(cluster: Cluster):  # type: ignore[no-untyped-def]
    return load_settings(data_dir=cluster.data_dir, database_url=cluster.url, health_checks=False)


@dataclass(frozen=True)
class Recording:
    camera: str
    name: str
    path: Path
    sha256: str


def _recordings(folder: Path, count: int) -> list[Recording]:
    """`count` small real H.264 MP4s, each its own bytes and its own start, on two cameras."""
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(count):
        camera = (CAMERA_FRONT, CAMERA_BACK)[index % 2]
        start = FIRST_START + timedelta(seconds=2 * (index // 2))
        name = start.strftime("%Y%m%dT%H%M%SZ") + ".mp4"
        path = write_recording(
            folder / f"{index:04d}-{name}",
            seconds=1.0,
            width=160,
            height=120,
            scene=classroom_scene(160, 120, seed=index),
        )
        made.append(Recording(camera, name, path, hashlib.sha256(path.read_bytes()).hexdigest()))
    return made


def _drop_in_spool(cluster: Cluster, recording: Recording) -> None:
    """As a camera host does: write NAME.part, then rename it when complete."""
    folder = cluster.data_dir / "spool" / recording.camera
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / (recording.name + ".part")
    part.write_bytes(recording.path.read_bytes())
    os.rename(part, folder / recording.name)


def _push(cluster: Cluster, recording: Recording, *, respond_async: bool) -> dict:
    staged = recording.path.parent / "push" / recording.name / recording.name
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(recording.path.read_bytes())
    return push_file(
        staged,
        server=cluster.base_url,
        token=cluster.token,
        camera=recording.camera,
        remove_when_confirmed=True,
        timeout=120,
        retries=5,
        respond_async=respond_async,
    )


@dataclass
class Stored:
    rows: Counter[tuple[str, str]]
    ingested_entries: int
    blobs: int


def _stored(cluster: Cluster) -> Stored:
    services = Services.from_settings(_settings(cluster), migrate=False)
    try:
        with services.db.read() as session:
            rows = Counter(
                (camera, sha)
                for camera, sha in session.execute(
                    select(Camera.code, Segment.sha256).join(Camera, Camera.id == Segment.camera_id)
                ).all()
            )
            entries = session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.action == "segment.ingested")
            )
    finally:
        services.close()
    objects = cluster.data_dir / "objects"
    blobs = sum(
        1
        for path in objects.rglob("*")
        if path.is_file() and ".tmp" not in path.parts and path.suffix == ".mp4"
    )
    return Stored(rows=rows, ingested_entries=int(entries or 0), blobs=blobs)


def _spool_empty(cluster: Cluster) -> bool:
    spool = cluster.data_dir / "spool"
    return not any(
        path.is_file() and path.suffix == ".mp4"
        for path in spool.rglob("*")
        if ".incoming" not in path.parts
    )


def _run_batch(
    cluster: Cluster, recordings: list[Recording], *, kill_after: int | None = None
) -> tuple[Counter[str], int]:
    """Half over HTTP (every other one asking for 202), half through the spool; returns the
    answers seen and how many were acknowledged (a 200/201 with the right SHA-256, or a
    spool file taken)."""
    answers: Counter[str] = Counter()
    lock = threading.Lock()
    over_http = recordings[::2]
    through_spool = recordings[1::2]

    def push(index_and_recording: tuple[int, Recording]) -> None:
        index, recording = index_and_recording
        try:
            answer = _push(cluster, recording, respond_async=index % 2 == 1)
        except PushError as exc:
            with lock:
                answers[exc.answer_key] += 1
            return
        assert answer["sha256"] == recording.sha256
        with lock:
            answers[str(answer["http_status"])] += 1

    for recording in through_spool:
        _drop_in_spool(cluster, recording)
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(push, item) for item in enumerate(over_http)]
        if kill_after is not None:
            wait_until(lambda: sum(_stored(cluster).rows.values()) >= kill_after, timeout=120)
            victim = cluster.workers[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            answers["worker SIGKILLed"] += 1
        for future in futures:
            future.result()
    wait_until(lambda: _spool_empty(cluster), timeout=120, interval=0.5)
    acknowledged = answers["201"] + answers["200"] + len(through_spool)
    return answers, acknowledged


def _assert_exactly_once(cluster: Cluster, recordings: list[Recording]) -> int:
    """Every recording stored once: one row, one ledger entry, one blob. Returns how many
    acknowledged recordings are missing (the `lost` of the reliability record)."""
    expected = Counter((recording.camera, recording.sha256) for recording in recordings)
    wait_until(
        lambda: sum(_stored(cluster).rows.values()) >= len(recordings), timeout=60, interval=0.5
    )
    stored = _stored(cluster)
    lost = sum(1 for key in expected if stored.rows[key] == 0)
    twice = {key: count for key, count in stored.rows.items() if count > 1}
    assert twice == {}, f"stored more than once: {twice}\n{cluster.logs()}"
    assert lost == 0, cluster.logs()
    assert stored.rows == expected
    assert stored.ingested_entries == len(recordings)
    assert stored.blobs == len(recordings)
    verified = run_cli(cluster.env, "ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    return lost


def test_four_workers_store_each_of_200_segments_exactly_once(
    cluster: Cluster, tmp_path: Path, reliability: Reliability
) -> None:
    """200 segments, half pushed over HTTP to `serve` (201 after the worker's result, or 202
    and the status URL), half dropped in the spool; four workers take them."""
    recordings = _recordings(tmp_path / "videos", SEGMENTS)
    cluster.start_serve()
    for _ in range(4):
        cluster.start_worker("--concurrency", "1")
    answers, acknowledged = _run_batch(cluster, recordings)
    lost = _assert_exactly_once(cluster, recordings)
    # Every push answered 201 (stored by a worker): never a 200 from a second upload.
    assert answers["201"] == len(recordings[::2]), answers
    reliability.record(
        "faults",
        f"{SEGMENTS} segments over HTTP and the spool, 4 queue workers (PostgreSQL)",
        tries=len(recordings),
        acknowledged=acknowledged,
        lost=lost,
        answers=answers,
    )


def test_a_worker_killed_mid_job_loses_nothing_and_stores_nothing_twice(
    cluster: Cluster, tmp_path: Path, reliability: Reliability
) -> None:
    """One of four workers kills itself (SIGKILL) with a blob stored and no row yet; its job
    is given to another worker once its heartbeat is STALLED_SECONDS old."""
    recordings = _recordings(tmp_path / "videos", SEGMENTS // 2)
    cluster.start_serve()
    cluster.start_worker(
        "--concurrency",
        "1",
        EXAMVAULT_TEST_FAULTS="1",
        EXAMVAULT_FAULT_POINT="ingest.blob_stored:10",
    )
    for _ in range(3):
        cluster.start_worker("--concurrency", "1")
    answers, acknowledged = _run_batch(cluster, recordings)
    assert cluster.workers[0].wait(timeout=60) == -signal.SIGKILL, cluster.logs()
    lost = _assert_exactly_once(cluster, recordings)
    answers["worker SIGKILLed mid-job"] += 1
    retried = "given to another worker" in cluster.logs()
    assert retried, cluster.logs()
    reliability.record(
        "crashes",
        f"{len(recordings)} segments, 4 queue workers, one SIGKILLed mid-job (blob stored, "
        "no row): its job retried by another",
        tries=len(recordings),
        acknowledged=acknowledged,
        lost=lost,
        answers=answers,
    )


def _job_runs(ports: list[int], task: str) -> int:
    total = 0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        for match in re.finditer(
            r'^examvault_jobs_total\{outcome="succeeded",task="' + task + r'"\} (\S+)$',
            text,
            re.MULTILINE,
        ):
            total += int(float(match.group(1)))
    return total


def test_a_periodic_job_runs_once_per_period_with_three_workers(cluster: Cluster) -> None:
    """The verdict sweep every second, deferred by three workers: about one run a second in
    all, never three."""
    ports = [free_port() for _ in range(3)]
    env = {"EXAMVAULT_VERDICT_SWEEP_SECONDS": "1"}
    for port in ports:
        cluster.start_worker("--queues", "periodic", "--metrics-port", str(port), **env)

    def scraped() -> bool:
        try:
            return _job_runs(ports, "sweep_verdicts") >= 1
        except OSError:
            return False

    wait_until(scraped, timeout=60)
    before, began = _job_runs(ports, "sweep_verdicts"), time.monotonic()
    time.sleep(8)
    runs, elapsed = _job_runs(ports, "sweep_verdicts") - before, time.monotonic() - began
    # Once per second at most (one period may straddle the window's edges), and running.
    assert 1 <= runs <= elapsed + 2, (runs, elapsed, cluster.logs())


def test_an_upload_job_run_twice_stores_once(postgres_url: str, tmp_path: Path) -> None:
    """Idempotency by content: the same staged upload's job run again after it completed (a
    retry after a kill that undid the removal) finds the stored bytes: 200, one row, one
    ledger entry, one blob. Fails if a retried job could store or ledger anything twice."""
    settings = load_settings(
        data_dir=tmp_path / "var", database_url=postgres_url, health_checks=False
    )
    services = Services.from_settings(settings)
    try:
        services.db.run_write(
            lambda session: import_registry(session, json.dumps(REGISTRY), actor="test")
        )
        queue = JobQueue(services)
        recording = _recordings(tmp_path / "videos", 1)[0]
        incoming = settings.incoming_dir
        incoming.mkdir(parents=True, exist_ok=True)
        upload_id = "0123456789abcdef0123456789abcdef"
        sidecar = {
            "camera": recording.camera,
            "file_name": recording.name,
            "declared_start": None,
            "received_at": datetime.now(UTC).isoformat(),
            "sha256": recording.sha256,
            "actor": "camera_host:host",
        }
        outcomes = []
        for _ in range(2):
            (incoming / f"{upload_id}.bin").write_bytes(recording.path.read_bytes())
            (incoming / f"{upload_id}.json").write_text(json.dumps(sidecar))
            result = queue.ingest_upload(upload_id)
            assert result is not None
            outcomes.append(result.outcome.value)
        assert queue.ingest_upload(upload_id) is None  # nothing left: a no-op, not an error
        assert outcomes == ["stored", "duplicate"]
        with services.db.read() as session:
            assert session.scalar(select(func.count()).select_from(Segment)) == 1
            entries = session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.action == "segment.ingested")
            )
            assert entries == 1
        blobs = [p for p in (settings.data_dir / "objects").rglob("*.mp4")]
        assert len(blobs) == 1
        result_record = json.loads((incoming / f"{upload_id}.result").read_text())
        assert result_record["outcome"] == "duplicate"
        assert result_record["sha256"] == recording.sha256
        assert queue_depths(services)[("ingest", "todo")] == 0
        queue.close()
    finally:
        services.close()


def test_202_status_url_is_the_pushing_tokens_only_and_queue_depth_is_a_metric(
    postgres_url: str, tmp_path: Path
) -> None:
    """`Prefer: respond-async` is answered 202 with a status URL at once; that URL answers
    202 `queued` to the token that pushed, 404 to another camera host's token; /metrics shows
    the waiting job in `examvault_queue_jobs` (no worker runs here)."""
    from fastapi.testclient import TestClient

    from services.api.app import create_app

    settings = load_settings(
        data_dir=tmp_path / "var", database_url=postgres_url, health_checks=False
    )
    services = Services.from_settings(settings)
    try:
        services.db.run_write(
            lambda session: import_registry(session, json.dumps(REGISTRY), actor="test")
        )
        tokens = [
            services.db.run_write(
                lambda session, name=name: create_token(
                    session, role="camera_host", name=name, cameras=[CAMERA_FRONT], actor="test"
                )
            )[1]
            for name in ("host", "other")
        ]
        services.metrics.watch_queue(lambda: queue_depths(services))
        recording = _recordings(tmp_path / "videos", 1)[0]
        app = create_app(services, job_queue=JobQueue(services))
        with TestClient(app) as client:
            pushed = client.put(
                f"/api/v1/ingest/{CAMERA_FRONT}/{recording.name}",
                content=recording.path.read_bytes(),
                headers={"Authorization": f"Bearer {tokens[0]}", "Prefer": "respond-async"},
            )
            assert pushed.status_code == 202, pushed.text
            assert pushed.headers["Preference-Applied"] == "respond-async"
            status_url = pushed.json()["status_url"]
            assert pushed.headers["Location"] == status_url
            mine = client.get(status_url, headers={"Authorization": f"Bearer {tokens[0]}"})
            assert mine.status_code == 202
            assert mine.json()["sha256"] == recording.sha256
            theirs = client.get(status_url, headers={"Authorization": f"Bearer {tokens[1]}"})
            assert theirs.status_code == 404
            assert theirs.json()["code"] == "unknown_upload"
            metrics = services.metrics.render()
            assert 'examvault_queue_jobs{queue="ingest",status="todo"} 1.0' in metrics
    finally:
        services.close()
