"""What an outside probe of the console found, each pinned: a 100,000-digit number in a
registry file (500 before), control characters in imported names and schedule fields (stored
before; NUL cannot even be stored on PostgreSQL), CSV cells that start a formula after a tab or
CR, hold reasons of megabytes kept in the ledger for good, and host reports whose times were not
times."""

from __future__ import annotations

import copy
import csv
import io
import json

import pytest
from fastapi.testclient import TestClient

from services.context import Services
from services.exchange import has_control_characters
from services.retention.holds import MAX_REASON
from tests.api.test_admin_console import HEADER, _admin, _row, _upload
from tests.conftest import CAMERA_FRONT, REGISTRY

World = tuple[TestClient, Services]


def test_a_number_too_long_to_read_is_a_422_not_a_500(world: World, admin_token: str) -> None:
    client, _ = world
    answer = _upload(client, "registry", '{"a": ' + "1" * 100_000 + "}", _admin(admin_token), True)
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_registry"), answer.text
    assert "too long" in answer.json()["problems"][0]["message"]


@pytest.mark.parametrize("bad", ["n\u0000ul", "bell\x07", "\x1b[31mred", "a\nb", "rlo\u202e"])
def test_control_characters_in_imported_names_are_refused(
    world: World, admin_token: str, bad: str
) -> None:
    client, _ = world
    document = copy.deepcopy(REGISTRY)
    document["institutions"][0]["name"] = bad
    for dry_run in (True, False):
        answer = _upload(client, "registry", json.dumps(document), _admin(admin_token), dry_run)
        assert answer.status_code == 422, answer.text
        [problem] = answer.json()["problems"]
        assert problem["field"].endswith("institutions[0].name")
        assert problem["message_zh"].endswith("不得包含控制字符")
    control = next(char for char in bad if has_control_characters(char))
    if control in "\r\n":
        return  # a line break in an unquoted CSV field is another row, not a field
    schedule = HEADER + _row("CTL-1", 1).replace("电工", f"电{control}工")
    answer = _upload(client, "schedule", schedule, _admin(admin_token), True)
    assert answer.status_code == 422, answer.text
    assert answer.json()["problems"][0]["field"] == "occupation"


def test_csv_cells_that_start_a_formula_after_a_tab_or_cr_are_quoted(
    world: World, admin_token: str
) -> None:
    from services.api.sittings.endpoints import _csv_safe

    for cell in ("=1+1", "+1", "-1", "@SUM(1)", "\t@SUM(1)", "\r=1+1"):
        assert _csv_safe(cell).startswith("'"), cell
    assert _csv_safe("重庆 = 渝") == "重庆 = 渝"
    client, _ = world
    text = client.get(
        "/api/v1/sittings", params={"format": "csv"}, headers=_admin(admin_token)
    ).text
    assert list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def test_a_hold_reason_is_bounded(world: World, admin_token: str) -> None:
    client, _ = world
    admin = _admin(admin_token)
    for body in (
        {"camera": CAMERA_FRONT, "reason": "R" * (MAX_REASON + 1)},
        {"camera": CAMERA_FRONT, "reason": "投诉", "case_reference": "C" * 201},
    ):
        answer = client.post("/api/v1/holds", json=body, headers=admin)
        assert answer.status_code in (400, 422), answer.text
        assert len(answer.content) < 20_000


def test_a_host_report_time_must_be_a_time(world: World, admin_token: str) -> None:
    client, _ = world
    created = client.post(
        "/api/v1/tokens",
        headers=_admin(admin_token),
        json={"name": "host", "role": "camera_host", "cameras": [CAMERA_FRONT]},
    )
    host = {"Authorization": f"Bearer {created.json()['token']}"}
    report = {"backlog_files": 1, "backlog_bytes": 2}
    for bad in ("yesterday <img src=x onerror=alert(1)>", "garbage", "2026-12-04T10:00:00"):
        answer = client.put(
            "/api/v1/hosts/report", json={**report, "last_success_at": bad}, headers=host
        )
        assert answer.status_code in (400, 422), (bad, answer.text)
    good = {**report, "last_error_at": "2026-12-04T10:00:00+00:00"}
    assert client.put("/api/v1/hosts/report", json=good, headers=host).status_code == 204
