"""Kill a real `examvault worker` (and `serve`) with SIGKILL while it ingests, restart it, and
prove that nothing was lost or half-written: every arrival ends as exactly one segment (row,
blob, one ledger entry, matching hash) or one quarantine record, with no row without a blob, no
blob without a row, no torn temporary file and no false rejection.

Two kinds of kill: random-timing rounds, and deterministic ones at each named step
(storage/faults.py, EXAMVAULT_FAULT_POINT), each followed by a restart that must recover it."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import boto3
import pytest
from minio import Minio
from sqlalchemy import func, select

from services.access.tokens import create_token
from services.demo.footage import classroom_scene
from services.registry import import_registry
from services.retention.purge import segment_keys
from storage import ledger
from storage.blobs import BlobStore, LocalBlobStore
from storage.db import Database
from storage.models import Camera, LedgerEntry, QuarantineRecord, Segment
from storage.s3 import MiB, S3BlobStore
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY, VideoFactory
from tests.processes import (
    examvault_env,
    free_port,
    run_cli,
    spawn,
    wait_for_health,
    wait_until,
)
from tests.reliability import Reliability
from tests.s3server import ACCESS_KEY, SECRET_KEY

FILES_PER_CAMERA = 20
KILLS = 12

# (camera, original file name) -> the SHA-256 it must be stored with, or None: quarantined.
Expected = dict[tuple[str, str], str | None]


def _count(db: Database, model: type) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _prepare(
    tmp_path: Path, database_url: str, **extra: str
) -> tuple[Path, dict[str, str], Database]:
    """The data directory, the workers' environment, and the database with the registry in it
    (made in this process: every process start costs seconds on a loaded machine)."""
    data_dir = tmp_path / "var"
    env = examvault_env(
        data_dir,
        database_url,
        EXAMVAULT_SPOOL_SETTLE_SECONDS="0",
        EXAMVAULT_HEALTH_CHECKS="false",
        **extra,
    )
    db = Database(database_url)
    db.upgrade()
    db.run_write(lambda session: import_registry(session, json.dumps(REGISTRY), actor="test"))
    return data_dir, env, db


def _drop(data_dir: Path, camera: str, name: str, data: bytes, expected: Expected) -> None:
    folder = data_dir / "spool" / camera
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    expected[(camera, name)] = hashlib.sha256(data).hexdigest()


def _waiting(data_dir: Path) -> set[tuple[str, str]]:
    """Arrivals still in the spool: camera folders, and HTTP uploads renamed to .bin."""
    spool = data_dir / "spool"
    found = {
        (path.parent.name, path.name)
        for path in spool.glob("*/*")
        if path.is_file() and not path.parent.name.startswith(".")
    }
    for data in (spool / ".incoming").glob("*.bin"):
        meta = json.loads(data.with_suffix(".json").read_text(encoding="utf-8"))
        found.add((meta["camera"], meta["file_name"]))
    return found


def _evidence(db: Database) -> tuple[list[Segment], dict[int, str], list[QuarantineRecord]]:
    with db.read() as session:
        segments = list(session.scalars(select(Segment).order_by(Segment.id)))
        cameras = dict(session.execute(select(Camera.id, Camera.code)).all())
        records = list(session.scalars(select(QuarantineRecord)))
    return segments, cameras, records


def _entries(db: Database, action: str) -> dict[str, list[LedgerEntry]]:
    by_subject: dict[str, list[LedgerEntry]] = {}
    with db.read() as session:
        for entry in session.scalars(select(LedgerEntry).where(LedgerEntry.action == action)):
            by_subject.setdefault(entry.subject_id, []).append(entry)
    return by_subject


def check_consistent(db: Database, store: BlobStore, data_dir: Path, expected: Expected) -> None:
    """What holds at every instant, even right after a kill: each arrival is a segment, a
    quarantine record or still waiting in the spool (nothing lost, nothing made up); each
    segment row has its blob, and one `segment.ingested` entry whose recorded sha256, size and
    key are the row's and the stored bytes' own."""
    segments, cameras, records = _evidence(db)
    entries = _entries(db, "segment.ingested")
    accounted = Counter(
        [(cameras[segment.camera_id], segment.original_name) for segment in segments]
        + [(record.camera_code or "", record.original_name) for record in records]
    )
    waiting = _waiting(data_dir)
    for arrival in expected:
        assert accounted[arrival] <= 1, f"{arrival} became evidence {accounted[arrival]} times"
        assert accounted[arrival] == 1 or arrival in waiting, f"{arrival} was lost"
    assert set(accounted) <= set(expected), f"unexpected evidence {set(accounted) - set(expected)}"
    for segment in segments:
        arrival = (cameras[segment.camera_id], segment.original_name)
        assert segment.sha256 == expected[arrival], f"{arrival} stored with the wrong hash"
        [entry] = entries.get(str(segment.id), [None])
        assert entry is not None, f"segment {segment.id} has no segment.ingested entry"
        details = json.loads(entry.details)
        assert (details["sha256"], details["size"], details["key"]) == (
            segment.sha256,
            segment.size_bytes,
            segment.blob_key,
        ), f"segment {segment.id}: the ledger recorded other bytes than the row"
        content = b"".join(store.read(segment.blob_key))
        assert len(content) == segment.size_bytes, f"segment {segment.id}: stored size differs"
        assert hashlib.sha256(content).hexdigest() == details["sha256"], (
            f"segment {segment.id}: the stored bytes are not the ones the ledger recorded"
        )


def check_recovered(db: Database, store: BlobStore, data_dir: Path, expected: Expected) -> None:
    """After an uninterrupted run: every arrival is exactly one segment (good files) or one
    quarantine record (bad ones), and is gone from the spool; no blob without a row; no
    leftover temporary file; on S3 every segment locked until at least its expiry; the ledger
    verifies."""
    check_consistent(db, store, data_dir, expected)
    segments, cameras, records = _evidence(db)
    stored = {(cameras[segment.camera_id], segment.original_name) for segment in segments}
    rejected = {(record.camera_code or "", record.original_name) for record in records}
    assert stored == {arrival for arrival, sha in expected.items() if sha is not None}
    assert rejected == {arrival for arrival, sha in expected.items() if sha is None}
    assert len(_entries(db, "segment.rejected")) == len(records)
    assert [path for path in (data_dir / "spool").rglob("*") if path.is_file()] == []
    # The worker also stores signed ledger checkpoints; every other object is a segment.
    assert segment_keys(store) == {segment.blob_key for segment in segments}
    if isinstance(store, LocalBlobStore):
        assert list((store.root / ".tmp").iterdir()) == []
    for segment in segments:
        info = store.stat(segment.blob_key)
        assert info is not None
        if isinstance(store, S3BlobStore):
            assert info.retain_until is not None and info.retain_until >= segment.expires_at
    for record in records:
        kept = (data_dir / "quarantine" / record.stored_path).read_bytes()
        assert hashlib.sha256(kept).hexdigest() == record.sha256
    with db.read() as session:
        verdict = ledger.verify(session)
    assert verdict.ok, verdict.mismatch


def test_sigkill_at_many_points_loses_nothing(
    tmp_path: Path, database_url: str, make_video: VideoFactory, reliability: Reliability
) -> None:
    data_dir, env, db = _prepare(tmp_path, database_url)
    # Distinct bytes per file, so a mix-up between files could not hide behind equal hashes.
    expected: Expected = {}
    for camera_index, camera in enumerate((CAMERA_FRONT, CAMERA_BACK)):
        for number in range(FILES_PER_CAMERA):
            seed = camera_index * FILES_PER_CAMERA + number
            data = make_video(f"v{seed}.mp4", seconds=2, seed=seed).read_bytes()
            _drop(data_dir, camera, f"20261124T09{number:02d}00+0800.mp4", data, expected)

    store = LocalBlobStore(data_dir / "objects")
    rng = random.Random(20261124)
    log = tmp_path / "worker.log"
    progress: list[int] = []
    try:
        # Every third round dies during start-up (recovery of the previous kill); the others die
        # a random few milliseconds after the worker stored one more segment, which lands the
        # SIGKILL at a different step (probe, blob write, commit, spool removal) each time.
        for round_number in range(KILLS):
            before = _count(db, Segment)
            if before == len(expected):
                break
            worker = spawn(env, "worker", log=log)
            if round_number % 3 == 2:
                time.sleep(rng.uniform(0.1, 1.0))
            else:
                wait_until(lambda b=before: _count(db, Segment) > b, timeout=180, interval=0.01)
                time.sleep(rng.uniform(0.0, 0.12))
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            progress.append(_count(db, Segment))
            check_consistent(db, store, data_dir, expected)

        _finish(env, db, data_dir, expected, log)
        print(f"segments after each kill: {progress}")
        # At least some kills landed while files were being ingested.
        assert len(set(progress)) > 2, f"segments after each kill: {progress}"
        assert _count(db, QuarantineRecord) == 0, log.read_text()[-3000:]
        check_recovered(db, store, data_dir, expected)
        with db.read() as session:
            stored = set(session.scalars(select(Segment.sha256)))
        reliability.record(
            "crashes",
            f"SIGKILL of the spool worker at random points, {len(progress)} kills",
            tries=len(expected),
            acknowledged=len(expected),
            lost=sum(1 for sha in expected.values() if sha is not None and sha not in stored),
            answers={"stored after the restarts": len(stored & set(expected.values()))},
        )
    finally:
        db.dispose()
        shutil.rmtree(data_dir / "objects", ignore_errors=True)


def _finish(
    env: dict[str, str], db: Database, data_dir: Path, expected: Expected, log: Path
) -> None:
    """One uninterrupted worker run, until every arrival is evidence and the spool is empty."""
    done = sum(1 for sha in expected.values() if sha is not None)
    started = _log_count(log, "ingest worker watching")
    worker = spawn(env, "worker", log=log)
    try:
        wait_until(lambda: _count(db, Segment) == done, timeout=120)
        wait_until(
            lambda: not any(p.is_file() for p in (data_dir / "spool").rglob("*")), timeout=30
        )
        # The killed runs may have finished everything already: wait until this worker has
        # installed its signal handlers, or SIGTERM lands in its start-up and is fatal.
        wait_until(lambda: _log_count(log, "ingest worker watching") > started, timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, log.read_text()[-3000:]


def _log_count(log: Path, line: str) -> int:
    return log.read_text(errors="replace").count(line) if log.exists() else 0


def _killed_at(env: dict[str, str], step: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start `examvault ARGS` (default `worker`) armed to SIGKILL itself at `step`."""
    armed = {**env, "EXAMVAULT_TEST_FAULTS": "1", "EXAMVAULT_FAULT_POINT": step}
    return spawn(armed, *(args or ("worker",)), log=log)


def _expect_killed(process: subprocess.Popen[bytes], step: str, log: Path) -> None:
    try:
        # Generous: start-up alone takes seconds, and many more on a loaded 2-core machine.
        code = process.wait(timeout=180)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"never reached {step}:\n{log.read_text()[-3000:]}") from None
    name = step.partition(":")[0]
    assert code == -signal.SIGKILL, f"exit {code} instead of SIGKILL at {step}:\n{log.read_text()}"
    assert f"fault point {name} reached" in log.read_text(), log.read_text()[-3000:]


def _push(base_url: str, token: str, camera: str, name: str, data: bytes) -> int:
    request = urllib.request.Request(
        f"{base_url}/api/v1/ingest/{camera}/{name}",
        data=data,
        method="PUT",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
        },
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.status)


def _backdate_uploads(data_dir: Path) -> None:
    """Make the orphaned uploads old enough for the sweep (it waits 60 s for their request)."""
    old = time.time() - 120
    for path in (data_dir / "spool" / ".incoming").iterdir():
        os.utime(path, (old, old))


def _actor(db: Database, camera: str, name: str) -> str:
    with db.read() as session:
        segment_id = session.scalar(
            select(Segment.id)
            .join(Camera)
            .where(Camera.code == camera, Segment.original_name == name)
        )
        return session.scalars(
            select(LedgerEntry.actor).where(
                LedgerEntry.action == "segment.ingested", LedgerEntry.subject_id == str(segment_id)
            )
        ).one()


# The local store's steps in the order the chain below takes them; each restart first recovers
# what the previous kill left (and may itself be killed while doing so).
LOCAL_STEPS = ("ingest.staged", "ingest.blob_stored", "ingest.committed", "quarantine.recorded")


def test_sigkill_at_each_ingest_step_loses_nothing_and_keeps_the_uploader(
    tmp_path: Path, database_url: str, make_video: VideoFactory
) -> None:
    data_dir, env, db = _prepare(tmp_path, database_url)
    _, token = db.run_write(
        lambda session: create_token(
            session, role="camera_host", name="host-1", cameras=[CAMERA_FRONT], actor="test"
        )
    )
    store = LocalBlobStore(data_dir / "objects")
    expected: Expected = {}
    try:
        # 1. `serve` takes one upload normally and dies on the second right after its rename to
        #    .bin: acknowledged-to-be, so the worker's sweep must finish it, as that uploader.
        first = make_video("h1.mp4", seconds=2, seed=101).read_bytes()
        second = make_video("h2.mp4", seconds=2, seed=102).read_bytes()
        normal, swept = "20261124T100000+0800.mp4", "20261124T100200+0800.mp4"
        expected[(CAMERA_FRONT, normal)] = hashlib.sha256(first).hexdigest()
        expected[(CAMERA_FRONT, swept)] = hashlib.sha256(second).hexdigest()
        port = free_port()
        log = tmp_path / "serve.log"
        server = _killed_at(env, "upload.renamed:2", log, "serve", "--port", str(port))
        base_url = f"http://127.0.0.1:{port}"
        wait_for_health(base_url, server, log)
        assert _push(base_url, token, CAMERA_FRONT, normal, first) == 201
        with pytest.raises(OSError):
            _push(base_url, token, CAMERA_FRONT, swept, second)
        _expect_killed(server, "upload.renamed", log)
        assert _waiting(data_dir) == {(CAMERA_FRONT, swept)}
        check_consistent(db, store, data_dir, expected)
        _backdate_uploads(data_dir)

        # 2. Spool files, one of them not a video, and a worker killed at each step in turn.
        for number in range(3):
            for camera, seed in ((CAMERA_FRONT, number), (CAMERA_BACK, 10 + number)):
                data = make_video(f"s{seed}.mp4", seconds=2, seed=seed).read_bytes()
                _drop(data_dir, camera, f"20261124T09{number:02d}00+0800.mp4", data, expected)
        bad = (CAMERA_BACK, "20261124T090500+0800.mp4")
        _drop(data_dir, *bad, b"this is not a recording", expected)
        expected[bad] = None
        for number, step in enumerate(LOCAL_STEPS):
            log = tmp_path / f"worker-{number}.log"
            _expect_killed(_killed_at(env, step, log), step, log)
            if step == "ingest.staged":
                # The segment's staging file (and perhaps a checkpoint's, being written beside).
                assert list((store.root / ".tmp").glob("*.part"))
            if step == "ingest.blob_stored":
                # This run removed the staging files the previous kill left, then died itself.
                assert re.search(r"removed [1-9]\d* partial blob writes", log.read_text())
            check_consistent(db, store, data_dir, expected)

        _finish(env, db, data_dir, expected, tmp_path / "worker-final.log")
        check_recovered(db, store, data_dir, expected)
        assert _actor(db, CAMERA_FRONT, swept) == _actor(db, CAMERA_FRONT, normal)
        assert _actor(db, CAMERA_FRONT, normal) == "camera_host:host-1"
    finally:
        db.dispose()


def _multipart_uploads(endpoint: str, bucket: str) -> list[str]:
    """Keys of the multipart uploads begun and not completed (minio-py has no public call)."""
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{endpoint}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    listed = client.list_multipart_uploads(Bucket=bucket)
    return [upload["Key"] for upload in listed.get("Uploads", [])]


def test_sigkill_during_s3_multipart_upload_loses_nothing(
    tmp_path: Path, database_url: str, make_video: VideoFactory, s3_endpoint: str
) -> None:
    bucket = f"ev-{uuid.uuid4().hex[:12]}"
    # A threshold just above S3's 5 MiB part minimum, so files of about 8 MiB go up in 2 parts.
    threshold = 5 * MiB + 1
    data_dir, env, db = _prepare(
        tmp_path,
        database_url,
        EXAMVAULT_STORAGE_URL=(
            f"s3://{bucket}?endpoint={s3_endpoint}&secure=false&multipart_threshold={threshold}"
        ),
        EXAMVAULT_S3_ACCESS_KEY=ACCESS_KEY,
        EXAMVAULT_S3_SECRET_KEY=SECRET_KEY,
    )
    expected: Expected = {}
    for number in range(2):
        data = _large_video(make_video, seed=number)
        assert len(data) > threshold
        _drop(data_dir, CAMERA_FRONT, f"20261124T09{number:02d}00+0800.mp4", data, expected)
    store = S3BlobStore(
        bucket=bucket,
        endpoint=s3_endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
        multipart_threshold=threshold,
        create_bucket=True,  # what `examvault storage init` does; the worker would refuse
    )
    raw = Minio(endpoint=s3_endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
    try:
        # Killed mid-upload: the multipart upload is open, nothing is an object yet.
        log = tmp_path / "worker-parts.log"
        _expect_killed(_killed_at(env, "s3.multipart_part:2", log), "s3.multipart_part", log)
        assert _multipart_uploads(s3_endpoint, bucket)
        assert segment_keys(store) == set()
        check_consistent(db, store, data_dir, expected)

        # Killed between completing an upload and verifying it: an unlocked, unchecked object.
        log = tmp_path / "worker-completed.log"
        step = "s3.multipart_completed"
        _expect_killed(_killed_at(env, step, log), step, log)
        [key] = segment_keys(store)
        headers = raw.stat_object(bucket_name=bucket, object_name=key).metadata
        assert "x-amz-object-lock-mode" not in {name.lower() for name in headers}
        check_consistent(db, store, data_dir, expected)

        _finish(env, db, data_dir, expected, tmp_path / "worker-final.log")
        check_recovered(db, store, data_dir, expected)
    finally:
        db.dispose()


def _large_video(make_video: VideoFactory, *, seed: int) -> bytes:
    """About 8 MiB of real recording: noisy 640x480 at a high bit rate."""
    return make_video(
        f"large{seed}.mp4",
        seconds=4,
        width=640,
        height=480,
        scene=classroom_scene(640, 480, seed=seed),
        bit_rate=30_000_000,
    ).read_bytes()


def test_the_worker_refuses_a_fault_point_without_the_test_flag(tmp_path: Path) -> None:
    env = examvault_env(
        tmp_path / "var",
        f"sqlite:///{tmp_path / 'db.sqlite3'}",
        EXAMVAULT_FAULT_POINT="ingest.committed",
    )
    refused = run_cli(env, "worker", timeout=60)
    assert refused.returncode == 2
    assert "EXAMVAULT_TEST_FAULTS=1" in refused.stderr
    assert not (tmp_path / "var").exists(), "it must stop before touching anything"


def test_an_unknown_fault_point_is_refused_by_name(tmp_path: Path) -> None:
    env = examvault_env(
        tmp_path / "var",
        f"sqlite:///{tmp_path / 'db.sqlite3'}",
        EXAMVAULT_TEST_FAULTS="1",
        EXAMVAULT_FAULT_POINT="ingest.comitted",
    )
    refused = run_cli(env, "worker", timeout=60)
    assert refused.returncode == 2
    assert "unknown step" in refused.stderr and "ingest.committed" in refused.stderr
