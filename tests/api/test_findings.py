"""Findings (督导记录): recorded by supervisors inside the sitting's time, editable only by their
author while the review is open, every version in the ledger, readable by district officers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.context import Services
from storage.ledger import verify
from storage.models import LedgerEntry
from tests.api.conftest import START, assign_now, login, make_user
from tests.conftest import CAMERA_BACK, CAMERA_FRONT

World = tuple[TestClient, Services]
URL = "/api/v1/sittings/OWN-1/findings"


def _finding(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "camera": CAMERA_FRONT,
        "category": "substitution",
        "observed_from": (START + timedelta(minutes=10)).isoformat(),
        "text": "考生与准考证照片不符",
    }
    body.update(changes)
    return body


@pytest.fixture
def supervisor(world: World) -> dict[str, str]:
    client, services = world
    make_user(services, "zhang", "supervisor")
    assign_now(services, "zhang", "OWN-1")
    return login(client, "zhang")


def _actions(services: Services, subject_id: str) -> list[str]:
    with services.db.read() as session:
        return list(
            session.scalars(
                select(LedgerEntry.action)
                .where(LedgerEntry.subject_type == "finding", LedgerEntry.subject_id == subject_id)
                .order_by(LedgerEntry.seq)
            )
        )


def test_supervisor_records_an_instant_finding_listed_and_ledgered(
    world: World, supervisor: dict[str, str]
) -> None:
    client, services = world
    made = client.post(URL, json=_finding(), headers=supervisor)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["camera"] == CAMERA_FRONT and body["observed_until"] is None
    assert body["observed_from"].endswith("+08:00") and body["editable"] is True
    listed = client.get(URL, headers=supervisor).json()
    assert [f["id"] for f in listed["findings"]] == [body["id"]]
    assert listed["review_closed_at"] is None
    assert _actions(services, str(body["id"])) == ["finding.created"]


def test_interval_finding_round_trips(world: World, supervisor: dict[str, str]) -> None:
    client, _ = world
    until = (START + timedelta(minutes=20)).isoformat()
    made = client.post(
        URL,
        json=_finding(camera=CAMERA_BACK, category="camera_blocked", observed_until=until),
        headers=supervisor,
    )
    assert made.status_code == 201, made.text
    assert made.json()["category"] == "camera_blocked"
    assert made.json()["observed_until"] == "2026-11-20T09:20:00.000+08:00"


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"observed_from": (START - timedelta(hours=2)).isoformat()}, 422, "invalid_finding"),
        (
            {"observed_until": (START + timedelta(minutes=5)).isoformat()},
            422,
            "invalid_finding",
        ),
        ({"camera": "T2-C1"}, 422, "invalid_finding"),
        ({"observed_from": "2026-11-20T09:10:00"}, 400, "invalid_request"),
        ({"category": "cheating"}, 400, "invalid_request"),
        ({"text": ""}, 400, "invalid_request"),
        ({"text": "   "}, 422, "invalid_finding"),
    ],
)
def test_bad_findings_are_refused_with_a_precise_code(
    world: World, supervisor: dict[str, str], changes: dict[str, Any], status: int, code: str
) -> None:
    client, _ = world
    refused = client.post(URL, json=_finding(**changes), headers=supervisor)
    assert (refused.status_code, refused.json()["code"]) == (status, code), refused.text
    assert refused.json()["message_zh"]
    assert client.get(URL, headers=supervisor).json()["findings"] == []


def test_only_the_author_revises_and_each_version_is_ledgered(
    world: World, supervisor: dict[str, str], admin_token: str
) -> None:
    client, services = world
    make_user(services, "li", "supervisor")
    assign_now(services, "li", "OWN-1")
    colleague = login(client, "li")
    finding = client.post(URL, json=_finding(), headers=supervisor).json()
    one = f"{URL}/{finding['id']}"

    revised = client.put(one, json=_finding(text="替考，已核实"), headers=supervisor)
    assert revised.status_code == 200 and revised.json()["revision"] == 2
    for other in (colleague, {"Authorization": f"Bearer {admin_token}"}):
        refused = client.put(one, json=_finding(text="改写"), headers=other)
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    seen_by_colleague = client.get(URL, headers=colleague).json()["findings"][0]
    assert seen_by_colleague["text"] == "替考，已核实" and seen_by_colleague["editable"] is False

    assert _actions(services, str(finding["id"])) == ["finding.created", "finding.revised"]
    with services.db.read() as session:
        revision = session.scalars(
            select(LedgerEntry).where(LedgerEntry.action == "finding.revised")
        ).one()
        assert "考生与准考证照片不符" in revision.details  # the first wording is kept
        assert verify(session).ok


def test_closed_review_makes_findings_final_until_reopened(
    world: World, supervisor: dict[str, str], admin_token: str
) -> None:
    client, _ = world
    admin = {"Authorization": f"Bearer {admin_token}"}
    finding = client.post(URL, json=_finding(), headers=supervisor).json()
    one = f"{URL}/{finding['id']}"
    closing = client.post(
        "/api/v1/sittings/OWN-1/review/close", json={"reason": "复核完成"}, headers=admin
    )
    assert closing.status_code == 200 and closing.json()["review_closed_by"] == "admin:centre"
    for attempt in (
        client.put(one, json=_finding(text="晚了"), headers=supervisor),
        client.post(f"{one}/withdraw", json={"reason": "x"}, headers=supervisor),
        client.post(URL, json=_finding(), headers=supervisor),
    ):
        assert (attempt.status_code, attempt.json()["code"]) == (409, "review_closed")
    assert client.get(URL, headers=supervisor).json()["findings"][0]["editable"] is False
    again = client.post(
        "/api/v1/sittings/OWN-1/review/close", json={"reason": "again"}, headers=admin
    )
    assert (again.status_code, again.json()["code"]) == (409, "review_unchanged")
    refused = client.post(
        "/api/v1/sittings/OWN-1/review/close", json={"reason": "x"}, headers=supervisor
    )
    assert refused.status_code == 403

    reopened = client.post(
        "/api/v1/sittings/OWN-1/review/reopen", json={"reason": "补充材料"}, headers=admin
    )
    assert reopened.status_code == 200 and reopened.json()["review_closed_at"] is None
    assert client.put(one, json=_finding(text="补充"), headers=supervisor).status_code == 200


def test_withdrawn_finding_stays_listed_and_is_final(
    world: World, supervisor: dict[str, str]
) -> None:
    client, services = world
    finding = client.post(URL, json=_finding(), headers=supervisor).json()
    one = f"{URL}/{finding['id']}"
    gone = client.post(f"{one}/withdraw", json={"reason": "看错了"}, headers=supervisor)
    assert gone.status_code == 200 and gone.json()["withdrawn_at"]
    listed = client.get(URL, headers=supervisor).json()["findings"]
    assert [f["withdrawn_at"] is not None for f in listed] == [True]
    again = client.put(one, json=_finding(), headers=supervisor)
    assert (again.status_code, again.json()["code"]) == (409, "withdrawn")
    assert _actions(services, str(finding["id"])) == ["finding.created", "finding.withdrawn"]


def test_district_officer_reads_but_does_not_write_institution_sees_none(
    world: World, supervisor: dict[str, str]
) -> None:
    client, services = world
    client.post(URL, json=_finding(), headers=supervisor)
    make_user(services, "wang", "district_officer", district="渝中区")
    make_user(services, "zhao", "district_officer", district="江北区")
    make_user(services, "jigou", "institution", institution_code="T1")
    officer = login(client, "wang")
    assert len(client.get(URL, headers=officer).json()["findings"]) == 1
    assert client.post(URL, json=_finding(), headers=officer).status_code == 403
    assert client.get(URL, headers=login(client, "zhao")).status_code == 404
    institution = login(client, "jigou")
    assert client.get(URL, headers=institution).status_code == 403
    foreign = client.get("/api/v1/sittings/FAR-1/findings", headers=institution)
    assert foreign.status_code == 404


def test_unknown_finding_and_unassigned_sitting_are_404(
    world: World, supervisor: dict[str, str]
) -> None:
    client, _ = world
    missing = client.put(f"{URL}/999", json=_finding(), headers=supervisor)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    other = client.post("/api/v1/sittings/OWN-2/findings", json=_finding(), headers=supervisor)
    assert other.status_code == 404


def test_refusals_say_why_in_chinese_too(world: World, supervisor: dict[str, str]) -> None:
    client, services = world
    finding = client.post(URL, json=_finding(), headers=supervisor).json()
    make_user(services, "li", "supervisor")
    assign_now(services, "li", "OWN-1")
    refused = client.put(f"{URL}/{finding['id']}", json=_finding(), headers=login(client, "li"))
    assert refused.json()["message_zh"] == "只有记录的填写人可以修改或撤回该督导记录。"
    make_user(services, "jigou", "institution", institution_code="T1")
    institution = client.get(URL, headers=login(client, "jigou")).json()
    assert "不能查看录像" in institution["message_zh"]
