"""The push daemon's camera-host side against an in-process server: the config file (one
folder per camera, token from a file), unfinished files, the disk-space guard, and a file the
server confirmed before a restart."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.access.tokens import create_token
from services.context import Services
from services.ingest.push import digest_file
from services.ingest.pushd import CameraFolder, DaemonConfig, PushDaemon, PushState
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, VideoFactory, ingest_file, serving
from tests.processes import run_cli


@pytest.fixture
def pushed_to(registered: Services) -> Iterator[tuple[str, str]]:
    """(server URL, camera-host token for both cameras)."""
    _row, token = registered.db.run_write(
        lambda session: create_token(
            session,
            role="camera_host",
            name="host",
            cameras=[CAMERA_FRONT, CAMERA_BACK],
            actor="test",
        )
    )
    with serving(registered) as url:
        yield url, token


def _stored(services: Services) -> set[str]:
    from sqlalchemy import select

    from storage.models import Segment

    with services.db.read() as session:
        return set(session.scalars(select(Segment.sha256)))


def _place(folder: Path, name: str, make_video: VideoFactory, seed: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(make_video(name, seconds=1, seed=seed).read_bytes())
    os.utime(folder / name, (time.time() - 60, time.time() - 60))  # long settled
    return hashlib.sha256((folder / name).read_bytes()).hexdigest()


def _config(url: str, token: str, root: Path, folders: list[CameraFolder], **extra) -> DaemonConfig:
    return DaemonConfig(
        server=url,
        token=token,
        folders=folders,
        state_path=root / "state.sqlite3",
        status_path=root / "status.json",
        settle_seconds=5,
        max_backoff_seconds=1,
        once=True,
        **extra,
    )


def test_config_file_one_folder_per_camera_token_from_a_file(
    pushed_to: tuple[str, str], registered: Services, make_video: VideoFactory, tmp_path: Path
) -> None:
    url, token = pushed_to
    host = tmp_path / "host"
    front = _place(host / "front", "20261124T090000+0800.mp4", make_video, 1)
    back = _place(host / "back", "20261124T090000+0800.mp4", make_video, 2)
    unfinished = host / "front" / "20261124T090100+0800.mp4.part"
    unfinished.write_bytes(b"still recording")
    (host / "token").write_text(token + "\n", encoding="utf-8")
    config = host / "push.toml"
    config.write_text(
        f'server = "{url}"\ntoken_file = "token"\nstate = "state.sqlite3"\n'
        'status_file = "status.json"\nsettle_seconds = 5\n'
        f'[[camera]]\ncode = "{CAMERA_FRONT}"\ndir = "front"\n'
        f'[[camera]]\ncode = "{CAMERA_BACK}"\ndir = "back"\n',
        encoding="utf-8",
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    done = run_cli(env, "push", "--config", str(config), "--once", timeout=60)
    assert done.returncode == 0, done.stderr
    assert token not in done.stderr
    assert {front, back} <= _stored(registered)
    assert sorted(path.name for path in (host / "front").iterdir()) == [unfinished.name]
    assert list((host / "back").iterdir()) == []


def test_push_without_any_token_is_a_usage_error(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    done = run_cli(env, "push", "--watch", str(tmp_path), "--server", "http://127.0.0.1:9")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "examvault: no token: give --token-file FILE, set EXAMVAULT_PUSH_TOKEN, or put "
        "token_file in the config file"
    ]


def test_a_file_still_being_written_is_not_sent(
    pushed_to: tuple[str, str], registered: Services, make_video: VideoFactory, tmp_path: Path
) -> None:
    url, token = pushed_to
    folder = tmp_path / "watch" / CAMERA_FRONT
    sha = _place(folder, "20261124T090000+0800.mp4", make_video, 1)
    os.utime(folder / "20261124T090000+0800.mp4")  # written just now
    config = _config(url, token, tmp_path, [CameraFolder(tmp_path / "watch")])
    assert PushDaemon(config).run() == 0
    assert (folder / "20261124T090000+0800.mp4").exists() and sha not in _stored(registered)
    status = json.loads((tmp_path / "status.json").read_text(encoding="utf-8"))
    assert (status["backlog_files"], status["unfinished_files"]) == (0, 1)


def test_a_file_confirmed_before_a_restart_is_removed_without_sending_it_again(
    pushed_to: tuple[str, str], registered: Services, make_video: VideoFactory, tmp_path: Path
) -> None:
    url, token = pushed_to
    folder = tmp_path / "cam"
    name = "20261124T090000+0800.mp4"
    _place(folder, name, make_video, 1)
    ingest_file(registered, CAMERA_FRONT, folder / name)
    # The daemon recorded the 201 and was killed before it removed the file.
    state = PushState(tmp_path / "state.sqlite3")
    state.put(folder / name, CAMERA_FRONT, digest_file(folder / name), "confirmed", attempts=1)
    state.close()
    config = _config(url, token, tmp_path, [CameraFolder(folder, CAMERA_FRONT)])
    assert PushDaemon(config).run() == 0
    assert not (folder / name).exists()
    state = PushState(tmp_path / "state.sqlite3")
    assert state.answers() == {}  # nothing was sent
    assert "confirmed before a restart" in state.events()["success"]["message"]
    state.close()


def test_disk_guard_warns_prunes_sent_copies_and_never_removes_unsent(
    pushed_to: tuple[str, str],
    registered: Services,
    make_video: VideoFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, token = pushed_to
    folder = tmp_path / "cam"
    sent_name, held_name = "20261124T090000+0800.mp4", "20261124T090500+0800.mp4"
    _place(folder, sent_name, make_video, 1)
    # The server already has other bytes for the second start: 409, kept unsent.
    other = make_video("other-" + held_name, seconds=1, seed=9)
    ingest_file(registered, CAMERA_FRONT, other.rename(other.with_name(held_name)))
    _place(folder, held_name, make_video, 2)
    config = _config(
        url,
        token,
        tmp_path,
        [CameraFolder(folder, CAMERA_FRONT)],
        after_send="move",
        min_free_bytes=2**62,  # always "low"
    )
    caplog.set_level(logging.WARNING, logger="services.ingest.pushd")
    assert PushDaemon(config).run() == 1  # the 409 stays unsent
    assert (folder / "sent" / sent_name).exists()
    assert "disk low" in caplog.text

    assert PushDaemon(config).run() == 1
    assert not (folder / "sent" / sent_name).exists()  # a confirmed copy makes room
    assert (folder / held_name).exists()  # an unsent one never does
    status = (tmp_path / "status.json").read_text(encoding="utf-8")
    assert '"disk_low": true' in status


def _daemon_output(url: str, token: str, folder: Path, *, terminal: bool) -> str:
    """Run `push --watch --once` with stderr on a pseudo-terminal or a pipe; what it wrote."""
    import pty
    import subprocess
    import sys

    from tests.processes import ROOT

    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "EXAMVAULT_PUSH_TOKEN": token,
        "TERM": "xterm",
        "COLUMNS": "120",
    }
    # Paced to about a second, so the bar is drawn at least once.
    rate = sum(path.stat().st_size for path in folder.iterdir())
    command = [
        sys.executable, "-m", "services.cli", "push", "--watch", str(folder), "--server", url,
        "--camera", CAMERA_FRONT, "--once", "--settle-seconds", "0",
        "--max-bytes-per-second", str(rate),
    ]  # fmt: skip
    if not terminal:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stderr.decode()
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_plain_lines_otherwise(
    pushed_to: tuple[str, str], make_video: VideoFactory, tmp_path: Path
) -> None:
    url, token = pushed_to
    on_terminal = tmp_path / "tty"
    _place(on_terminal, "20261124T090000+0800.mp4", make_video, 1)
    shown = _daemon_output(url, token, on_terminal, terminal=True)
    assert "━" in shown and "20261124T090000+0800.mp4" in shown  # rich's bar and the file

    in_pipe = tmp_path / "pipe"
    _place(in_pipe, "20261124T090100+0800.mp4", make_video, 2)
    logged = _daemon_output(url, token, in_pipe, terminal=False)
    assert "━" not in logged and "\r" not in logged
    assert [line for line in logged.splitlines() if " sent " in line]
