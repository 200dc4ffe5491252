"""The console's player and findings pages, API side: the sitting's header names its institution,
district and site; `GET /api/v1/findings` lists findings across the sittings the caller may see
(the centre: all; a district officer: their district), filtered and paged, and refuses everyone
else and every out-of-range parameter with a 4xx, never a 500."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.context import Services
from tests.api.conftest import FOREIGN_CAMERAS, START, login, make_user
from tests.conftest import CAMERA_BACK, CAMERA_FRONT

World = tuple[TestClient, Services]
LIST = "/api/v1/findings"


def _admin(admin_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token}"}


def _record(
    client: TestClient,
    headers: dict[str, str],
    sitting: str,
    camera: str,
    minutes: int,
    **more: Any,
) -> dict[str, Any]:
    body = {
        "camera": camera,
        "category": "other",
        "observed_from": (START + timedelta(minutes=minutes)).isoformat(),
        "text": f"{sitting} at {minutes} min",
        **more,
    }
    made = client.post(f"/api/v1/sittings/{sitting}/findings", json=body, headers=headers)
    assert made.status_code == 201, made.text
    return dict(made.json())


@pytest.fixture
def findings(world: World, admin_token: str) -> dict[str, dict[str, Any]]:
    """Three findings in 渝中区 (OWN-1, OWN-2) and one in 江北区 (FAR-1), by the centre."""
    client, _ = world
    admin = _admin(admin_token)
    return {
        "own-1-front": _record(client, admin, "OWN-1", CAMERA_FRONT, 5, category="substitution"),
        "own-1-back": _record(client, admin, "OWN-1", CAMERA_BACK, 20),
        "own-2": _record(client, admin, "OWN-2", CAMERA_FRONT, 24 * 60 + 10),
        "far-1": _record(client, admin, "FAR-1", FOREIGN_CAMERAS[0], 7),
    }


def test_the_sitting_names_its_institution_district_and_site(
    world: World, admin_token: str
) -> None:
    client, _ = world
    answer = client.get("/api/v1/sittings/OWN-1", headers=_admin(admin_token))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["institution"], body["institution_name"]) == ("T1", "测试鉴定所")
    assert (body["district"], body["site_address"]) == ("渝中区", "测试路1号")


def test_the_centre_lists_every_finding_newest_observation_first(
    world: World, admin_token: str, findings: dict[str, dict[str, Any]]
) -> None:
    client, _ = world
    answer = client.get(LIST, headers=_admin(admin_token))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] == 4
    assert [f["id"] for f in body["findings"]] == [
        findings[key]["id"] for key in ("own-2", "own-1-back", "far-1", "own-1-front")
    ]
    first = body["findings"][0]
    assert (first["sitting"], first["institution_name"], first["district"]) == (
        "OWN-2",
        "测试鉴定所",
        "渝中区",
    )
    assert (first["camera"], first["position"], first["status"]) == (CAMERA_FRONT, "front", "open")
    assert first["author"] == "admin:centre"
    assert first["observed_from"].endswith("+08:00")
    assert {i["district"] for i in body["institutions"]} == {"渝中区", "江北区"}


def test_a_district_officer_sees_only_their_district_whatever_the_query_says(
    world: World, findings: dict[str, dict[str, Any]]
) -> None:
    client, services = world
    make_user(services, "li", "district_officer", district="渝中区")
    officer = login(client, "li")
    mine = client.get(LIST, headers=officer).json()
    assert {f["sitting"] for f in mine["findings"]} == {"OWN-1", "OWN-2"}
    assert mine["total"] == 3
    assert [i["code"] for i in mine["institutions"]] == ["T1"]
    # Asking for the other district, its institution, sitting or camera narrows to nothing.
    for forged in (
        {"district": "江北区"},
        {"institution": "T2"},
        {"sitting": "FAR-1"},
        {"camera": FOREIGN_CAMERAS[0]},
    ):
        answer = client.get(LIST, params=forged, headers=officer)
        assert answer.status_code == 200, answer.text
        assert answer.json()["findings"] == [] and answer.json()["total"] == 0, forged


def test_filters_narrow_by_category_status_sitting_and_local_day(
    world: World, admin_token: str, findings: dict[str, dict[str, Any]]
) -> None:
    client, _ = world
    admin = _admin(admin_token)

    def ids(**params: str) -> set[int]:
        answer = client.get(LIST, params=params, headers=admin)
        assert answer.status_code == 200, answer.text
        return {f["id"] for f in answer.json()["findings"]}

    assert ids(category="substitution") == {findings["own-1-front"]["id"]}
    assert ids(sitting="OWN-1") == {findings["own-1-front"]["id"], findings["own-1-back"]["id"]}
    assert ids(district="江北区") == {findings["far-1"]["id"]}
    # START is 09:00 on 20 November in Shanghai; OWN-2 is the next day.
    assert ids(date_from="2026-11-21") == {findings["own-2"]["id"]}
    assert findings["own-2"]["id"] not in ids(date_to="2026-11-20")
    assert len(ids(date_from="2026-11-20", date_to="2026-11-20")) == 3

    withdrawn = client.post(
        f"/api/v1/sittings/OWN-1/findings/{findings['own-1-back']['id']}/withdraw",
        json={"reason": "记录有误"},
        headers=admin,
    )
    assert withdrawn.status_code == 200, withdrawn.text
    closed = client.post(
        "/api/v1/sittings/FAR-1/review/close", json={"reason": "复核完毕"}, headers=admin
    )
    assert closed.status_code == 200, closed.text
    assert ids(status="withdrawn") == {findings["own-1-back"]["id"]}
    assert ids(status="final") == {findings["far-1"]["id"]}
    assert ids(status="open") == {findings["own-1-front"]["id"], findings["own-2"]["id"]}


def test_pages_carry_the_total_and_do_not_overlap(
    world: World, admin_token: str, findings: dict[str, dict[str, Any]]
) -> None:
    client, _ = world
    admin = _admin(admin_token)
    pages = [
        client.get(LIST, params={"limit": 3, "offset": offset}, headers=admin).json()
        for offset in (0, 3, 6)
    ]
    assert [len(page["findings"]) for page in pages] == [3, 1, 0]
    assert {page["total"] for page in pages} == {4}
    seen = [f["id"] for page in pages for f in page["findings"]]
    assert sorted(seen) == sorted(f["id"] for f in findings.values())


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "201"},
        {"limit": "0"},
        {"limit": "99999999999999999999"},
        {"offset": "-1"},
        {"offset": "1000001"},
        {"date_to": "9999-12-31"},
        {"date_from": "0001-01-01"},
        {"date_from": "yesterday"},
        {"from": "2026-11-20T09:00:00"},
        {"status": "deleted"},
        {"category": "cheating"},
        {"district": "x" * 101},
    ],
)
def test_out_of_range_parameters_answer_400(
    world: World, admin_token: str, params: dict[str, str]
) -> None:
    client, _ = world
    answer = client.get(LIST, params=params, headers=_admin(admin_token))
    assert answer.status_code == 400, (params, answer.text)
    assert answer.json()["code"] == "invalid_request"


@pytest.mark.parametrize("role", ["supervisor", "institution"])
def test_supervisors_and_institutions_may_not_list_findings_across_sittings(
    world: World, findings: dict[str, dict[str, Any]], role: str
) -> None:
    client, services = world
    extra = {"institution_code": "T1"} if role == "institution" else {}
    make_user(services, "wu", role, **extra)
    answer = client.get(LIST, headers=login(client, "wu"))
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "forbidden"
    assert "督导记录" in answer.json()["message_zh"]


def test_a_camera_host_and_no_token_are_refused(world: World) -> None:
    client, services = world
    from services.access.tokens import create_token

    _, host = services.db.run_write(
        lambda s: create_token(
            s, role="camera_host", name="host", cameras=[CAMERA_FRONT], actor="t"
        )
    )
    assert client.get(LIST, headers={"Authorization": f"Bearer {host}"}).status_code == 403
    assert client.get(LIST).status_code == 401
