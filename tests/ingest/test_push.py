"""The one-shot `examvault push FILE...` against servers that misbehave: a connection reset, a
server that never answers, a 503 with `Retry-After`. Each failure is one line on stderr, the
rest of the batch is still tried, and the exit code says that something failed."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from tests.conftest import CAMERA_FRONT, VideoFactory
from tests.processes import run_cli


@contextmanager
def raw_server(behaviour: str) -> Iterator[tuple[str, list[float]]]:
    """A TCP server that reads the request head, then resets the connection (`reset`), closes
    it (`close`) or never answers (`silent`). Yields its URL and the time of each connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    accepted: list[float] = []
    held: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(time.monotonic())
            connection.settimeout(2)
            with suppress(OSError):
                connection.recv(4096)
            if behaviour == "close":
                connection.close()  # FIN with the body unread: the client's writes get EPIPE
            elif behaviour == "reset":
                # SO_LINGER 0: close() sends RST, what a crashed proxy or NAT does.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                connection.close()
            else:
                held.append(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        done.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


def _push(server: str, files: list[Path], *extra: str) -> tuple[int, str, str]:
    # No EXAMVAULT_* settings: a camera host has none, and push must not need them.
    env = {
        "PYTHONUNBUFFERED": "1",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "EXAMVAULT_PUSH_TOKEN": "t" * 32,
    }
    done = run_cli(
        env,
        "push",
        "--server",
        server,
        "--camera",
        CAMERA_FRONT,
        *extra,
        *map(str, files),
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr


def _two_files(make_video: VideoFactory) -> list[Path]:
    return [
        make_video("20261124T090000+0800.mp4", seconds=1, seed=1),
        make_video("20261124T090100+0800.mp4", seconds=1, seed=2),
    ]


def test_push_connection_reset_is_one_line_per_file_and_the_batch_goes_on(
    make_video: VideoFactory,
) -> None:
    files = _two_files(make_video)
    with raw_server("reset") as (url, accepted):
        code, _out, err = _push(url, files, "--retries", "0")
    assert code == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    for path, line in zip(files, lines, strict=True):
        assert line.startswith(f"{path}: server unreachable"), line
    assert len(accepted) == 2  # the second file was tried after the first failed
    assert all(path.exists() for path in files)


def test_push_read_timeout_is_one_line_per_file(make_video: VideoFactory) -> None:
    files = _two_files(make_video)
    with raw_server("silent") as (url, accepted):
        code, _out, err = _push(url, files, "--retries", "0", "--timeout", "1")
    assert code == 1
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        f"{path}: server unreachable: no answer within 1 s" for path in files
    ]
    assert len(accepted) == 2


def test_push_retries_a_reset_and_stops_after_its_retries(make_video: VideoFactory) -> None:
    files = _two_files(make_video)[:1]
    with raw_server("reset") as (url, accepted):
        code, _out, err = _push(url, files, "--retries", "2")
    assert code == 1
    assert len(accepted) == 3
    assert err.count("trying again in") == 2


class _BusyOnce(BaseHTTPRequestHandler):
    """503 busy with Retry-After: 3 on the first PUT, then 201 with the body's SHA-256."""

    arrivals: ClassVar[list[float]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.arrivals.append(time.monotonic())
        if len(self.arrivals) == 1:
            answer, status = {"code": "busy", "message": "retry later"}, 503
        else:
            answer, status = {"sha256": hashlib.sha256(body).hexdigest(), "status": "stored"}, 201
        data = json.dumps(answer).encode()
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "3")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


def test_push_waits_as_long_as_retry_after_says(make_video: VideoFactory) -> None:
    # Backoff alone would try again after 1-2 s; the server asked for 3.
    path = make_video("20261124T090000+0800.mp4", seconds=1)
    _BusyOnce.arrivals = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BusyOnce)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, out, err = _push(f"http://127.0.0.1:{server.server_port}", [path], "--remove")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0, err
    assert len(_BusyOnce.arrivals) == 2
    assert _BusyOnce.arrivals[1] - _BusyOnce.arrivals[0] >= 2.9
    assert json.loads(out.splitlines()[-1])["removed_local_copy"] is True
    assert not path.exists()


def test_push_survives_a_server_that_closes_mid_body(tmp_path: Path) -> None:
    # Writing on a connection the server closed raises EPIPE; with SIGPIPE at its default
    # the client would die silently (exit -13) in the middle of the batch.
    files = []
    for minute in range(2):
        path = tmp_path / f"20261124T09{minute:02d}00+0800.mp4"
        path.write_bytes(os.urandom(8 * 1024 * 1024))
        files.append(path)
    with raw_server("close") as (url, accepted):
        code, _out, err = _push(url, files, "--retries", "0")
    assert code == 1, err
    assert "Traceback" not in err
    assert [line.split(":")[0] for line in err.strip().splitlines()] == list(map(str, files))
    assert len(accepted) == 2
