"""Shared fixtures: a fresh database per test on SQLite and, when EXAMVAULT_TEST_POSTGRES_URL is
set, on PostgreSQL too (a schema of its own per test); real videos made with PyAV; real S3
endpoints (moto's server and a one-node Ceph RGW, tests/s3server.py and tests/ceph.py).

With EXAMVAULT_TEST_STRICT=1 (set by .ci/run) a skipped test fails the run: CI can run
everything, so nothing may quietly not run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.api.app import create_app
from services.context import Services
from services.coverage.schedule import parse_json
from services.ingest.pipeline import Arrival, Outcome
from services.registry import import_registry
from services.settings import Settings, load_settings
from storage.models import Segment
from tests import ceph
from tests.ceph import ceph_endpoint, ceph_rgw_server  # noqa: F401  (fixtures)
from tests.reliability import Reliability
from tests.s3server import moto_endpoint, s3_endpoint  # noqa: F401  (fixtures)

POSTGRES_URL = os.environ.get("EXAMVAULT_TEST_POSTGRES_URL")
STRICT = os.environ.get("EXAMVAULT_TEST_STRICT") == "1"

CAMERA_FRONT = "T1-S1-R1-F"
CAMERA_BACK = "T1-S1-R1-B"
ROOM = "T1-S1-R1"

REGISTRY = {
    "institutions": [
        {
            "code": "T1",
            "name": "测试鉴定所",
            "district": "渝中区",
            "filing_expires": "2029-12-31",
            "sites": [
                {
                    "code": "T1-S1",
                    "address": "测试路1号",
                    "rooms": [
                        {
                            "code": ROOM,
                            "kind": "theory",
                            "cameras": [
                                {"code": CAMERA_FRONT, "position": "front"},
                                {"code": CAMERA_BACK, "position": "back"},
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}


_RELIABILITY = Reliability()
_OUTCOMES: dict[str, bool] = {}


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Iterator[Reliability]:
    """Record what a hostile-input, fault or crash test tried and lost (tests/reliability.py)."""

    class _ForThisTest(Reliability):
        def record(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("test", request.node.nodeid)
            return _RELIABILITY.record(*args, **kwargs)

    yield _ForThisTest()


@pytest.fixture(autouse=True)
def _sigpipe_ignored() -> Iterator[None]:
    """`services.cli.main()` puts SIGPIPE back to its default (so `examvault ... | head` ends
    quietly); called in this process by a test, it would let a later test's write to a server
    it killed end the whole run (exit 141). Python's own setting is restored after each test."""
    yield
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `make reliability` and `make soak` select the tests that feed the record by this mark.
    for item in items:
        if "reliability" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.reliability)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome == "failed":
        _OUTCOMES[report.nodeid] = _OUTCOMES.get(report.nodeid, True) and report.passed


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # The RGW cases' fixed cost, worth seeing on every run that paid it.
    for seconds in ceph.STARTED:
        terminalreporter.write_line(f"Ceph RGW: one-node cluster answered after {seconds:.1f} s")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("EXAMVAULT_RELIABILITY_JSON")
    if target and _RELIABILITY.cases:
        _RELIABILITY.write(Path(target), outcomes=_OUTCOMES)
    if not STRICT:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        print(f"\nEXAMVAULT_TEST_STRICT: {skipped} test(s) skipped; CI runs everything")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _postgres_schema_url(base: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        admin.dispose()
        raise RuntimeError(f"PostgreSQL at {base} does not answer: {exc}") from exc
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'examvault.sqlite3'}"
        return
    if not POSTGRES_URL:
        if STRICT:
            pytest.fail("EXAMVAULT_TEST_POSTGRES_URL is not set but CI must test PostgreSQL")
        pytest.skip("EXAMVAULT_TEST_POSTGRES_URL is not set")
    yield from _postgres_schema_url(POSTGRES_URL)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        spool_settle_seconds=0.0,
        spool_rescan_seconds=0.5,
    )


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = Services.from_settings(settings)
    yield built
    built.close()


@pytest.fixture
def registered(services: Services) -> Services:
    """The services with one institution, one room and two cameras registered."""
    services.db.run_write(
        lambda session: import_registry(session, json.dumps(REGISTRY), actor="test")
    )
    return services


VideoFactory = Callable[..., Path]


@pytest.fixture
def make_video(tmp_path: Path) -> VideoFactory:
    """Write a small real recording with PyAV: `make_video("name.mp4", seconds=4, ...)`."""
    from services.demo.footage import classroom_scene, write_recording

    folder = tmp_path / "videos"
    folder.mkdir(exist_ok=True)

    def make(name: str, *, seconds: float = 3.0, seed: int = 0, **options: Any) -> Path:
        options.setdefault("scene", classroom_scene(320, 240, seed=seed))
        return write_recording(folder / name, seconds=seconds, **options)

    return make


def ingest_file(
    services: Services, camera: str, path: Path, *, received_at: datetime | None = None
) -> Segment:
    """Push `path` through the real pipeline as if dropped in the camera's spool folder."""
    spool = services.settings.resolved_spool_dir / camera
    spool.mkdir(parents=True, exist_ok=True)
    target = spool / path.name
    if target != path:
        target.write_bytes(path.read_bytes())
    result = services.pipeline.ingest(
        Arrival(
            path=target,
            camera_code=camera,
            file_name=path.name,
            source="spool",
            received_at=received_at or datetime.now(UTC),
        )
    )
    assert result.outcome is Outcome.STORED, result
    assert result.segment is not None
    return result.segment


def import_sitting(
    services: Services, code: str, starts_at: datetime, ends_at: datetime, *, room: str = ROOM
) -> None:
    """Import one theory sitting through the real schedule path (validation, listeners)."""
    notes: list[str] = []
    row = {
        "sitting_code": code,
        "room_code": room,
        "kind": "theory",
        "occupation": "电工",
        "level": "四级",
        "starts_at": starts_at.isoformat(),
        "ends_at": ends_at.isoformat(),
    }
    rows = parse_json({"sittings": [row]}, services.settings.zone, notes)
    services.db.run_write(
        lambda session: services.import_schedule(session, rows, actor="test", zone_assumed=notes)
    )


@contextmanager
def serving(services: Services) -> Iterator[str]:
    """A real uvicorn on 127.0.0.1 serving the app (page and API) in a thread; its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # The socket stays bound from here to uvicorn, so no other process can take the port.
    config = uvicorn.Config(
        create_app(services), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
