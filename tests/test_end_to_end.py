"""`examvault serve` as a real process: push over HTTP with the camera-host client, drop into
the spool, and find rows, blobs and hashes that match."""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import Segment
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY, VideoFactory
from tests.processes import (
    examvault_env,
    free_port,
    run_cli,
    spawn,
    wait_for_health,
    wait_until,
)


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[tuple[str, dict[str, str], Path]]:
    data_dir = tmp_path / "var"
    env = examvault_env(data_dir, database_url)
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(REGISTRY, ensure_ascii=False), encoding="utf-8")
    imported = run_cli(env, "registry", "import", str(registry))
    assert imported.returncode == 0, imported.stderr
    port = free_port()
    log = tmp_path / "serve.log"
    process = spawn(env, "serve", "--port", str(port), log=log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base_url, process, log)
        yield base_url, env, data_dir
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert process.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()
        assert "Application shutdown complete" in log.read_text()


def _segments(database_url: str) -> list[Segment]:
    db = Database(database_url)
    try:
        with db.read() as session:
            return list(session.scalars(select(Segment).order_by(Segment.id)))
    finally:
        db.dispose()


def test_push_and_spool_end_to_end(
    server: tuple[str, dict[str, str], Path],
    database_url: str,
    make_video: VideoFactory,
    tmp_path: Path,
) -> None:
    base_url, env, data_dir = server
    created = run_cli(env, "token", "create", "--role", "camera_host", "--cameras", CAMERA_FRONT)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]

    # 1. The camera-host client pushes, and removes its copy only after the server confirmed.
    host_copy = tmp_path / "host" / "20261124T090000+0800_front.mp4"
    host_copy.parent.mkdir()
    host_copy.write_bytes(make_video("front.mp4", seconds=3, seed=1).read_bytes())
    pushed_sha = hashlib.sha256(host_copy.read_bytes()).hexdigest()
    pushed = run_cli(
        env,
        "push",
        "--server",
        base_url,
        "--token",
        token,
        "--camera",
        CAMERA_FRONT,
        "--remove",
        str(host_copy),
    )
    assert pushed.returncode == 0, pushed.stderr
    answer = json.loads(pushed.stdout.strip().splitlines()[-1])
    assert answer["sha256"] == pushed_sha and answer["removed_local_copy"] is True
    assert not host_copy.exists()

    # 2. A host drops a file into the spool as NAME.part and renames it when complete.
    spooled = make_video("back.mkv", seconds=3, seed=2, fmt="matroska")
    folder = data_dir / "spool" / CAMERA_BACK
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / "20261124T090000+0800.mkv.part"
    part.write_bytes(spooled.read_bytes())
    part.rename(folder / "20261124T090000+0800.mkv")
    wait_until(lambda: len(_segments(database_url)) == 2, timeout=30)
    wait_until(lambda: not any(folder.iterdir()), timeout=10)

    segments = {segment.sha256: segment for segment in _segments(database_url)}
    assert set(segments) == {pushed_sha, hashlib.sha256(spooled.read_bytes()).hexdigest()}
    for sha, segment in segments.items():
        blob = data_dir / "objects" / segment.blob_key
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha
    assert {segment.source for segment in segments.values()} == {"http", "spool"}

    verified = run_cli(env, "ledger", "verify")
    assert verified.returncode == 0, verified.stderr
    # registry import, token, two ingests
    assert verified.stdout.startswith("ledger verifies: 4 entries")
