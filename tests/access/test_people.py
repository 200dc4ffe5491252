"""The login throttle: refuses after `limit` failures per name, forgives with time or success,
and keeps memory bounded however many names a guesser invents."""

from __future__ import annotations

import pytest

from services.access.people import LoginThrottle


def test_refuses_after_the_limit_and_success_forgives() -> None:
    throttle = LoginThrottle(limit=3, window=60)
    for _ in range(3):
        assert throttle.retry_after("zhang") == 0.0
        throttle.failed("zhang")
    assert throttle.retry_after("zhang") > 0
    assert throttle.retry_after("li") == 0.0  # per name
    throttle.succeeded("zhang")
    assert throttle.retry_after("zhang") == 0.0


def test_failures_age_out_of_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("services.access.people.time.monotonic", lambda: clock[0])
    throttle = LoginThrottle(limit=2, window=60)
    throttle.failed("zhang")
    throttle.failed("zhang")
    assert throttle.retry_after("zhang") == pytest.approx(60.0)
    clock[0] += 61
    assert throttle.retry_after("zhang") == 0.0


def test_invented_names_do_not_grow_memory_without_bound() -> None:
    throttle = LoginThrottle(limit=3, window=600, max_names=100)
    throttle.failed("zhang")
    throttle.failed("zhang")
    throttle.failed("zhang")
    for number in range(1000):
        assert throttle.retry_after(f"guess-{number}") == 0.0  # a lookup stores nothing
        throttle.failed(f"guess-{number}")
        if number % 50 == 0:
            throttle.failed("zhang")  # the guesser keeps trying the real name too
    assert len(throttle._failures) <= 100
    assert throttle.retry_after("zhang") > 0  # the name under attack stays remembered
