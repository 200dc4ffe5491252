"""The login throttle over HTTP: concurrent guesses cannot outrun it, and it holds across API
processes and restarts because the count lives in the database."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from services.access import people
from services.api.app import create_app
from services.context import Services
from tests.api.conftest import PASSWORD, make_user
from tests.conftest import serving
from tests.reliability import Reliability

LIMIT = 5  # the app's throttle: 5 failures per name within 15 minutes


class _CountingHasher(PasswordHasher):
    """The real argon2 hasher, counting how many password checks actually ran."""

    def __init__(self) -> None:
        super().__init__()
        self.verifications = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._lock:
            self.verifications += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> _CountingHasher:
    counting = _CountingHasher()
    monkeypatch.setattr(people, "_hasher", counting)
    return counting


def _guess(client: TestClient, name: str, password: str = "wrong password") -> Any:
    return client.post("/api/v1/auth/token", data={"username": name, "password": password})


def test_sixty_concurrent_guesses_get_at_most_limit_password_checks(
    registered: Services, hasher: _CountingHasher, reliability: Reliability
) -> None:
    make_user(registered, "zhao", "supervisor")
    hasher.verifications = 0
    start = threading.Barrier(60)

    with serving(registered) as base_url:

        def guess(_: int) -> int:
            with httpx.Client(base_url=base_url, timeout=60) as http:
                start.wait()
                answer = http.post(
                    "/api/v1/auth/token", data={"username": "zhao", "password": "wrong"}
                )
                return answer.status_code

        with ThreadPoolExecutor(max_workers=60) as pool:
            statuses = Counter(pool.map(guess, range(60)))
        with httpx.Client(base_url=base_url, timeout=60) as http:
            right = http.post("/api/v1/auth/token", data={"username": "zhao", "password": PASSWORD})

    reliability.record(
        "hostile clients",
        "60 concurrent password guesses for one user",
        tries=60,
        answers={**statuses, "password checks run": hasher.verifications},
    )
    assert hasher.verifications <= LIMIT, statuses
    assert statuses[401] <= LIMIT and statuses[401] + statuses[429] == 60, statuses
    # The throttle still holds after the burst, even for the right password.
    assert right.status_code == 429 and int(right.headers["Retry-After"]) > 0


def test_two_api_processes_share_the_count(registered: Services, hasher: _CountingHasher) -> None:
    make_user(registered, "zhao", "supervisor")
    second = Services.from_settings(registered.settings)
    try:
        with TestClient(create_app(registered)) as one, TestClient(create_app(second)) as two:
            answers = [_guess(one if n % 2 else two, "zhao") for n in range(LIMIT)]
            assert [a.status_code for a in answers] == [401] * LIMIT
            hasher.verifications = 0
            for client in (one, two):
                refused = _guess(client, "zhao", PASSWORD)
                assert (refused.status_code, refused.json()["code"]) == (429, "too_many_attempts")
            assert hasher.verifications == 0
    finally:
        second.close()


def test_a_restart_does_not_forgive(registered: Services) -> None:
    make_user(registered, "zhao", "supervisor")
    with TestClient(create_app(registered)) as client:
        for _ in range(LIMIT):
            assert _guess(client, "zhao").status_code == 401
    registered.db.dispose()
    restarted = Services.from_settings(registered.settings)
    try:
        with TestClient(create_app(restarted)) as client:
            refused = _guess(client, "zhao", PASSWORD)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["Retry-After"]) > 0
    finally:
        restarted.close()
