"""Kill a real `examvault worker` with SIGKILL again and again while it ingests, restart it, and
prove that nothing was lost or half-written: every file ends up fully ingested exactly once
(row, blob, ledger entry, matching hash), with no row without a blob, no blob without a row, no
torn temporary file and no false rejection."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import time
from pathlib import Path

from sqlalchemy import func, select

from services.retention.purge import segment_keys
from storage import ledger
from storage.blobs import LocalBlobStore
from storage.db import Database
from storage.models import Camera, LedgerEntry, QuarantineRecord, Segment
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY, VideoFactory
from tests.processes import examvault_env, run_cli, spawn, wait_until

FILES_PER_CAMERA = 20
KILLS = 12


def _count(db: Database, model: type) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_sigkill_at_many_points_loses_nothing(
    tmp_path: Path, database_url: str, make_video: VideoFactory
) -> None:
    data_dir = tmp_path / "var"
    env = examvault_env(data_dir, database_url, EXAMVAULT_SPOOL_SETTLE_SECONDS="0")
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(REGISTRY), encoding="utf-8")
    assert run_cli(env, "registry", "import", str(registry)).returncode == 0

    # Distinct bytes per file, so a mix-up between files could not hide behind equal hashes.
    expected: dict[tuple[str, str], str] = {}
    for camera_index, camera in enumerate((CAMERA_FRONT, CAMERA_BACK)):
        folder = data_dir / "spool" / camera
        folder.mkdir(parents=True)
        for number in range(FILES_PER_CAMERA):
            name = f"20261124T09{number:02d}00+0800.mp4"
            seed = camera_index * FILES_PER_CAMERA + number
            data = make_video(f"v{seed}.mp4", seconds=2, seed=seed).read_bytes()
            (folder / name).write_bytes(data)
            expected[(camera, name)] = hashlib.sha256(data).hexdigest()

    db = Database(database_url)
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
                wait_until(lambda b=before: _count(db, Segment) > b, timeout=60, interval=0.01)
                time.sleep(rng.uniform(0.0, 0.12))
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            progress.append(_count(db, Segment))

        worker = spawn(env, "worker", log=log)
        try:
            wait_until(lambda: _count(db, Segment) == len(expected), timeout=120)
            wait_until(
                lambda: not any(p.is_file() for p in (data_dir / "spool").rglob("*")),
                timeout=30,
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)

        print(f"segments after each kill: {progress}")
        # At least some kills landed while files were being ingested.
        assert len(set(progress)) > 2, f"segments after each kill: {progress}"

        store = LocalBlobStore(data_dir / "objects")
        with db.read() as session:
            segments = session.scalars(select(Segment)).all()
            ingested_entries = session.scalars(
                select(LedgerEntry.subject_id).where(LedgerEntry.action == "segment.ingested")
            ).all()
            verdict = ledger.verify(session)
        assert verdict.ok, verdict.mismatch
        assert _count(db, QuarantineRecord) == 0, log.read_text()[-3000:]
        assert sorted(ingested_entries) == sorted(str(segment.id) for segment in segments)

        with db.read() as session:
            stored = {
                (camera, name): sha
                for camera, name, sha in session.execute(
                    select(Camera.code, Segment.original_name, Segment.sha256).join(Camera)
                )
            }
        assert stored == expected
        for segment in segments:
            blob = data_dir / "objects" / segment.blob_key
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == segment.sha256
        # The worker also stores signed ledger checkpoints; every other object is a segment.
        assert segment_keys(store) == {segment.blob_key for segment in segments}
        assert list((data_dir / "objects" / ".tmp").iterdir()) == []
    finally:
        db.dispose()
        shutil.rmtree(data_dir / "objects", ignore_errors=True)
