"""The centre's console API: imports from the page (preview with every problem, then the
import), people (create, reset password), assignments listed both ways, and what each hold
protects. Refusals: non-admins 403, a bad file 422 with line and field, an oversized one 413."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.api.imports.endpoints import MAX_IMPORT_BYTES
from services.context import Services
from storage.models import Institution, LedgerEntry, Sitting
from tests.api.conftest import PASSWORD, START, assign_now, ingest_file, login, make_user
from tests.conftest import CAMERA_FRONT, REGISTRY, ROOM, VideoFactory

World = tuple[TestClient, Services]

HEADER = "sitting_code,room_code,kind,occupation,level,starts_at,ends_at\n"


def _row(code: str, day: int, room: str = ROOM, kind: str = "theory", start: str = "09") -> str:
    return (
        f"{code},{room},{kind},电工,四级,2026-12-{day:02d}T{start}:00:00+08:00,"
        f"2026-12-{day:02d}T{int(start) + 1:02d}:30:00+08:00\n"
    )


def _count(services: Services, what: Any) -> int:
    with services.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(what)) or 0)


def _admin(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _upload(
    client: TestClient, kind: str, text: str | bytes, headers: dict[str, str], dry_run: bool
) -> Any:
    return client.post(
        f"/api/v1/imports/{kind}",
        params={"dry_run": str(dry_run).lower()},
        content=text.encode("utf-8") if isinstance(text, str) else text,
        headers={
            **headers,
            "Content-Type": "text/csv" if kind == "schedule" else "application/json",
        },
    )


def test_schedule_preview_names_every_problem_by_line_and_field_and_writes_nothing(
    world: World, admin_token: str
) -> None:
    client, services = world
    admin = _admin(admin_token)
    sittings, entries = _count(services, Sitting), _count(services, LedgerEntry)
    bad = (
        HEADER
        + _row("NEW-1", 1)
        + _row("NEW-2", 2, kind="lab")
        + "NEW-3,T1-S1-R1,theory,电工,四级,tomorrow,2026-12-03T10:00:00+08:00\n"
        + _row("NEW-4", 4, room="NO-SUCH-ROOM")
        + _row("NEW-5", 1, start="10")  # overlaps NEW-1 in the same room
    )
    for dry_run in (True, False):
        answer = _upload(client, "schedule", bad, admin, dry_run)
        assert answer.status_code == 422, answer.text
        body = answer.json()
        assert body["code"] == "invalid_schedule"
        found = [(p["line"], p["field"]) for p in body["problems"]]
        assert found == [(3, "kind"), (4, "starts_at"), (5, "room_code"), (6, "starts_at")]
        assert "line 4, starts_at: 'tomorrow'" in body["problems"][1]["message"]
        assert body["problems"][2]["message_zh"] == "第 5 行，room_code：考场 'NO-SUCH-ROOM' 未登记"
        assert body["problems"][3]["message_zh"].startswith("第 6 行，starts_at：场次 'NEW-5' 与")
        assert "nothing was imported" in body["message"]
    assert _count(services, Sitting) == sittings
    assert _count(services, LedgerEntry) == entries


def test_schedule_preview_then_import_then_reimport(world: World, admin_token: str) -> None:
    client, services = world
    admin = _admin(admin_token)
    good = HEADER + _row("NEW-1", 1) + _row("NEW-2", 2)
    preview = _upload(client, "schedule", good, admin, True)
    assert preview.status_code == 200, preview.text
    assert preview.json()["dry_run"] is True
    assert preview.json()["created"] == {"sitting": ["NEW-1", "NEW-2"]}
    assert _count(services, Sitting) == 3  # the world's three, nothing written

    done = _upload(client, "schedule", good, admin, False).json()
    assert (done["dry_run"], done["created"]["sitting"]) == (False, ["NEW-1", "NEW-2"])
    assert _count(services, Sitting) == 5

    moved = HEADER + _row("NEW-1", 1) + _row("NEW-2", 2, start="13")
    preview = _upload(client, "schedule", moved, admin, True).json()
    assert preview["updated"] == {"sitting": ["NEW-2"]}
    assert preview["unchanged"] == {"sitting": ["NEW-1"]}
    done = _upload(client, "schedule", moved, admin, False).json()
    assert (done["updated"], done["unchanged"]) == (preview["updated"], preview["unchanged"])


def test_registry_preview_lists_problems_with_line_and_path(world: World, admin_token: str) -> None:
    client, _ = world
    document = copy.deepcopy(REGISTRY)
    room = document["institutions"][0]["sites"][0]["rooms"][0]
    room["kind"] = "lab"
    room["cameras"][1]["code"] = room["cameras"][0]["code"]
    del document["institutions"][0]["district"]
    text = json.dumps(document, ensure_ascii=False, indent=2)
    answer = _upload(client, "registry", text, _admin(admin_token), True)
    assert answer.status_code == 422, answer.text
    problems = answer.json()["problems"]
    fields = [p["field"] for p in problems]
    assert fields == [
        "institutions[0].district",
        "institutions[0].sites[0].rooms[0].kind",
        "institutions[0].sites[0].rooms[0].cameras[1].code",
    ]
    lines = text.splitlines()
    # The kind's and the repeated code's lines are where they stand in the file.
    assert '"kind": "lab"' in lines[problems[1]["line"] - 1]
    assert '"code": "T1-S1-R1-F"' in lines[problems[2]["line"] - 1]
    assert problems[2]["line"] > problems[1]["line"]

    syntax = _upload(client, "registry", '{"institutions": [\n  oops]}', _admin(admin_token), True)
    assert syntax.status_code == 422
    assert syntax.json()["problems"][0]["line"] == 2


def test_registry_import_reports_created_updated_unchanged(world: World, admin_token: str) -> None:
    client, services = world
    admin = _admin(admin_token)
    document = copy.deepcopy(REGISTRY)
    document["institutions"][0]["name"] = "改名后的鉴定所"
    document["institutions"].append(
        {
            "code": "T9",
            "name": "新机构",
            "district": "渝北区",
            "sites": [],
        }
    )
    text = json.dumps(document, ensure_ascii=False)
    preview = _upload(client, "registry", text, admin, True).json()
    assert preview["created"]["institution"] == ["T9"]
    assert preview["updated"]["institution"] == ["T1"]
    assert preview["unchanged"]["camera"] == ["T1-S1-R1-F", "T1-S1-R1-B"]
    assert _count(services, Institution) == 2
    done = _upload(client, "registry", text, admin, False).json()
    for key in ("created", "updated", "unchanged"):
        assert done[key] == preview[key]
    assert _count(services, Institution) == 3
    again = _upload(client, "registry", text, admin, False).json()
    assert again["unchanged"]["institution"] == ["T1", "T9"]
    assert again["created"]["institution"] == again["updated"]["institution"] == []


def test_import_refusals(world: World, admin_token: str) -> None:
    client, services = world
    admin = _admin(admin_token)
    make_user(services, "officer", "district_officer", district="渝中区")
    make_user(services, "zhang", "supervisor")
    for name in ("officer", "zhang"):
        auth = login(client, name)
        for kind in ("schedule", "registry"):
            answer = _upload(client, kind, HEADER, auth, True)
            assert (answer.status_code, answer.json()["code"]) == (403, "forbidden")
    huge = HEADER + "x" * MAX_IMPORT_BYTES
    answer = _upload(client, "schedule", huge, admin, True)
    assert (answer.status_code, answer.json()["code"]) == (413, "too_large")
    latin = (HEADER + "S-1,T1-S1-R1,theory,électricien,4,x,y\n").encode("latin-1")
    answer = _upload(client, "schedule", latin, admin, True)
    assert answer.status_code == 422
    assert (answer.json()["code"], answer.json()["problems"][0]["line"]) == ("invalid_file", 2)
    giant = _upload(client, "schedule", HEADER + _row("A", 1) + "B," + "x" * 200_000, admin, True)
    assert giant.status_code == 422
    assert giant.json()["problems"][0]["line"] == 3  # the record that broke, not the last good
    # A 100 KB bad value comes back cut short, in each of up to 200 problems.
    long_rows = "".join(f"L{i},{'R' * 100_000},theory,a,b,{'t' * 100_000},x\n" for i in range(3))
    answer = _upload(client, "schedule", HEADER + long_rows, admin, True)
    assert answer.status_code == 422 and len(answer.content) < 10_000
    deep = _upload(client, "registry", "[" * 100_000, admin, True)
    assert (deep.status_code, deep.json()["code"]) == (422, "invalid_registry")
    assert deep.json()["problems"][0]["message_zh"] == "JSON 嵌套层数过多"
    header_only = _upload(client, "schedule", "a,b\n", admin, True).json()
    assert header_only["problems"][0]["line"] == 1
    assert _count(services, Sitting) == 3


def test_reset_password_shows_a_new_one_once_and_ends_sessions(
    world: World, admin_token: str
) -> None:
    client, services = world
    make_user(services, "zhang", "supervisor")
    old_session = login(client, "zhang")
    reset = client.post("/api/v1/users/zhang/password", headers=_admin(admin_token))
    assert reset.status_code == 200, reset.text
    password = reset.json()["password"]
    assert reset.headers["cache-control"] == "no-store"
    assert len(password) >= 16
    assert client.get("/api/v1/me", headers=old_session).status_code == 401
    assert (
        client.post(
            "/api/v1/auth/token", data={"username": "zhang", "password": PASSWORD}
        ).status_code
        == 401
    )
    login(client, "zhang", password)
    with services.db.read() as session:
        entry = session.scalars(
            select(LedgerEntry).where(LedgerEntry.action == "user.password_reset")
        ).one()
    assert password not in json.dumps(entry.details)
    assert (
        client.post("/api/v1/users/nobody/password", headers=_admin(admin_token)).status_code == 404
    )
    refused = client.post("/api/v1/users/zhang/password", headers=login(client, "zhang", password))
    assert refused.status_code == 403


def test_assignments_listed_by_person_by_sitting_and_by_institution(
    world: World, admin_token: str
) -> None:
    client, services = world
    admin = _admin(admin_token)
    make_user(services, "zhang", "supervisor")
    make_user(services, "li", "supervisor")
    assign_now(services, "zhang", "OWN-1")
    window = {
        "valid_from": (START - timedelta(days=1)).isoformat(),
        "valid_until": (START + timedelta(days=30)).isoformat(),
    }
    made = client.post(
        "/api/v1/assignments",
        json={
            "user": "li",
            "institution": "T1",
            "covers_from": (START + timedelta(hours=12)).isoformat(),
            "covers_until": (START + timedelta(days=3)).isoformat(),
            **window,
        },
        headers=admin,
    )
    assert made.status_code == 201, made.text

    def who(**params: str) -> list[tuple[str, str | None, str | None]]:
        answer = client.get("/api/v1/assignments", params=params, headers=admin)
        assert answer.status_code == 200, answer.text
        return [(a["user"], a["sitting"], a["institution"]) for a in answer.json()["assignments"]]

    assert who(sitting="OWN-1") == [("zhang", "OWN-1", None)]
    assert who(sitting="OWN-2") == [("li", None, "T1")]  # the institution's range covers it
    assert who(sitting="FAR-1") == []
    assert who(institution="T1") == [("zhang", "OWN-1", None), ("li", None, "T1")]
    assert who(institution="T2") == []
    assert who(user="li") == [("li", None, "T1")]
    assert (
        client.get("/api/v1/assignments", params={"sitting": "NOPE"}, headers=admin).status_code
        == 404
    )
    make_user(services, "officer", "district_officer", district="渝中区")
    answer = client.get("/api/v1/assignments", headers=login(client, "officer"))
    assert answer.status_code == 403


def test_a_hold_says_what_it_protects_and_district_officers_see_their_own(
    world: World, admin_token: str, make_video: VideoFactory
) -> None:
    client, services = world
    admin = _admin(admin_token)
    stamp = (START + timedelta(minutes=10)).strftime("%Y%m%dT%H%M%SZ")
    segment = ingest_file(services, CAMERA_FRONT, make_video(f"{stamp}.mp4", seconds=3))
    placed = client.post(
        "/api/v1/holds",
        json={"reason": "投诉调查", "case_reference": "渝人社投〔2026〕12号", "sitting": "OWN-1"},
        headers=admin,
    )
    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert hold["sitting"] == "OWN-1"
    assert hold["protects"]["segments"] == 1
    assert hold["protects"]["bytes"] == segment.size_bytes
    assert hold["protects"]["until"] == "released"
    assert hold["protects"]["latest_expiry"].startswith("2029-11-2")
    by_camera = client.post(
        "/api/v1/holds",
        json={
            "reason": "r",
            "camera": CAMERA_FRONT,
            "from": START.isoformat(),
            "until": (START + timedelta(minutes=5)).isoformat(),
        },
        headers=admin,
    ).json()
    assert (by_camera["camera"], by_camera["protects"]["segments"]) == (CAMERA_FRONT, 0)
    by_segment = client.post(
        "/api/v1/holds", json={"reason": "r", "segment": segment.id}, headers=admin
    ).json()
    assert by_segment["protects"]["segments"] == 1
    far = client.post("/api/v1/holds", json={"reason": "r", "sitting": "FAR-1"}, headers=admin)
    assert far.status_code == 201

    make_user(services, "officer", "district_officer", district="渝中区")
    officer = login(client, "officer")
    seen = client.get("/api/v1/holds", headers=officer).json()["holds"]
    assert sorted(h["id"] for h in seen) == sorted([hold["id"], by_camera["id"], by_segment["id"]])
    released = client.post(
        f"/api/v1/holds/{hold['id']}/release", json={"reason": "结案"}, headers=officer
    )
    assert released.status_code == 403
    released = client.post(
        f"/api/v1/holds/{hold['id']}/release", json={"reason": "结案"}, headers=admin
    )
    assert released.status_code == 200
    assert released.json()["release_reason"] == "结案"
    active = [h["id"] for h in client.get("/api/v1/holds", headers=admin).json()["holds"]]
    assert hold["id"] not in active


def test_the_console_pages_are_served_from_their_folder_and_nothing_else_is(
    world: World,
) -> None:
    client, _ = world
    page = client.get("/web/admin/import.js")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/javascript")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for path in (
        "/web/admin/nope.js",
        "/web/ADMIN/import.js",
        "/web/%2e%2e/app.js",
        "/web/admin/%2e%2e%2fapp.js",
        "/web/.admin/import.js",
    ):
        assert client.get(path).status_code == 404, path


def test_a_forged_dry_run_flag_is_refused_not_taken_for_an_import(
    world: World, admin_token: str
) -> None:
    client, services = world
    answer = client.post(
        "/api/v1/imports/schedule",
        params={"dry_run": "perhaps"},
        content=(HEADER + _row("NEW-1", 1)).encode(),
        headers=_admin(admin_token),
    )
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_request")
    assert _count(services, Sitting) == 3
