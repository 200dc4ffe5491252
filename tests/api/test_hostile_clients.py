"""Hostile clients against a real `examvault serve` process on 127.0.0.1 (issue 11, hole 3).

Each attack gets its documented answer (docs/operations.md "Connections and timeouts"): a
status with a JSON `code`, or the socket closed by the server within its timeout; nothing is
half-written in the spool; and meanwhile /healthz keeps answering on fresh connections within
100 ms (measured while the attack runs). The server runs with short limits (1 s header and
body timeouts, 100 connections) so the suite stays fast. Every case feeds the reliability
record with what was measured.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import multiprocessing
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import pytest

from services.access.tokens import create_token
from services.context import Services
from services.registry import import_registry
from services.settings import load_settings
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY, VideoFactory
from tests.processes import ROOT, examvault_env, free_port, spawn, wait_for_health
from tests.reliability import Reliability

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MIN_RATE = 2000  # bytes/s: each 1 s window of waiting must bring 2,000 bytes
MAX_CONNECTIONS = 100
# What a busy shared 2-core machine may add to a deadline before the server acts on it.
SLACK = 2.0
HEALTH_BOUND = 0.1  # seconds: /healthz must answer within this while an attack runs
NAME = "20261124T090000+0800.mp4"
CATEGORY = "hostile clients"


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    data_dir: Path
    host_token: str  # a camera host allowed for CAMERA_FRONT only
    admin_token: str

    @property
    def incoming(self) -> Path:
        return self.data_dir / "spool" / ".incoming"

    def staged_uploads(self) -> list[str]:
        return sorted(p.name for p in self.incoming.iterdir()) if self.incoming.exists() else []

    def quarantined(self) -> int:
        folder = self.data_dir / "quarantine"
        return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))


@contextmanager
def _serving(root: Path, *, open_files: int | None = None) -> Iterator[Server]:
    """`examvault serve` with the short limits above; `open_files` sets its RLIMIT_NOFILE."""
    data_dir = root / "var"
    database_url = f"sqlite:///{root / 'examvault.sqlite3'}"
    services = Services.from_settings(load_settings(data_dir=data_dir, database_url=database_url))
    try:
        services.db.run_write(lambda s: import_registry(s, json.dumps(REGISTRY), actor="test"))
        _, host_token = services.db.run_write(
            lambda s: create_token(
                s, role="camera_host", name="host-f", cameras=[CAMERA_FRONT], actor="test"
            )
        )
        _, admin_token = services.db.run_write(
            lambda s: create_token(s, role="admin", name="centre", actor="test")
        )
    finally:
        services.close()
    env = examvault_env(
        data_dir,
        database_url,
        EXAMVAULT_HEALTH_CHECKS="false",
        EXAMVAULT_HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        EXAMVAULT_HTTP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        EXAMVAULT_HTTP_BODY_MIN_BYTES_PER_SECOND=str(MIN_RATE),
        EXAMVAULT_HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        EXAMVAULT_HTTP_KEEP_ALIVE_SECONDS="1",
    )
    port = free_port()
    log = root / "serve.log"
    if open_files is None:
        process = spawn(env, "serve", "--port", str(port), log=log)
    else:
        limit = (open_files, open_files)
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit),
            )
    try:
        wait_for_health(f"http://127.0.0.1:{port}", process, log)
        yield Server(port, process, log, data_dir, host_token, admin_token)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _serving(tmp_path_factory.mktemp("edge")) as started:
        yield started


def _waited_on_cpu(pid: int | str) -> float:
    """Seconds the process's main thread has spent runnable but waiting for a CPU."""
    with open(f"/proc/{pid}/schedstat") as stats:
        return int(stats.read().split()[1]) / 1e9


def _watch_health(port: int, server_pid: int, stop: EventType, results: Connection) -> None:
    samples: list[tuple[float, float]] = []
    failures: Counter[str] = Counter()
    while not stop.is_set():
        queued = (_waited_on_cpu(server_pid), _waited_on_cpu("self"))
        started = time.monotonic()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            answer = connection.getresponse()
            answer.read()
            connection.close()
            if answer.status != 200:
                failures[str(answer.status)] += 1
        except OSError as exc:
            failures[exc.__class__.__name__] += 1
        latency = time.monotonic() - started
        # Time the server's loop or this watcher sat in the run queue because other processes
        # had both CPUs is the shared machine's, not the server's: the larger one is taken off.
        stolen = max(_waited_on_cpu(server_pid) - queued[0], _waited_on_cpu("self") - queued[1])
        samples.append((latency, max(0.0, latency - stolen)))
        if len(samples) == 1:
            results.send("asked once")
        stop.wait(0.05)
    results.send((samples, dict(failures)))


class HealthWatch:
    """Asks /healthz on a fresh connection every 50 ms while an attack runs, from a process of
    its own so that the attacking test's own work does not delay the measurement."""

    def __init__(self, server: Server) -> None:
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._results, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_watch_health,
            args=(server.port, server.process.pid, self._stop, sender),
            daemon=True,
        )
        self.samples: list[tuple[float, float]] = []
        self.failures: dict[str, int] = {}

    def __enter__(self) -> HealthWatch:
        self._process.start()
        # The attack starts once the watch is measuring.
        assert self._results.poll(15) and self._results.recv() == "asked once"
        self._entered = time.monotonic()
        return self

    def __exit__(self, *_: object) -> None:
        # At least ten asks' worth, even when the attack itself was quick.
        time.sleep(max(0.0, self._entered + 0.5 - time.monotonic()))
        self._stop.set()
        if self._results.poll(15):
            self.samples, self.failures = self._results.recv()
        self._process.join(timeout=5)

    def assert_kept_answering(self) -> float:
        """The slowest answer, less CPU the machine gave to others, is within HEALTH_BOUND."""
        assert self.samples, "the watch never asked"
        assert not self.failures, f"/healthz failed during the attack: {self.failures}"
        slowest = max(own for _, own in self.samples)
        wall = max(latency for latency, _ in self.samples)
        assert slowest < HEALTH_BOUND, (
            f"/healthz took up to {slowest * 1000:.0f} ms of its own during the attack "
            f"({wall * 1000:.0f} ms by the clock; {len(self.samples)} asked)"
        )
        return slowest


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed (FIN or reset); reads and drops any answer bytes."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def _wait_closed(
    socks: dict[socket.socket, float], deadline: float, *, trickle: bytes = b""
) -> dict[socket.socket, float]:
    """Seconds from each socket's opening to its closing by the server, until `deadline`;
    with `trickle`, sends it to every open socket every 200 ms (a header that never ends)."""
    closed: dict[socket.socket, float] = {}
    pending = dict(socks)
    while pending and time.monotonic() < deadline:
        if trickle:
            for sock in list(pending):
                try:
                    sock.send(trickle)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    closed[sock] = time.monotonic() - pending.pop(sock)
        readable, _, _ = select.select(list(pending), [], [], 0.2)
        for sock in readable:
            if _closed_by_server(sock):
                closed[sock] = time.monotonic() - pending.pop(sock)
    return closed


def _read_answer(sock: socket.socket, timeout: float) -> tuple[int | None, dict, float]:
    """The first HTTP answer on a raw socket: (status, JSON body or {}, seconds waited);
    status None when the server closed without answering or nothing came in time."""
    sock.setblocking(True)
    sock.settimeout(timeout)
    started = time.monotonic()
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None, {}, time.monotonic() - started
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
        length = int(headers.get(b"content-length", b"0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    except (TimeoutError, ConnectionResetError):
        return None, {}, time.monotonic() - started
    status = int(head.split(b" ", 2)[1])
    try:
        parsed = json.loads(body[:length]) if length else {}
    except ValueError:
        parsed = {"not json": body[:length].decode(errors="replace")}
    return status, parsed, time.monotonic() - started


def _upload_head(token: str, camera: str, name: str, length: int, **headers: str) -> bytes:
    lines = [
        f"PUT /api/v1/ingest/{camera}/{name} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {token}",
        f"Content-Length: {length}",
        *(f"{key}: {value}" for key, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _nothing_staged(server: Server) -> list[str]:
    """The spool's upload staging after the server had time to clean up: must be empty."""
    deadline = time.monotonic() + 5
    while server.staged_uploads() and time.monotonic() < deadline:
        time.sleep(0.1)
    return server.staged_uploads()


def test_slowloris_header_tricklers_are_closed_after_the_header_timeout(
    server: Server, reliability: Reliability
) -> None:
    tricklers: dict[socket.socket, float] = {}
    with HealthWatch(server) as watch:
        for _ in range(200):
            sock = _connect(server.port)
            sock.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            tricklers[sock] = time.monotonic()
        closed = _wait_closed(
            tricklers, time.monotonic() + HEADER_TIMEOUT + SLACK + 3, trickle=b"a"
        )
    for sock in tricklers:
        sock.close()
    reliability.record(
        CATEGORY,
        "slowloris: 200 header tricklers (1 byte per 200 ms)",
        tries=len(tricklers),
        answers={"closed by server": len(closed), "still open": len(tricklers) - len(closed)},
    )
    assert len(closed) == len(tricklers), f"{len(tricklers) - len(closed)} tricklers still open"
    assert max(closed.values()) < HEADER_TIMEOUT + SLACK
    watch.assert_kept_answering()


def test_an_idle_flood_is_capped_and_then_closed(server: Server, reliability: Reliability) -> None:
    base = server.descriptors()
    flood: dict[socket.socket, float] = {}
    peak = base
    with HealthWatch(server) as watch:
        for _ in range(300):
            flood[_connect(server.port)] = time.monotonic()
            if len(flood) % 25 == 0:
                peak = max(peak, server.descriptors())
        time.sleep(0.3)
        peak = max(peak, server.descriptors())
        early = _wait_closed(flood, time.monotonic() + 0.2)
        held = len(flood) - len(early)
        settled = server.descriptors()
        rest = _wait_closed(
            {s: t for s, t in flood.items() if s not in early},
            time.monotonic() + HEADER_TIMEOUT + SLACK + 3,
        )
    for sock in flood:
        sock.close()
    closed = {**early, **rest}
    reliability.record(
        CATEGORY,
        f"idle flood: 300 silent sockets, cap {MAX_CONNECTIONS}",
        tries=len(flood),
        answers={"closed by server": len(closed), "still open": len(flood) - len(closed)},
    )
    # The cap holds: never more than MAX_CONNECTIONS sockets (plus the watch's) held at once.
    assert held <= MAX_CONNECTIONS, f"the server held {held} idle sockets"
    # Descriptors: at most the cap once settled (a burst may briefly hold one listen backlog
    # more, accepted before the protocol sees it: test_the_open_file_limit_is_never_reached).
    assert settled - base <= MAX_CONNECTIONS + 5, f"descriptors {base} -> {settled} (peak {peak})"
    assert len(closed) == len(flood)
    assert max(closed.values()) < HEADER_TIMEOUT + SLACK
    watch.assert_kept_answering()


def test_a_trickled_upload_is_cut_with_408_and_nothing_is_kept(
    server: Server, make_video: VideoFactory, reliability: Reliability
) -> None:
    video = make_video("trickle.mp4", seconds=2).read_bytes()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(_upload_head(server.host_token, CAMERA_FRONT, NAME, len(video)))
    started = time.monotonic()
    with HealthWatch(server) as watch:
        sent = 0
        sock.setblocking(False)
        status = None
        # One byte every 100 ms (10 B/s) until the server answers.
        while time.monotonic() - started < BODY_TIMEOUT * 2 + SLACK + 3:
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                break
            try:
                sent += sock.send(video[sent : sent + 1])
            except OSError:
                break
        status, body, _ = _read_answer(sock, timeout=3)
        waited = time.monotonic() - started
    sock.close()
    staged = _nothing_staged(server)
    reliability.record(
        CATEGORY,
        "upload trickled at 10 bytes/s",
        tries=1,
        answers={f"{status} {body.get('code')}" if status else "no answer": 1},
    )
    assert (status, body.get("code")) == (408, "body_too_slow"), body
    assert waited < BODY_TIMEOUT * 2 + SLACK
    assert staged == []
    watch.assert_kept_answering()


def test_a_content_length_longer_than_the_body_is_cut_with_408(
    server: Server, make_video: VideoFactory, reliability: Reliability
) -> None:
    video = make_video("short.mp4", seconds=2).read_bytes()
    quarantined = server.quarantined()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with HealthWatch(server) as watch:
        sock.sendall(_upload_head(server.host_token, CAMERA_FRONT, NAME, len(video) + 5000))
        sock.sendall(video)  # then silence: 5,000 declared bytes never come
        status, body, waited = _read_answer(sock, timeout=BODY_TIMEOUT * 2 + SLACK + 3)
        closed = _wait_closed({sock: time.monotonic()}, time.monotonic() + 3)
    sock.close()
    staged = _nothing_staged(server)
    reliability.record(
        CATEGORY,
        "Content-Length 5,000 bytes over the body sent",
        tries=1,
        answers={f"{status} {body.get('code')}" if status else "no answer": 1},
    )
    assert (status, body.get("code")) == (408, "body_too_slow"), body
    assert waited < BODY_TIMEOUT * 2 + SLACK and closed, "the connection must close after a cut"
    assert staged == [] and server.quarantined() == quarantined
    watch.assert_kept_answering()


def test_a_content_length_shorter_than_the_body_judges_the_declared_bytes_only(
    server: Server, make_video: VideoFactory, reliability: Reliability
) -> None:
    video = make_video("long.mp4", seconds=2).read_bytes()
    sha256 = hashlib.sha256(video).hexdigest()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with HealthWatch(server) as watch:
        sock.sendall(
            _upload_head(
                server.host_token, CAMERA_FRONT, NAME, 1000, **{"X-Content-SHA256": sha256}
            )
        )
        sock.sendall(video)
        first, first_body, _ = _read_answer(sock, timeout=10)
        # What follows the declared 1,000 bytes is read as the next request: not HTTP.
        second, second_body, waited = _read_answer(sock, timeout=HEADER_TIMEOUT + SLACK + 3)
    sock.close()
    staged = _nothing_staged(server)
    second_answer = f"{second} {second_body.get('code')}" if second else "closed"
    reliability.record(
        CATEGORY,
        "Content-Length 1,000 for a whole video",
        tries=1,
        answers={f"{first} {first_body.get('code')}": 1, f"then {second_answer}": 1},
    )
    assert (first, first_body.get("code")) == (400, "checksum_mismatch"), first_body
    # Then a JSON refusal, or the socket closed by the head deadline; never left hanging.
    assert second is None or (second, second_body.get("code")) in (
        (400, "bad_http_request"),
        (431, "headers_too_large"),
    ), second_body
    assert waited < HEADER_TIMEOUT + SLACK
    assert staged == []
    watch.assert_kept_answering()


@pytest.mark.parametrize(
    ("case", "head"),
    [
        ("one 1 MiB header", b"X-Big: " + b"a" * (1024 * 1024) + b"\r\n"),
        ("20,000 small headers", b"".join(b"X-%d: a\r\n" % i for i in range(20000))),
    ],
)
def test_huge_request_heads_answer_431(
    server: Server, reliability: Reliability, case: str, head: bytes
) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with HealthWatch(server) as watch:
        # The server may answer and close before the rest is sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head + b"\r\n")
        status, body, _ = _read_answer(sock, timeout=5)
    sock.close()
    reliability.record(
        CATEGORY,
        f"huge request head: {case}",
        tries=1,
        answers={f"{status} {body.get('code')}" if status else "closed": 1},
    )
    assert (status, body.get("code")) == (431, "headers_too_large"), body
    watch.assert_kept_answering()


def _put(server: Server, path: str, token: str, body: bytes) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("PUT", path, body=body, headers={"Authorization": f"Bearer {token}"})
    answer = connection.getresponse()
    parsed = json.loads(answer.read() or b"{}")
    connection.close()
    return answer.status, parsed


TRAVERSALS = [
    (f"/api/v1/ingest/{CAMERA_FRONT}/..%2F..%2F..%2Ftmp%2Fescaped.mp4", 400, "bad_file_name"),
    (f"/api/v1/ingest/{CAMERA_FRONT}/../../../tmp/escaped.mp4", 400, "bad_file_name"),
    (f"/api/v1/ingest/{CAMERA_FRONT}/%2E%2E%2Fescaped.mp4", 400, "bad_file_name"),
    (f"/api/v1/ingest/{CAMERA_FRONT}/sub%5C..%5Cescaped.mp4", 400, "bad_file_name"),
    (f"/api/v1/ingest/..%2F..%2Ftmp/{NAME}", 400, "bad_camera_code"),
    (f"/api/v1/ingest/../{NAME}", 400, "bad_camera_code"),
    (f"/api/v1/ingest/%2E%2E/{NAME}", 400, "bad_camera_code"),
    (f"/api/v1/ingest/.hidden/{NAME}", 400, "bad_camera_code"),
]


def test_path_traversal_in_the_file_name_or_camera_code_answers_400(
    server: Server, make_video: VideoFactory, reliability: Reliability
) -> None:
    video = make_video("traversal.mp4", seconds=1).read_bytes()
    quarantined = server.quarantined()
    answers: Counter[str] = Counter()
    with HealthWatch(server) as watch:
        for path, status, code in TRAVERSALS:
            got, body = _put(server, path, server.admin_token, video)
            answers[f"{got} {body.get('code')}"] += 1
            assert (got, body.get("code")) == (status, code), (path, body)
    reliability.record(
        CATEGORY,
        "path traversal in file name or camera code",
        tries=len(TRAVERSALS),
        answers=answers,
    )
    assert not list(Path("/tmp").glob("escaped.mp4*"))
    assert _nothing_staged(server) == [] and server.quarantined() == quarantined
    watch.assert_kept_answering()


def test_a_camera_host_cannot_push_for_another_camera(
    server: Server, make_video: VideoFactory, reliability: Reliability
) -> None:
    video = make_video("cross.mp4", seconds=1).read_bytes()
    quarantined = server.quarantined()
    answers: Counter[str] = Counter()
    with HealthWatch(server) as watch:
        for camera in (CAMERA_BACK, "T9-UNKNOWN-CAM"):
            got, body = _put(server, f"/api/v1/ingest/{camera}/{NAME}", server.host_token, video)
            answers[f"{got} {body.get('code')}"] += 1
    reliability.record(
        CATEGORY, "camera-host token pushing for another camera", tries=2, answers=answers
    )
    assert answers == {"403 forbidden": 2}
    assert _nothing_staged(server) == [] and server.quarantined() == quarantined
    watch.assert_kept_answering()


def test_a_client_gone_mid_upload_is_one_info_line_and_nothing_kept(
    server: Server, make_video: VideoFactory, reliability: Reliability
) -> None:
    video = make_video("gone.mp4", seconds=2).read_bytes()
    log_before = server.log.read_text(errors="replace")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(_upload_head(server.host_token, CAMERA_FRONT, NAME, len(video)))
    sock.sendall(video[: len(video) // 2])
    time.sleep(0.2)
    sock.close()
    staged = _nothing_staged(server)
    time.sleep(0.3)
    new_lines = server.log.read_text(errors="replace")[len(log_before) :]
    said = [line for line in new_lines.splitlines() if "cut by the client" in line]
    reliability.record(
        CATEGORY,
        "client gone mid-upload",
        tries=1,
        answers={"one INFO line" if len(said) == 1 else f"{len(said)} lines": 1},
    )
    assert staged == []
    assert "Traceback" not in new_lines and "ERROR" not in new_lines, new_lines
    assert len(said) == 1 and " INFO " in said[0], new_lines


@pytest.mark.slow  # a server of its own: about 15 s on a busy 2-core machine
def test_the_open_file_limit_is_never_reached_by_an_idle_flood(
    tmp_path: Path, reliability: Reliability
) -> None:
    # 400 descriptors: before, ~370 idle sockets made every accept fail (EMFILE), the log grew
    # by a traceback per pending connection per second, and /healthz went unanswered.
    with _serving(tmp_path, open_files=400) as limited:
        log_lines = len(limited.log.read_text(errors="replace").splitlines())
        flood: dict[socket.socket, float] = {}
        peak = 0
        with HealthWatch(limited) as watch:
            for _ in range(600):
                flood[_connect(limited.port)] = time.monotonic()
                if len(flood) % 50 == 0:
                    peak = max(peak, limited.descriptors())
            time.sleep(0.5)
            peak = max(peak, limited.descriptors())
            closed = _wait_closed(flood, time.monotonic() + HEADER_TIMEOUT + SLACK + 3)
        for sock in flood:
            sock.close()
        logged = limited.log.read_text(errors="replace").splitlines()[log_lines:]
    reliability.record(
        CATEGORY,
        "idle flood: 600 silent sockets against 400 open files",
        tries=len(flood),
        answers={"closed by server": len(closed), "still open": len(flood) - len(closed)},
    )
    assert peak < 400, f"the server reached {peak} open files"
    assert not [line for line in logged if "out of system resource" in line], logged[:5]
    assert len(logged) < 20, f"{len(logged)} log lines during the flood"
    assert len(closed) == len(flood)
    watch.assert_kept_answering()


def test_a_body_still_arriving_after_its_answer_is_cut_after_the_body_timeout(
    server: Server, reliability: Reliability
) -> None:
    # No token: answered 401 before the body is read; the client keeps trickling it.
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(
        f"PUT /api/v1/ingest/{CAMERA_FRONT}/{NAME} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Length: 100000\r\n\r\n".encode()
    )
    status, body, _ = _read_answer(sock, timeout=10)
    sock.setblocking(False)
    answered = time.monotonic()
    closed = _wait_closed({sock: answered}, answered + BODY_TIMEOUT + SLACK + 3, trickle=b"x")
    sock.close()
    reliability.record(
        CATEGORY,
        "body trickled after a 401",
        tries=1,
        answers={f"{status} {body.get('code')}, then {'closed' if closed else 'open'}": 1},
    )
    assert (status, body.get("code")) == (401, "unauthorized")
    assert closed and max(closed.values()) < BODY_TIMEOUT + SLACK


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


# Over the default EXAMVAULT_HTTP_MAX_BODY_BYTES (16 MiB): a body no JSON or form route needs.
OVERSIZED_BODY = 64 * 1024 * 1024


def test_an_unauthenticated_oversized_json_body_is_refused_with_413_before_it_is_read(
    server: Server, reliability: Reliability
) -> None:
    # FastAPI reads a route's JSON body before any dependency runs, the bearer check included:
    # without a cap, anyone could make the server hold gigabytes per request.
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with HealthWatch(server) as watch:
        sock.sendall(
            b"POST /api/v1/sittings/NOPE/exports HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b'Content-Length: %d\r\n\r\n{"reason": "' % OVERSIZED_BODY
        )
        status, body, waited = _read_answer(sock, timeout=BODY_TIMEOUT * 2 + SLACK + 3)
    sock.close()
    reliability.record(
        CATEGORY,
        "unauthenticated JSON body declaring 64 MiB",
        tries=1,
        answers={f"{status} {body.get('code')}" if status else "no answer": 1},
    )
    assert (status, body.get("code")) == (413, "too_large"), body
    assert waited < SLACK
    watch.assert_kept_answering()


def test_an_unauthenticated_chunked_json_body_is_cut_with_413_at_the_limit(
    server: Server, reliability: Reliability
) -> None:
    before = _rss_bytes(server.process.pid)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sent = 0
    chunk = b"a" * (1024 * 1024)
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    # No /healthz watch: pushing 64 MiB through the loopback is what costs the loop here.
    sock.sendall(
        b"POST /api/v1/sittings/NOPE/exports HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'd\r\n{"reason": "a\r\n'
    )
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        while sent < OVERSIZED_BODY:
            sock.sendall(framed)
            sent += len(chunk)
        sock.sendall(b'2\r\n"}\r\n0\r\n\r\n')
    status, body, _ = _read_answer(sock, timeout=10)
    sock.close()
    grown = _rss_bytes(server.process.pid) - before
    reliability.record(
        CATEGORY,
        f"unauthenticated chunked JSON body of 64 MiB (server grew {grown // 2**20} MiB)",
        tries=1,
        answers={f"{status} {body.get('code')}" if status else "no answer": 1},
    )
    assert (status, body.get("code")) == (413, "too_large"), body
    assert grown < 48 * 1024 * 1024, f"the server grew {grown // 2**20} MiB for one request"


@pytest.mark.xfail(
    strict=True,
    reason="every connection is busy with a paced, unauthenticated body (a login form sent at "
    "the minimum pace), so the cap answers newcomers 503 too_many_connections, /healthz "
    "included; fixing it needs a room kept for the cheap routes or evicting the oldest "
    "unauthenticated body, a design choice (docs/operations.md leaves it to the proxy)",
)
def test_slow_unauthenticated_bodies_at_the_cap_do_not_take_healthz_down(
    server: Server, reliability: Reliability
) -> None:
    holders: list[socket.socket] = []
    statuses: Counter[str] = Counter()
    try:
        for _ in range(MAX_CONNECTIONS + 5):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(
                b"POST /api/v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 10000000\r\n\r\nusername="
            )
            holders.append(sock)
        deadline = time.monotonic() + 3 * BODY_TIMEOUT
        while time.monotonic() < deadline:
            for sock in holders:
                with contextlib.suppress(OSError):
                    sock.send(b"a" * (MIN_RATE + 500))  # just over the pace, every second
            time.sleep(0.5)
        for _ in range(5):
            try:
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=3)
                connection.request("GET", "/healthz")
                statuses[str(connection.getresponse().status)] += 1
                connection.close()
            except OSError as exc:
                statuses[exc.__class__.__name__] += 1
    finally:
        for sock in holders:
            sock.close()
    reliability.record(
        CATEGORY,
        f"{MAX_CONNECTIONS + 5} unauthenticated login bodies at the minimum pace (cap "
        f"{MAX_CONNECTIONS}), then /healthz",
        tries=sum(statuses.values()),
        answers=statuses,
    )
    assert statuses == Counter({"200": 5}), statuses
