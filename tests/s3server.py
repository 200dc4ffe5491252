"""Real S3 endpoints for tests, over plain HTTP on 127.0.0.1: moto's server in a thread, and a
one-node Ceph cluster's RGW (tests/ceph.py). `s3_endpoint` is parametrised over both, so every
test that takes it runs on each: moto is quick and lenient (no Object Lock enforcement), RGW is
a real engine that enforces COMPLIANCE retention and legal holds.

Import the fixtures in a conftest with `from tests.s3server import s3_endpoint  # fixture`.
Both are signed with `ACCESS_KEY` / `SECRET_KEY` (moto accepts any; RGW has that user).
Where moto and RGW differ from each other and from AWS: FIELD-NOTES.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from moto.server import ThreadedMotoServer

ACCESS_KEY = "examvault-test"
SECRET_KEY = "examvault-test-secret"

_CREDENTIAL_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """Run moto's server until the block ends; yields its endpoint as "127.0.0.1:PORT".

    Port 0 lets the kernel pick a free port at bind time, so parallel runs cannot race for one.
    The dummy AWS_* variables keep anything boto-based in the process off real credentials.
    """
    saved = {name: os.environ.get(name) for name in _CREDENTIAL_ENV}
    os.environ.update(_CREDENTIAL_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"{host}:{port}"
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the whole session; tests isolate themselves with fresh buckets."""
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session", params=["moto", pytest.param("ceph", marks=pytest.mark.ceph)])
def s3_endpoint(request: pytest.FixtureRequest) -> str:
    """ "127.0.0.1:PORT" of moto's server, then of Ceph RGW; each started once per session.

    Session-scoped, so pytest runs all the moto cases, then all the RGW ones.
    `-m "not ceph"` leaves RGW out (locally, for speed; CI runs both)."""
    return str(request.getfixturevalue(f"{request.param}_endpoint"))
