"""Property-based run of the whole OpenAPI contract (schemathesis), authenticated as admin, so
every operation is reached past its guard: whatever the generated input, no 5xx."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from services.context import Services

EXAMPLES_PER_OPERATION = 25


def _no_server_error(
    operation: Any, auth: dict[str, str], calls: dict[str, int]
) -> Callable[[], None]:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call(headers=auth)
        calls[operation.label] = calls.get(operation.label, 0) + 1
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
        )

    return check


def test_no_operation_answers_5xx(world: tuple[TestClient, Services], admin_token: str) -> None:
    client, _ = world
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    auth = {"Authorization": f"Bearer {admin_token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30  # the whole API, not an empty schema
    calls: dict[str, int] = {}
    for operation in operations:
        _no_server_error(operation, auth, calls)()
    # Every operation was exercised, not skipped by a schema the generator could not satisfy.
    assert sorted(calls) == sorted(operation.label for operation in operations)
