"""Every call to a dependency is bounded: a blackholed PostgreSQL or object store (the proxy
accepts, then never answers) fails the call within the configured timeouts, as an outage the
API answers 503, instead of holding the thread for libpq's "forever" or minio's 5 x 300 s."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from storage.blobs import StoreUnavailable
from storage.db import Database, DatabaseUnavailable
from storage.s3 import S3BlobStore, Timeouts
from storage.stores import init_blob_store
from tests.faults.proxy import FaultProxy
from tests.s3server import ACCESS_KEY, SECRET_KEY

# Generous against a loaded machine, far below the libraries' defaults.
GIVE_UP_SECONDS = 20


def _within(seconds: float, call: Callable[[], None]) -> tuple[float, BaseException | None]:
    """Run `call` in a thread; (time taken, what it raised). Fails if it is still running
    after `seconds` (the thread is left behind: it may be stuck for good)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    return time.monotonic() - started, outcome[0]


@pytest.fixture
def blackholed_postgres(postgres_url: str) -> Iterator[str]:
    url = make_url(postgres_url)
    proxy = FaultProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxy.blackhole()
    yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.close()


def test_a_blackholed_database_fails_the_connect_within_its_timeout(
    blackholed_postgres: str,
) -> None:
    db = Database(blackholed_postgres)  # the default bound: 5 s

    def query() -> None:
        with db.read() as session:
            session.execute(text("SELECT 1"))

    took, raised = _within(GIVE_UP_SECONDS, query)
    assert isinstance(raised, DatabaseUnavailable), repr(raised)
    assert took < 5 + 3, f"took {took:.1f} s"


def test_a_blackholed_object_store_fails_within_its_timeouts(s3_endpoint: str) -> None:
    bucket = f"ev-{uuid.uuid4().hex[:12]}"
    init_blob_store(
        f"s3://{bucket}?endpoint={s3_endpoint}&secure=false",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )
    host, port = s3_endpoint.rsplit(":", 1)
    proxy = FaultProxy(host, int(port)).start()
    try:
        store = S3BlobStore(
            bucket=bucket,
            endpoint=proxy.endpoint,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            secure=False,
            timeouts=Timeouts(connect_seconds=1, read_seconds=1, retries=1),
        )
        proxy.blackhole()
        took, raised = _within(GIVE_UP_SECONDS, store.check_ready)
    finally:
        proxy.close()
    assert isinstance(raised, StoreUnavailable), repr(raised)
    # Two tries of one second each, and minio's short backoff between them.
    assert took < 5, f"took {took:.1f} s"
