"""The camera host's push daemon against a real `examvault serve` process: the server killed
and restarted mid-batch, the daemon SIGKILLed mid-upload, 422/409 answers, a file changed
after it was hashed, SIGTERM. Every file must arrive exactly once and no local file may be
removed before the server confirmed its very bytes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import Segment
from tests.conftest import CAMERA_FRONT, REGISTRY, VideoFactory
from tests.processes import examvault_env, free_port, run_cli, spawn, wait_for_health, wait_until
from tests.reliability import Reliability

# More kills under `make soak`.
ROUNDS = 10 if os.environ.get("EXAMVAULT_SOAK") == "1" else 3
T0 = datetime.fromisoformat("2026-11-24T09:00:00+08:00")


@dataclass
class Server:
    env: dict[str, str]
    port: int
    log: Path
    database_url: str
    token: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = spawn(self.env, "serve", "--port", str(self.port), log=self.log)
        wait_for_health(self.url, self.process, self.log)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)
        self.process = None

    def segments(self) -> dict[str, int]:
        """sha256 -> how many segment rows carry it."""
        db = Database(self.database_url)
        try:
            with db.read() as session:
                counts: dict[str, int] = {}
                for sha in session.scalars(select(Segment.sha256)):
                    counts[sha] = counts.get(sha, 0) + 1
                return counts
        finally:
            db.dispose()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    env = examvault_env(tmp_path / "var", database_url)
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(REGISTRY, ensure_ascii=False), encoding="utf-8")
    assert run_cli(env, "registry", "import", str(registry)).returncode == 0
    created = run_cli(env, "token", "create", "--role", "camera_host", "--cameras", CAMERA_FRONT)
    assert created.returncode == 0, created.stderr
    running = Server(env, free_port(), tmp_path / "serve.log", database_url)
    running.token = created.stdout.strip().splitlines()[-1]
    running.start()
    try:
        yield running
    finally:
        if running.process is not None:
            running.process.send_signal(signal.SIGTERM)
            running.process.wait(timeout=30)


@dataclass
class Host:
    """A camera host's folder `DIR/<camera>/` and the daemon's command line."""

    root: Path
    server: Server
    log: Path

    @property
    def camera_dir(self) -> Path:
        return self.root / "watch" / CAMERA_FRONT

    @property
    def status_path(self) -> Path:
        return self.root / "status.json"

    @property
    def state_path(self) -> Path:
        return self.root / "state.sqlite3"

    def daemon(self, *extra: str) -> subprocess.Popen[bytes]:
        env = {**self.server.env, "EXAMVAULT_PUSH_TOKEN": self.server.token}
        return spawn(env, "push", *self.arguments(*extra), log=self.log)

    def arguments(self, *extra: str) -> list[str]:
        return [
            "--watch", str(self.root / "watch"), "--server", self.server.url,
            "--state", str(self.state_path), "--status-file", str(self.status_path),
            "--settle-seconds", "0", "--scan-seconds", "0.2", "--max-backoff", "1",
            *extra,
        ]  # fmt: skip

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def answers(self) -> dict[str, int]:
        with sqlite3.connect(self.state_path) as connection:
            return dict(connection.execute("SELECT answer, total FROM answer_count"))

    def local_files(self) -> set[str]:
        return {path.name for path in self.camera_dir.iterdir() if path.is_file()}


@pytest.fixture
def host(tmp_path: Path, server: Server) -> Host:
    made = Host(tmp_path / "host", server, tmp_path / "push.log")
    made.camera_dir.mkdir(parents=True)
    return made


def _segments_for(host: Host, make_video: VideoFactory, count: int, seconds: float = 2.0) -> dict:
    """`count` real recordings named by their start; name -> sha256."""
    shas = {}
    for index in range(count):
        name = (T0 + timedelta(minutes=index)).strftime("%Y%m%dT%H%M%S+0800.mp4")
        video = make_video(name, seconds=seconds, seed=index)
        target = host.camera_dir / name
        target.write_bytes(video.read_bytes())
        shas[name] = hashlib.sha256(target.read_bytes()).hexdigest()
    return shas


def _unconfirmed_removed(host: Host, shas: dict[str, str]) -> list[str]:
    """Local files gone although the server holds no segment with their bytes."""
    on_server = host.server.segments()
    present = host.local_files()
    return [name for name, sha in shas.items() if name not in present and sha not in on_server]


def test_daemon_sigkilled_mid_upload_sends_every_file_exactly_once(
    host: Host, make_video: VideoFactory, reliability: Reliability
) -> None:
    shas = _segments_for(host, make_video, ROUNDS + 2)
    rate = str(max(len(host.camera_dir.joinpath(name).read_bytes()) for name in shas) // 2)
    rng = random.Random(13)
    killed_in_flight = 0
    for _round in range(ROUNDS):
        daemon = host.daemon("--max-bytes-per-second", rate)  # about 2 s per file
        wait_until(lambda: bool(host.status().get("in_flight")), timeout=30, interval=0.05)
        time.sleep(rng.uniform(0.2, 1.5))
        killed_in_flight += bool(host.status().get("in_flight"))
        daemon.kill()  # SIGKILL
        daemon.wait(timeout=10)
        assert _unconfirmed_removed(host, shas) == []
    assert killed_in_flight >= ROUNDS - 1, host.log.read_text()

    daemon = host.daemon()
    wait_until(lambda: not host.local_files(), timeout=60)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=15) == 0, host.log.read_text()

    on_server = host.server.segments()
    arrived = [name for name, sha in shas.items() if on_server.get(sha) == 1]
    assert sorted(arrived) == sorted(shas)
    assert len(on_server) == len(shas)
    answers = host.answers()
    assert answers.get("201", 0) + answers.get("200", 0) >= len(shas) - 3
    reliability.record(
        "crashes",
        f"push daemon SIGKILLed mid-upload, {ROUNDS} rounds",
        tries=len(shas),
        acknowledged=len(arrived),
        lost=len(shas) - len(arrived) + len(_unconfirmed_removed(host, shas)),
        answers={key: answers.get(key, 0) for key in ("201", "200")},
    )


def test_daemon_carries_on_when_the_server_is_killed_and_restarted_mid_batch(
    host: Host, make_video: VideoFactory, reliability: Reliability
) -> None:
    shas = _segments_for(host, make_video, 6)
    rate = str(max(len(host.camera_dir.joinpath(name).read_bytes()) for name in shas) // 2)
    daemon = host.daemon("--max-bytes-per-second", rate)
    wait_until(lambda: len(host.local_files()) <= len(shas) - 2, timeout=60, interval=0.05)
    wait_until(lambda: bool(host.status().get("in_flight")), timeout=30, interval=0.05)
    time.sleep(0.5)
    host.server.kill()  # mid-upload
    wait_until(lambda: "network" in host.answers(), timeout=30)
    assert _unconfirmed_removed(host, shas) == []
    time.sleep(1.5)
    host.server.start()
    wait_until(lambda: not host.local_files(), timeout=90)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=15) == 0, host.log.read_text()

    on_server = host.server.segments()
    arrived = [name for name, sha in shas.items() if on_server.get(sha) == 1]
    assert sorted(arrived) == sorted(shas)
    assert len(on_server) == len(shas)
    answers = host.answers()
    assert answers["network"] >= 1
    status = host.status()
    assert status["backlog_files"] == 0 and status["last_success"]["file"]
    assert "server unreachable" in status["last_error"]["message"]
    reliability.record(
        "faults",
        "server restarted mid-batch",
        tries=len(shas),
        acknowledged=len(arrived),
        lost=len(shas) - len(arrived) + len(_unconfirmed_removed(host, shas)),
        answers=answers,
    )


def test_daemon_moves_422_to_rejected_and_keeps_409_with_the_reason(
    host: Host, make_video: VideoFactory, tmp_path: Path
) -> None:
    good = _segments_for(host, make_video, 1)
    junk = host.camera_dir / "20261124T100000+0800.mp4"
    junk.write_bytes(b"this is not a recording\n" * 100)
    contested = "20261124T100500+0800.mp4"
    first = make_video("first-" + contested, seconds=2, seed=7)
    held = tmp_path / contested
    held.write_bytes(first.read_bytes())
    pushed = run_cli(
        {**host.server.env, "EXAMVAULT_PUSH_TOKEN": host.server.token},
        "push", "--server", host.server.url, "--camera", CAMERA_FRONT, str(held),
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    (host.camera_dir / contested).write_bytes(make_video(contested, seconds=2, seed=8).read_bytes())

    env = {**host.server.env, "EXAMVAULT_PUSH_TOKEN": host.server.token}
    done = run_cli(env, "push", *host.arguments("--once"), timeout=60)
    assert done.returncode == 1, done.stderr  # the 409 stays unsent

    assert host.local_files() == {contested}
    assert set(good.values()) <= set(host.server.segments())
    rejected = host.camera_dir / "rejected"
    assert (rejected / junk.name).read_bytes() == b"this is not a recording\n" * 100
    reason = json.loads((rejected / f"{junk.name}.reason.json").read_text(encoding="utf-8"))
    assert reason["status"] == 422 and reason["answer"]["code"]
    status = host.status()
    assert [entry["state"] for entry in status["held"]] == ["conflict"]
    assert status["held"][0]["file"].endswith(contested)
    assert "409" in status["held"][0]["reason"]
    assert "different bytes" in done.stderr

    # Still kept, and not sent again, on the next pass.
    again = run_cli(env, "push", *host.arguments("--once"), timeout=60)
    assert again.returncode == 1
    assert host.answers()["409"] == 1


def test_daemon_keeps_a_file_changed_after_the_server_confirmed_it(
    host: Host, make_video: VideoFactory
) -> None:
    shas = _segments_for(host, make_video, 1)
    ((name, sha),) = shas.items()
    path = host.camera_dir / name
    rate = str(path.stat().st_size // 2)
    daemon = host.daemon("--max-bytes-per-second", rate, "--once")
    wait_until(lambda: bool(host.status().get("in_flight")), timeout=30, interval=0.05)
    with path.open("ab") as recorder:  # the recorder appends after the hash was taken
        recorder.write(b"\0" * 4096)
    assert daemon.wait(timeout=60) == 1, host.log.read_text()
    assert path.exists() and path.stat().st_size > 4096
    assert host.server.segments() == {sha: 1}  # the server has the bytes as hashed
    assert "changed after the server confirmed" in host.log.read_text()


def test_daemon_stops_promptly_on_sigterm_mid_upload_and_keeps_the_file(
    host: Host, make_video: VideoFactory
) -> None:
    shas = _segments_for(host, make_video, 1, seconds=6)
    ((name, _sha),) = shas.items()
    daemon = host.daemon("--max-bytes-per-second", "4096")  # about 20 s for the file
    wait_until(lambda: bool(host.status().get("in_flight")), timeout=30, interval=0.05)
    time.sleep(0.5)
    asked = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 0, host.log.read_text()
    assert time.monotonic() - asked < 3
    assert host.local_files() == {name}
    assert host.server.segments() == {}
    assert "upload abandoned" in host.log.read_text()
