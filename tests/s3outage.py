"""An S3 endpoint a test can take down and bring back: moto's server in this process, stopped
for the outage (clients then get connection refused) and started again on the same port.
moto keeps its buckets and objects in the process, so after the outage they are all there."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from tests.s3server import ACCESS_KEY, SECRET_KEY


class SwitchableS3:
    """moto's S3 server on one port, which the test stops (an outage: connection refused)
    and starts again."""

    def __init__(self) -> None:
        self._saved = {
            name: os.environ.get(name)
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
        }
        os.environ.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_DEFAULT_REGION="us-east-1",
        )
        self._server: ThreadedMotoServer | None = ThreadedMotoServer(
            ip_address="127.0.0.1", port=0, verbose=False
        )
        self._server.start()
        host, self.port = self._server.get_host_and_port()
        self.endpoint = f"{host}:{self.port}"

    def down(self) -> None:
        assert self._server is not None
        self._server.stop()
        self._server = None

    def up(self) -> None:
        assert self._server is None
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def switchable_s3() -> Iterator[SwitchableS3]:
    s3 = SwitchableS3()
    yield s3
    s3.close()
