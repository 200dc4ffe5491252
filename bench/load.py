"""Load: camera hosts pushing real segments while supervisors read, against a real `serve`.

`python -m bench.load` (what `make soak` runs) creates a PostgreSQL schema of its own (dropped
afterwards), a data dir in a temporary directory, registers one institution with a room per two
cameras and a sitting per room, makes a camera-host token per camera, supervisors (argon2
passwords) each assigned to some sittings, and encodes distinct small real recordings with PyAV
(2 s, 160x120, H.264 MP4, one per push: every push carries other bytes, so a mix-up could not hide
behind equal hashes). Then it starts `examvault serve` (the real command, health checks and
background jobs on) on 127.0.0.1, and the load generator in a separate process:

- camera hosts: each pushes its segments in order, one every `--push-interval` seconds (spread
  over the interval), `PUT /api/v1/ingest/{camera}/{name}` with `X-Content-SHA256`; a 503 is
  retried after its Retry-After (at most 3 times), as a camera host should;
- supervisors: log in once (arriving over the first 10 s), then loop with a think time: list
  sittings, read one's coverage, list its segments, read a random byte range of one (206),
  checked against the bytes pushed;
- a monitor polls `/healthz` every 0.2 s (the liveness an orchestrator would watch).

Bounded in time (`--seconds`) and count (each host pushes at most its encoded segments). Then
the server is stopped and every acknowledged push (200/201 with a SHA-256) is looked up: its
row must exist with that SHA-256 and its stored bytes must hash to it; `examvault ledger verify`
must pass. Printed and written to bench/results/load.json: requests/s, p50/p95/p99/max per
endpoint, answers by status, errors, /healthz latency, lost and mismatched segments, the
machine and its load average before and after (the machine is shared: read the figures with
it). Targets: zero 5xx, zero lost or mismatched, p99 of coverage reads under 300 ms.

tests/test_load.py runs a bounded version of the same (`run_load`) in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import math
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import httpx

from bench.machine import cpu_model, filesystem_of

logger = logging.getLogger("bench.load")

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
INSTITUTION = "LOAD01"
TARGET_COVERAGE_P99_MS = 300.0
TARGET_HEALTHZ_MS = 100.0
# One small real recording per push: 2 s at 5 fps, a keyframe every second, about 18 KB.
SEGMENT = {"seconds": 2.0, "fps": 5, "width": 160, "height": 120, "gop_seconds": 1.0}
SEGMENT_TEXT = "2 s 160x120 H.264 5 fps MP4, keyframe every 1 s, distinct bytes per push"
HEALTHZ_INTERVAL = 0.2
REQUEST_TIMEOUT = 60.0
RETRIES_AFTER_503 = 3
LOGIN_SPREAD_SECONDS = 10.0
ENDPOINTS = ("push", "login", "sittings", "coverage", "segments", "range", "healthz")


@dataclass
class LoadConfig:
    hosts: int = 50
    supervisors: int = 20
    seconds: float = 180.0
    # A host pushes a 2 s segment every 5 s: 50 hosts make 10 pushes/s, 12 to 120 times what
    # 50 real hosts pushing 1 to 10 minute segments do.
    push_interval: float = 5.0
    # A supervisor's pause between two reviews (varied 0.5x to 1.5x); each review is four
    # requests, so 20 supervisors ask for up to about 80 requests/s.
    think_seconds: float = 1.0
    sittings_per_supervisor: int = 5
    health_checks: bool = True
    seed: int = 20261204


@dataclass
class HostPlan:
    camera: str
    token: str
    # (file name, path of the bytes, sha256) in push order.
    segments: list[tuple[str, str, str]]


@dataclass
class SupervisorPlan:
    name: str
    password: str


@dataclass
class Plan:
    base_url: str
    seconds: float
    push_interval: float
    think_seconds: float
    seed: int
    hosts: list[HostPlan]
    supervisors: list[SupervisorPlan]


@dataclass
class Outcome:
    """What the generator saw: every request's answer, and every acknowledged push."""

    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    answers: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # camera, file name, the sha256 the server answered, the status (200/201)
    acknowledged: list[tuple[str, str, str, int]] = field(default_factory=list)
    answer_mismatches: list[str] = field(default_factory=list)
    range_reads_checked: int = 0
    range_mismatches: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    client_cpu_seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# The generator: its own process, asyncio + httpx (one client, hence own connections, per actor).
# ---------------------------------------------------------------------------------------------


class _Generator:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.outcome = Outcome()
        self.rng = random.Random(plan.seed)
        self.deadline = 0.0
        # sha256 -> bytes: every range read is checked against what a host pushed.
        self.content: dict[str, bytes] = {}
        for host in plan.hosts:
            for _, path, sha256 in host.segments:
                self.content[sha256] = Path(path).read_bytes()

    def _record(self, endpoint: str, started: float, answer: str) -> None:
        self.outcome.samples[endpoint].append((time.perf_counter() - started) * 1000)
        self.outcome.answers[endpoint][answer] += 1

    async def _request(
        self, client: httpx.AsyncClient, endpoint: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self._record(endpoint, started, f"error:{type(exc).__name__}")
            return None
        self._record(endpoint, started, str(response.status_code))
        return response

    async def host(self, host: HostPlan, offset: float) -> None:
        headers = {"Authorization": f"Bearer {host.token}"}
        async with httpx.AsyncClient(
            base_url=self.plan.base_url, headers=headers, timeout=REQUEST_TIMEOUT
        ) as client:
            for index, (name, _, sha256) in enumerate(host.segments):
                due = self.outcome.started + offset + index * self.plan.push_interval
                # Bounded in time: a host that fell behind does not push its backlog after the
                # end (it would stretch the run and measure a drain, not the load).
                if due >= self.deadline or time.perf_counter() >= self.deadline:
                    return
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                data = self.content[sha256]
                for _attempt in range(1 + RETRIES_AFTER_503):
                    response = await self._request(
                        client,
                        "push",
                        "PUT",
                        f"/api/v1/ingest/{host.camera}/{name}",
                        content=data,
                        headers={"X-Content-SHA256": sha256},
                    )
                    if response is None or response.status_code != 503:
                        break
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                if response is not None and response.status_code in (200, 201):
                    answered = response.json().get("sha256", "")
                    self.outcome.acknowledged.append(
                        (host.camera, name, answered, response.status_code)
                    )
                    if answered != sha256:
                        self.outcome.answer_mismatches.append(f"{host.camera}/{name}")

    async def supervisor(self, supervisor: SupervisorPlan) -> None:
        # People arrive over the first seconds, not all in the same instant: twenty argon2
        # checks at once would be a start-up burst, not the steady state this measures.
        await asyncio.sleep(self.rng.uniform(0, min(LOGIN_SPREAD_SECONDS, self.plan.seconds / 4)))
        async with httpx.AsyncClient(
            base_url=self.plan.base_url, timeout=REQUEST_TIMEOUT
        ) as client:
            login = await self._request(
                client,
                "login",
                "POST",
                "/api/v1/auth/token",
                data={"username": supervisor.name, "password": supervisor.password},
            )
            if login is None or login.status_code != 200:
                return
            client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            while time.perf_counter() < self.deadline:
                await self._review_once(client)
                await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.plan.think_seconds)

    async def _review_once(self, client: httpx.AsyncClient) -> None:
        listed = await self._request(client, "sittings", "GET", "/api/v1/sittings")
        if listed is None or listed.status_code != 200:
            return
        sittings = [item["code"] for item in listed.json()["sittings"]]
        if not sittings:
            return
        code = self.rng.choice(sittings)
        await self._request(client, "coverage", "GET", f"/api/v1/sittings/{code}/coverage")
        found = await self._request(client, "segments", "GET", f"/api/v1/sittings/{code}/segments")
        if found is None or found.status_code != 200:
            return
        segments = [item for camera in found.json()["cameras"] for item in camera["segments"]]
        if not segments:
            return
        segment = self.rng.choice(segments)
        size = int(segment["size"])
        first = self.rng.randrange(size)
        last = min(size - 1, first + self.rng.randrange(1, 64 * 1024))
        read = await self._request(
            client,
            "range",
            "GET",
            f"/api/v1/segments/{segment['id']}/content",
            headers={"Range": f"bytes={first}-{last}"},
        )
        if read is None or read.status_code != 206:
            return
        self.outcome.range_reads_checked += 1
        expected = self.content.get(segment["sha256"])
        if expected is None or read.content != expected[first : last + 1]:
            self.outcome.range_mismatches.append(f"segment {segment['id']} bytes {first}-{last}")

    async def monitor(self) -> None:
        # The same generous timeout as every request: a slow answer is a figure, not an error.
        async with httpx.AsyncClient(
            base_url=self.plan.base_url, timeout=REQUEST_TIMEOUT
        ) as client:
            while time.perf_counter() < self.deadline:
                await self._request(client, "healthz", "GET", "/healthz")
                await asyncio.sleep(HEALTHZ_INTERVAL)

    async def run(self) -> Outcome:
        cpu_before = _cpu_seconds()
        self.outcome.started = time.perf_counter()
        self.deadline = self.outcome.started + self.plan.seconds
        interval = self.plan.push_interval
        tasks = [
            self.host(host, offset=interval * index / max(1, len(self.plan.hosts)))
            for index, host in enumerate(self.plan.hosts)
        ]
        tasks += [self.supervisor(supervisor) for supervisor in self.plan.supervisors]
        tasks.append(self.monitor())
        await asyncio.gather(*tasks)
        self.outcome.finished = time.perf_counter()
        self.outcome.client_cpu_seconds = _cpu_seconds() - cpu_before
        return self.outcome


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def generate(plan_path: Path, out_path: Path) -> int:
    """The generator process: read the plan, run it, write what it saw."""
    raw = json.loads(plan_path.read_text(encoding="utf-8"))
    plan = Plan(
        **{
            **raw,
            "hosts": [HostPlan(**host) for host in raw["hosts"]],
            "supervisors": [SupervisorPlan(**item) for item in raw["supervisors"]],
        }
    )
    outcome = asyncio.run(_Generator(plan).run())
    document = {
        **{name: getattr(outcome, name) for name in Outcome.__dataclass_fields__},
        # Plain dicts: dataclasses.asdict cannot rebuild a defaultdict on Python 3.11.
        "samples": dict(outcome.samples),
        "answers": {key: dict(value) for key, value in outcome.answers.items()},
    }
    out_path.write_text(json.dumps(document), encoding="utf-8")
    return 0


# ---------------------------------------------------------------------------------------------
# Setup, the server, the check afterwards.
# ---------------------------------------------------------------------------------------------


def _registry(config: LoadConfig) -> tuple[dict[str, Any], list[str], list[str]]:
    """The registry JSON, its room codes and its camera codes: a room per two cameras (front,
    back), one camera per camera host."""
    rooms: dict[str, list[dict[str, str]]] = {}
    cameras: list[str] = []
    for index in range(config.hosts):
        room = f"{INSTITUTION}-S1-R{index // 2 + 1:03d}"
        front = index % 2 == 0
        code = f"{room}-{'F' if front else 'B'}"
        rooms.setdefault(room, []).append({"code": code, "position": "front" if front else "back"})
        cameras.append(code)
    registry = {
        "institutions": [
            {
                "code": INSTITUTION,
                "name": "负载测试鉴定所",
                "district": "渝中区",
                "sites": [
                    {
                        "code": f"{INSTITUTION}-S1",
                        "address": "负载路1号",
                        "rooms": [
                            {"code": room, "kind": "practical", "cameras": listed}
                            for room, listed in rooms.items()
                        ],
                    }
                ],
            }
        ]
    }
    return registry, list(rooms), cameras


def _encode_segments(
    work: Path, cameras: list[str], per_host: int, first_start: datetime
) -> dict[str, list[tuple[str, str, str]]]:
    """Distinct real recordings, back to back per camera, named by their wall-clock start."""
    from services.demo.footage import classroom_scene, write_recording

    folder = work / "segments"
    folder.mkdir(parents=True, exist_ok=True)
    planned: dict[str, list[tuple[str, str, str]]] = {}
    for host_index, camera in enumerate(cameras):
        listed = planned.setdefault(camera, [])
        for index in range(per_host):
            start = first_start + timedelta(seconds=index * SEGMENT["seconds"])
            name = f"{start:%Y%m%dT%H%M%S}Z.mp4"
            path = folder / f"{camera}_{name}"
            seed = host_index * 10_000 + index
            write_recording(
                path,
                scene=classroom_scene(SEGMENT["width"], SEGMENT["height"], seed=seed),
                **SEGMENT,
            )
            listed.append((name, str(path), hashlib.sha256(path.read_bytes()).hexdigest()))
    return planned


def prepare(
    database_url: str, data_dir: Path, work: Path, config: LoadConfig
) -> tuple[Plan, dict[str, Any]]:
    """Registry, sittings, tokens, supervisors and their assignments, and the segments; all
    through the services' own functions, untimed, before the server starts."""
    from services.access.people import assign, create_user
    from services.access.tokens import create_token
    from services.context import Services
    from services.coverage.schedule import parse_json
    from services.registry import import_registry
    from services.settings import load_settings

    settings = load_settings(
        data_dir=data_dir, database_url=database_url, storage_url=None, spool_dir=None
    )
    services = Services.from_settings(settings)
    registry, rooms, cameras = _registry(config)
    now = datetime.now(UTC).replace(microsecond=0)
    per_host = math.ceil(config.seconds / config.push_interval) + 1
    # The recordings lie in the past (a start in the future is a clock flag), back to back.
    first_start = now - timedelta(hours=2)
    sitting_end = first_start + timedelta(hours=1)
    sittings = [f"LOAD-{first_start:%Y%m%d}-{index:03d}" for index in range(1, len(rooms) + 1)]
    encoding_started = time.perf_counter()
    planned = _encode_segments(work, cameras, per_host, first_start)
    encoding_seconds = time.perf_counter() - encoding_started
    rng = random.Random(config.seed)
    supervisors = [
        SupervisorPlan(name=f"load-supervisor-{index:02d}", password=f"pw-{uuid.uuid4().hex}")
        for index in range(config.supervisors)
    ]
    try:
        services.db.run_write(
            lambda session: import_registry(session, json.dumps(registry), actor="bench")
        )
        notes: list[str] = []
        rows = parse_json(
            {
                "sittings": [
                    {
                        "sitting_code": code,
                        "room_code": room,
                        "kind": "practical",
                        "occupation": "电工",
                        "level": "四级",
                        "starts_at": first_start.isoformat(),
                        "ends_at": sitting_end.isoformat(),
                    }
                    for code, room in zip(sittings, rooms, strict=True)
                ]
            },
            settings.zone,
            notes,
        )
        services.db.run_write(
            lambda session: services.import_schedule(
                session, rows, actor="bench", zone_assumed=notes
            )
        )
        hosts = []
        for camera in cameras:
            _, token = services.db.run_write(
                lambda session, c=camera: create_token(
                    session, role="camera_host", name=f"host-{c}", cameras=[c], actor="bench"
                )
            )
            hosts.append(HostPlan(camera=camera, token=token, segments=planned[camera]))
        for index, supervisor in enumerate(supervisors):
            services.db.run_write(
                lambda session, s=supervisor: create_user(
                    session, name=s.name, role="supervisor", password=s.password, actor="bench"
                )
            )
            # Every sitting has a supervisor; each supervisor has a few, as when on duty.
            own = sittings[index % len(sittings)]
            others = rng.sample([code for code in sittings if code != own], len(sittings) - 1)
            for code in [own, *others][: max(1, config.sittings_per_supervisor)]:
                services.db.run_write(
                    lambda session, s=supervisor, c=code: assign(
                        session,
                        user_name=s.name,
                        sitting_code=c,
                        valid_from=now - timedelta(hours=1),
                        valid_until=now + timedelta(days=1),
                        actor="bench",
                    )
                )
    finally:
        services.close()
    plan = Plan(
        base_url="",
        seconds=config.seconds,
        push_interval=config.push_interval,
        think_seconds=config.think_seconds,
        seed=config.seed,
        hosts=hosts,
        supervisors=supervisors,
    )
    segment_bytes = [Path(path).stat().st_size for host in hosts for _, path, _ in host.segments]
    workload = {
        "rooms": len(rooms),
        "cameras": len(cameras),
        "sittings": len(sittings),
        "segments_encoded": len(segment_bytes),
        "segment": SEGMENT_TEXT,
        "segment_bytes_mean": round(sum(segment_bytes) / max(1, len(segment_bytes))),
        "encoding_seconds": round(encoding_seconds, 1),
    }
    return plan, workload


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def examvault_env(data_dir: Path, database_url: str, config: LoadConfig) -> dict[str, str]:
    # EXAMVAULT_* of the caller's shell must not turn this into another setup.
    env = {key: value for key, value in os.environ.items() if not key.startswith("EXAMVAULT_")}
    env.update(
        EXAMVAULT_DATA_DIR=str(data_dir),
        EXAMVAULT_DATABASE_URL=database_url,
        EXAMVAULT_HEALTH_CHECKS="true" if config.health_checks else "false",
        # One `serve` doing all the work (bench/scale.py measures the job queue's workers).
        EXAMVAULT_QUEUE="in_process",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return env


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    """`examvault serve` on 127.0.0.1 (the real command); its base URL and pid."""
    port = free_port()
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"examvault serve did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cpu_seconds_of(pid: int) -> float:
    """A live process's utime + stime, ended threads included, from /proc (0 without it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pressure() -> dict[str, int]:
    """The kernel's stall totals (PSI, microseconds): time some task waited for a CPU, and some
    or every task waited for I/O; empty where the kernel has none."""
    totals: dict[str, int] = {}
    for resource_name in ("cpu", "io"):
        try:
            lines = Path(f"/proc/pressure/{resource_name}").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            kind, *fields = line.split()
            total = dict(field.split("=") for field in fields)["total"]
            totals[f"{resource_name}_{kind}"] = int(total)
    return totals


def _run_queue_seconds(pid: int) -> float:
    """How long a live process's threads were runnable but waiting for a CPU (what other work
    on a shared machine costs it), from /proc/PID/task/*/schedstat. A lower bound: threads that
    ended meanwhile (idle pool threads do) are not counted; 0 where there is no /proc."""
    waiting = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            waiting += int(stat.read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return waiting / 1e9


@dataclass
class Verification:
    acknowledged: int
    lost: list[str]
    mismatched: list[str]
    stored_unacknowledged: int
    ledger_verify_exit: int
    ledger_verify_output: str


def verify(
    database_url: str, data_dir: Path, env: dict[str, str], acknowledged: list[list[Any]]
) -> Verification:
    """Every acknowledged push is a segment row with the answered SHA-256, whose stored bytes
    hash to it; then `examvault ledger verify` (the real command) on the whole ledger."""
    from sqlalchemy import select

    from services.settings import load_settings
    from storage.db import Database
    from storage.models import Camera, Segment
    from storage.stores import open_blob_store

    settings = load_settings(
        data_dir=data_dir, database_url=database_url, storage_url=None, spool_dir=None
    )
    db = Database(database_url)
    store = open_blob_store(settings.resolved_storage_url)
    lost: list[str] = []
    mismatched: list[str] = []
    try:
        with db.read() as session:
            rows = {
                (camera, name): (sha256, key)
                for camera, name, sha256, key in session.execute(
                    select(Camera.code, Segment.original_name, Segment.sha256, Segment.blob_key)
                    .join(Camera, Segment.camera_id == Camera.id)
                    .where(Camera.code.like(f"{INSTITUTION}-%"))
                )
            }
        for camera, name, sha256, _status in acknowledged:
            found = rows.get((camera, name))
            if found is None:
                lost.append(f"{camera}/{name}: no segment row")
                continue
            if found[0] != sha256:
                mismatched.append(f"{camera}/{name}: row {found[0]}, answered {sha256}")
                continue
            digest = hashlib.sha256()
            try:
                for chunk in store.read(found[1]):
                    digest.update(chunk)
            except Exception as exc:  # a missing or unreadable blob is lost evidence
                lost.append(f"{camera}/{name}: blob unreadable ({exc})")
                continue
            if digest.hexdigest() != sha256:
                mismatched.append(f"{camera}/{name}: stored bytes hash {digest.hexdigest()}")
        stored_unacknowledged = len(rows) - len({(c, n) for c, n, _, _ in acknowledged})
    finally:
        db.dispose()
    checked = subprocess.run(
        [sys.executable, "-m", "services.cli", "ledger", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Verification(
        acknowledged=len(acknowledged),
        lost=lost,
        mismatched=mismatched,
        stored_unacknowledged=stored_unacknowledged,
        ledger_verify_exit=checked.returncode,
        ledger_verify_output=(checked.stdout + checked.stderr).strip()[-2000:],
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarise(outcome: dict[str, Any]) -> dict[str, Any]:
    wall = outcome["finished"] - outcome["started"]
    endpoints: dict[str, Any] = {}
    for name in ENDPOINTS:
        latencies = outcome["samples"].get(name, [])
        answers = outcome["answers"].get(name, {})
        if not latencies:
            continue
        endpoints[name] = {
            "requests": len(latencies),
            "per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(percentile(latencies, 0.50), 1),
            "p95_ms": round(percentile(latencies, 0.95), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1),
            "answers": dict(sorted(answers.items())),
        }
    answers: Counter[str] = Counter()
    for per_endpoint in outcome["answers"].values():
        answers.update(per_endpoint)
    requests = sum(answers.values())
    return {
        "wall_seconds": round(wall, 1),
        "requests": requests,
        "requests_per_s": round(requests / wall, 1),
        "answers": dict(sorted(answers.items())),
        "server_errors_5xx": sum(v for k, v in answers.items() if k.startswith("5")),
        "transport_errors": sum(v for k, v in answers.items() if k.startswith("error")),
        "endpoints": endpoints,
    }


@dataclass
class LoadReport:
    config: LoadConfig
    workload: dict[str, Any]
    figures: dict[str, Any]
    verification: Verification
    range_reads_checked: int
    range_mismatches: list[str]
    answer_mismatches: list[str]
    client_cpu_seconds: float
    server_cpu_seconds: float
    server_run_queue_seconds: float
    # Share of the run's wall time in which some task on the machine waited for a CPU, and
    # some / every task waited for I/O (PSI): how busy the shared machine was meanwhile.
    stalled_share: dict[str, float]
    load_average: dict[str, list[float]]

    @property
    def server_errors(self) -> int:
        return int(self.figures["server_errors_5xx"])

    @property
    def lost(self) -> int:
        return len(self.verification.lost)

    @property
    def mismatched(self) -> int:
        return (
            len(self.verification.mismatched)
            + len(self.range_mismatches)
            + len(self.answer_mismatches)
        )

    def answers(self, endpoint: str) -> dict[str, int]:
        endpoints = self.figures["endpoints"]
        return dict(endpoints[endpoint]["answers"]) if endpoint in endpoints else {}


def run_load(database_url: str, work: Path, config: LoadConfig) -> LoadReport:
    """Set up, serve, generate load from another process, stop, verify."""
    data_dir = work / "var"
    plan, workload = prepare(database_url, data_dir, work, config)
    env = examvault_env(data_dir, database_url, config)
    load_before = list(os.getloadavg())
    with serving(env, work / "serve.log") as (base, pid):
        plan.base_url = base
        plan_path, out_path = work / "plan.json", work / "outcome.json"
        plan_path.write_text(json.dumps(asdict(plan)), encoding="utf-8")
        cpu_before, queued_before = _cpu_seconds_of(pid), _run_queue_seconds(pid)
        pressure_before, wall_before = _pressure(), time.monotonic()
        generator = subprocess.run(
            [sys.executable, "-m", "bench.load", "generate", str(plan_path), str(out_path)],
            cwd=ROOT,
            env=env,
            timeout=config.seconds + 10 * REQUEST_TIMEOUT,
        )
        cpu_after, queued_after = _cpu_seconds_of(pid), _run_queue_seconds(pid)
        pressure_after, wall = _pressure(), time.monotonic() - wall_before
        load_after = list(os.getloadavg())
    if generator.returncode != 0:
        raise RuntimeError(f"the load generator failed with exit {generator.returncode}")
    outcome = json.loads(out_path.read_text(encoding="utf-8"))
    verification = verify(database_url, data_dir, env, outcome["acknowledged"])
    return LoadReport(
        config=config,
        workload=workload,
        figures=summarise(outcome),
        verification=verification,
        range_reads_checked=outcome["range_reads_checked"],
        range_mismatches=outcome["range_mismatches"],
        answer_mismatches=outcome["answer_mismatches"],
        client_cpu_seconds=round(outcome["client_cpu_seconds"], 1),
        server_cpu_seconds=round(cpu_after - cpu_before, 1),
        server_run_queue_seconds=round(max(0.0, queued_after - queued_before), 1),
        stalled_share={
            name: round((pressure_after[name] - pressure_before[name]) / 1e6 / wall, 3)
            for name in pressure_after
            if name in pressure_before and not name.startswith("cpu_full")
        },
        load_average={
            "before_1_5_15m": [round(v, 2) for v in load_before],
            "after_1_5_15m": [round(v, 2) for v in load_after],
        },
    )


# ---------------------------------------------------------------------------------------------
# The benchmark's own PostgreSQL schema, the results file, the command line.
# ---------------------------------------------------------------------------------------------


@contextmanager
def own_schema(base_url: str, prefix: str = "bench_load") -> Iterator[tuple[str, str]]:
    """A fresh schema for this run (bench/scale.py's too), dropped afterwards; the URL using it
    and the server's version."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            version = str(connection.execute(text("SHOW server_version")).scalar())
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False), version
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def machine(scratch: Path) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "av": av.__version__,
        "httpx": httpx.__version__,
        "scratch_filesystem": filesystem_of(scratch),
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def results(report: LoadReport, scratch: Path, database: str) -> dict[str, Any]:
    figures = report.figures
    coverage_p99 = figures["endpoints"].get("coverage", {}).get("p99_ms")
    healthz = figures["endpoints"].get("healthz", {})
    return {
        "benchmark": "load",
        "machine": machine(scratch),
        "setup": {
            "database": database,
            "blob_store": "local (embedded default)",
            "server": "`examvault serve` (1 uvicorn process, ingest watcher, background jobs, "
            f"health checks {'on' if report.config.health_checks else 'off'}) on 127.0.0.1",
            "generator": "separate process: asyncio + httpx, one client per host/supervisor",
            "hosts": report.config.hosts,
            "supervisors": report.config.supervisors,
            "seconds": report.config.seconds,
            "push_interval_seconds": report.config.push_interval,
            "supervisor_think_seconds": report.config.think_seconds,
            "supervisor_loop": "list sittings, coverage, segments, a random range (<= 64 KiB)",
            "load_average": report.load_average,
            "server_cpu_seconds": report.server_cpu_seconds,
            # Summed over the server's threads (those alive at the end: a lower bound): seconds
            # they were ready to run but every core was busy (with other threads of it, the
            # generator, PostgreSQL or other work on the machine).
            "server_run_queue_seconds_at_least": report.server_run_queue_seconds,
            "machine_stalled_share": report.stalled_share,
            "generator_cpu_seconds": report.client_cpu_seconds,
        },
        "workload": report.workload,
        "totals": {key: value for key, value in figures.items() if key != "endpoints"},
        "endpoints": figures["endpoints"],
        "evidence": {
            "acknowledged": report.verification.acknowledged,
            "lost": len(report.verification.lost),
            "mismatched": len(report.verification.mismatched),
            "answered_other_sha256": len(report.answer_mismatches),
            "stored_without_acknowledgement": report.verification.stored_unacknowledged,
            "range_reads_checked": report.range_reads_checked,
            "range_mismatches": len(report.range_mismatches),
            "ledger_verify_exit": report.verification.ledger_verify_exit,
            "examples": (
                report.verification.lost + report.verification.mismatched + report.range_mismatches
            )[:10],
        },
        "targets": {
            "zero_5xx": {"measured": report.server_errors, "met": report.server_errors == 0},
            "zero_lost_or_mismatched": {
                "measured": report.lost + report.mismatched,
                "met": report.lost + report.mismatched == 0,
            },
            "coverage_p99_ms": {
                "target": TARGET_COVERAGE_P99_MS,
                "measured": coverage_p99,
                "met": coverage_p99 is not None and coverage_p99 < TARGET_COVERAGE_P99_MS,
            },
            "healthz_max_ms": {
                "target": TARGET_HEALTHZ_MS,
                "measured": healthz.get("max_ms"),
                "p99_ms": healthz.get("p99_ms"),
                "met": healthz.get("max_ms", math.inf) < TARGET_HEALTHZ_MS,
            },
        },
    }


def print_report(document: dict[str, Any]) -> None:
    totals = document["totals"]
    print(
        f"{totals['requests']} requests in {totals['wall_seconds']} s: "
        f"{totals['requests_per_s']} requests/s; answers {totals['answers']}"
    )
    print(
        f"{'endpoint':<10} {'requests':>8} {'per s':>7} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
    )
    for name, row in document["endpoints"].items():
        print(
            f"{name:<10} {row['requests']:>8} {row['per_s']:>7} {row['p50_ms']:>6} ms "
            f"{row['p95_ms']:>5} ms {row['p99_ms']:>5} ms {row['max_ms']:>5} ms  {row['answers']}"
        )
    evidence = document["evidence"]
    print(
        f"acknowledged {evidence['acknowledged']}, lost {evidence['lost']}, mismatched "
        f"{evidence['mismatched']}, range reads checked {evidence['range_reads_checked']} "
        f"({evidence['range_mismatches']} mismatched), ledger verify exit "
        f"{evidence['ledger_verify_exit']}"
    )
    for name, target in document["targets"].items():
        print(f"target {name}: {'met' if target['met'] else 'NOT met'} ({target['measured']})")
    setup = document["setup"]
    print(
        f"server threads: {setup['server_cpu_seconds']} s on a CPU, "
        f"at least {setup['server_run_queue_seconds_at_least']} s waiting for one; generator "
        f"{setup['generator_cpu_seconds']} s CPU; load average {setup['load_average']}; "
        f"machine stalled share (PSI) {setup['machine_stalled_share']}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = LoadConfig()
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Camera hosts pushing and supervisors reading against a real serve.",
    )
    parser.add_argument("--hosts", type=int, default=defaults.hosts)
    parser.add_argument("--supervisors", type=int, default=defaults.supervisors)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--push-interval", type=float, default=defaults.push_interval)
    parser.add_argument("--think", type=float, default=defaults.think_seconds)
    parser.add_argument("--no-health-checks", action="store_true")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("EXAMVAULT_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="PostgreSQL to run on (a schema of its own is created and dropped)",
    )
    parser.add_argument("--scratch", type=Path, help="where the data dir goes (default: tmp)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "load.json")
    sub = parser.add_subparsers(dest="command")
    generator = sub.add_parser("generate", help="internal: the load generator process")
    generator.add_argument("plan", type=Path)
    generator.add_argument("out", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "generate":
        return generate(args.plan, args.out)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = LoadConfig(
        hosts=args.hosts,
        supervisors=args.supervisors,
        seconds=args.seconds,
        push_interval=args.push_interval,
        think_seconds=args.think,
        health_checks=not args.no_health_checks,
    )
    scratch = Path(tempfile.mkdtemp(prefix="examvault-load-", dir=args.scratch))
    try:
        with own_schema(args.postgres) as (url, version):
            print(
                f"load: {config.hosts} hosts, {config.supervisors} supervisors, "
                f"{config.seconds:g} s on PostgreSQL {version} (encoding segments first)",
                flush=True,
            )
            report = run_load(url, scratch, config)
        document = results(report, scratch, f"postgresql {version} (a schema of its own)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print_report(document)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
