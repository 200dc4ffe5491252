"""Instants in request bodies near the ends of the calendar answer 400, never 500.

`9999-12-31T23:00:00-14:00` is a valid RFC 3339 instant that Python cannot convert to UTC, and
instants near year 9999 overflow the first day added to them: every body instant is bounded to
1970..9000 like the query parameters (deps.instant_param).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.context import Services
from tests.conftest import CAMERA_FRONT

EDGES = ["9999-12-31T23:00:00-14:00", "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+14:00"]
SAFE = "2026-11-24T09:00:00+08:00"


def _bodies(edge: str) -> list[tuple[str, dict[str, object]]]:
    return [
        ("/api/v1/holds", {"camera": CAMERA_FRONT, "from": edge, "until": edge, "reason": "x"}),
        ("/api/v1/holds", {"camera": CAMERA_FRONT, "from": SAFE, "until": edge, "reason": "x"}),
        ("/api/v1/tokens", {"name": "edge", "role": "admin", "expires_at": edge}),
        (
            "/api/v1/assignments",
            {"user": "nobody", "sitting": "OWN-1", "valid_from": SAFE, "valid_until": edge},
        ),
        (
            "/api/v1/sittings/OWN-1/findings",
            {"camera": CAMERA_FRONT, "observed_from": edge, "note": "edge of time"},
        ),
    ]


@pytest.mark.parametrize("edge", EDGES)
def test_a_body_instant_at_the_ends_of_the_calendar_answers_4xx(
    world: tuple[TestClient, Services], admin_token: str, edge: str
) -> None:
    client, _ = world
    answers = []
    for path, body in _bodies(edge):
        response = client.post(path, json=body, headers={"Authorization": f"Bearer {admin_token}"})
        answers.append((path, response.status_code, response.json().get("code")))
    # 400 from the bound, or the route's own 422 for an interval it refuses anyway.
    assert all(status in (400, 422) for _, status, _ in answers), answers
