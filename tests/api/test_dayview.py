"""The day's sittings (GET /api/v1/sittings with the day view's parameters, and
/api/v1/sitting-choices): dates, filters, scope (a forged district gives nothing), pages,
counts, names, each row's gaps, picture problems, findings and holds, and the CSV."""

from __future__ import annotations

import copy
import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from services.access.scopes import Subject
from services.api.sittings import endpoints
from services.context import Services
from services.coverage.verdicts import sweep_pending
from services.evidence.findings import FindingCategory, FindingDraft, record_finding
from services.registry import RegistryError, import_registry, parse_registry
from services.retention.holds import HoldRequest, place_hold
from storage.models import Camera, HealthFlag, Sitting
from tests.api.conftest import START, ingest_file, login, make_user
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY, VideoFactory

DAY = "2026-11-20"  # START is 09:00 in Asia/Shanghai on that day
URL = "/api/v1/sittings"


def _list(client: TestClient, auth: dict[str, str], **params: object) -> dict:
    response = client.get(URL, headers=auth, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _codes(body: dict) -> list[str]:
    return [row["code"] for row in body["sittings"]]


def test_a_day_has_its_sittings_names_counts_and_window(
    world: tuple[TestClient, Services], admin_token: str
) -> None:
    client, _ = world
    auth = {"Authorization": f"Bearer {admin_token}"}
    body = _list(client, auth, date=DAY, sort="time")
    assert sorted(_codes(body)) == ["FAR-1", "OWN-1"]
    assert body["total"] == 2
    assert body["counts"] == {"pending": 0, "complete": 0, "incomplete": 0, "missing": 2}
    assert body["window_start"] == "2026-11-20T00:00:00.000+08:00"
    assert body["window_end"] == "2026-11-21T00:00:00.000+08:00"
    own = next(row for row in body["sittings"] if row["code"] == "OWN-1")
    assert own["institution_name"] == "测试鉴定所" and own["district"] == "渝中区"
    assert own["site"] == "T1-S1" and own["site_address"] == "测试路1号"
    assert own["room_kind"] == "theory"
    # A range of days includes both ends.
    ranged = _list(client, auth, **{"from": DAY, "to": "2026-11-21"})
    assert sorted(_codes(ranged)) == ["FAR-1", "OWN-1", "OWN-2"]
    # The older RFC 3339 window and no dates at all still answer as before.
    assert _codes(_list(client, auth)) == ["OWN-2", "FAR-1", "OWN-1"]
    window = {"from": "2026-11-21T00:00:00+08:00", "to": "2026-11-22T00:00:00+08:00"}
    assert _codes(_list(client, auth, **window)) == ["OWN-2"]


def test_filters_narrow_and_counts_ignore_only_the_verdict_filter(
    world: tuple[TestClient, Services], admin_token: str
) -> None:
    client, _ = world
    auth = {"Authorization": f"Bearer {admin_token}"}
    assert _codes(_list(client, auth, date=DAY, district="江北区")) == ["FAR-1"]
    assert _codes(_list(client, auth, date=DAY, institution="T1")) == ["OWN-1"]
    assert _codes(_list(client, auth, date=DAY, site="T2-S1")) == ["FAR-1"]
    assert _codes(_list(client, auth, date=DAY, room_kind="practical")) == []
    assert sorted(_codes(_list(client, auth, date=DAY, occupation="电工"))) == ["FAR-1", "OWN-1"]
    complete = _list(client, auth, date=DAY, status="complete")
    assert complete["sittings"] == [] and complete["total"] == 0
    assert complete["counts"]["missing"] == 2


def test_pages_sort_and_bounds(world: tuple[TestClient, Services], admin_token: str) -> None:
    client, _ = world
    auth = {"Authorization": f"Bearer {admin_token}"}
    every = _codes(_list(client, auth, sort="institution"))
    assert every[-1] == "FAR-1"  # T2 after T1
    first = _list(client, auth, sort="institution", limit=1)
    second = _list(client, auth, sort="institution", limit=1, offset=1)
    assert first["total"] == second["total"] == 3
    assert _codes(first) + _codes(second) == every[:2]
    assert _codes(_list(client, auth, sort="time"))[0] in ("OWN-1", "FAR-1")
    for bad in (
        {"limit": 1001},
        {"limit": 0},
        {"offset": -1},
        {"sort": "code; drop table"},
        {"room_kind": "kitchen"},
        {"date": "2026-13-01"},
        {"date": "yesterday"},
        {"date": "9999-12-31"},
        {"date": "0001-01-01"},
        {"from": "2026-11-01", "to": "9999-12-31"},
        {"district": "区" * 101},
        {"date": DAY, "from": DAY},
        {"from": DAY, "to": "2026-11-19"},
        {"from": DAY, "to": "2026-11-21T00:00:00+08:00"},
    ):
        response = client.get(URL, headers=auth, params=bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["code"] == "invalid_request"


def test_a_district_officer_sees_only_their_district_even_when_asking_for_another(
    world: tuple[TestClient, Services],
) -> None:
    client, services = world
    make_user(services, "yuzhong", "district_officer", district="渝中区")
    me = login(client, "yuzhong")
    assert _codes(_list(client, me, date=DAY)) == ["OWN-1"]
    # A forged link naming another district, institution or site: nothing of it.
    for forged in ({"district": "江北区"}, {"institution": "T2"}, {"site": "T2-S1"}):
        body = _list(client, me, date=DAY, **forged)
        assert body["sittings"] == [] and body["total"] == 0, forged
        assert set(body["counts"].values()) == {0}, forged
    choices = client.get("/api/v1/sitting-choices", headers=me, params={"date": DAY}).json()
    assert choices["districts"] == ["渝中区"]
    assert [inst["code"] for inst in choices["institutions"]] == ["T1"]
    csv_text = client.get(URL, headers=me, params={"format": "csv", "district": "江北区"}).text
    assert "FAR-1" not in csv_text


def test_an_institution_sees_its_own_and_what_is_missing_but_no_footage(
    world: tuple[TestClient, Services], make_video: VideoFactory
) -> None:
    client, services = world
    # Three seconds of the front camera at 09:00:10; the back camera sent nothing.
    video = make_video("20261120T010010Z.mp4", seconds=3)
    segment = ingest_file(services, CAMERA_FRONT, video)
    make_user(services, "t1tech", "institution", institution_code="T1")
    me = login(client, "t1tech")
    body = _list(client, me, date=DAY)
    assert _codes(body) == ["OWN-1"]
    row = body["sittings"][0]
    assert row["status"] == "missing" and row["ended"] and row["summarised"]
    assert row["upload_deadline"] == "2026-11-21T10:00:00.000+08:00"
    by_position = {camera["position"]: camera for camera in row["missing"]}
    back, front = by_position["back"], by_position["front"]
    assert back["camera"] == CAMERA_BACK and not back["has_footage"]
    assert back["missing_seconds"] == 3600
    assert back["gaps"] == [
        {
            "start": "2026-11-20T09:00:00.000+08:00",
            "end": "2026-11-20T10:00:00.000+08:00",
            "cause": "not_received",
        }
    ]
    assert front["has_footage"] and front["gap_count"] == 2
    assert front["missing_seconds"] == pytest.approx(3597, abs=0.5)
    assert front["gaps"][0]["end"] == "2026-11-20T09:00:10.000+08:00"
    # No footage for an institution, as before the day view.
    assert client.get(f"/api/v1/segments/{segment.id}/content", headers=me).status_code == 403
    assert _list(client, me, institution="T2")["sittings"] == []


def test_picture_problems_findings_and_holds_at_a_glance(
    world: tuple[TestClient, Services], admin_token: str, make_video: VideoFactory
) -> None:
    client, services = world
    segment = ingest_file(services, CAMERA_FRONT, make_video("20261120T010000Z.mp4", seconds=3))

    def mark(session) -> None:  # type: ignore[no-untyped-def]
        camera = session.scalar(select(Camera).where(Camera.code == CAMERA_FRONT))
        session.add(
            HealthFlag(
                segment_id=segment.id,
                camera_id=camera.id,
                starts_at=START,
                ends_at=START + timedelta(seconds=2),
                kind="black",
            )
        )
        sitting = session.scalar(select(Sitting).where(Sitting.code == "OWN-1"))
        supervisor = Subject(name="inspector", role="admin")
        draft = FindingDraft(CAMERA_FRONT, FindingCategory.other, START, None, "看不清")
        record_finding(session, sitting, draft, supervisor, services.settings)
        place_hold(
            session,
            services.store,
            services.settings,
            HoldRequest(reason="投诉", sitting_code="OWN-1"),
            actor="admin:centre",
        )
        place_hold(
            session,
            services.store,
            services.settings,
            HoldRequest(
                reason="投诉",
                camera_code=CAMERA_BACK,
                held_from=START + timedelta(minutes=10),
                held_until=START + timedelta(minutes=20),
            ),
            actor="admin:centre",
        )

    services.db.run_write(mark)
    auth = {"Authorization": f"Bearer {admin_token}"}
    rows = {row["code"]: row for row in _list(client, auth, date=DAY)["sittings"]}
    assert rows["OWN-1"]["picture_problems"] == [
        {"camera": CAMERA_FRONT, "position": "front", "kind": "black", "seconds": 2}
    ]
    assert rows["OWN-1"]["open_findings"] == 1
    assert rows["OWN-1"]["active_holds"] == 2
    assert rows["FAR-1"]["picture_problems"] == []
    assert rows["FAR-1"]["open_findings"] == 0 and rows["FAR-1"]["active_holds"] == 0
    # The institution is the one supervised: its row says nothing of findings (its findings
    # routes answer 403), in the list and in the CSV alike; the rest of the glance stays.
    make_user(services, "t1glance", "institution", institution_code="T1")
    own = login(client, "t1glance")
    seen = {row["code"]: row for row in _list(client, own, date=DAY)["sittings"]}
    assert seen["OWN-1"]["open_findings"] is None and seen["OWN-1"]["active_holds"] == 2
    csv_text = client.get(
        "/api/v1/sittings", params={"date": DAY, "format": "csv"}, headers=own
    ).text
    header, *lines = list(csv.reader(io.StringIO(csv_text.lstrip("\ufeff"))))
    findings_column = next(n for n, name in enumerate(header) if "finding" in name.lower())
    assert lines and all(line[findings_column] == "" for line in lines), csv_text


def test_csv_of_what_is_shown(
    world: tuple[TestClient, Services], admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = world
    auth = {"Authorization": f"Bearer {admin_token}"}
    response = client.get(URL, headers=auth, params={"format": "csv", "date": DAY, "sort": "time"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs for UTF-8
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][0] == "场次编号 sitting" and len(rows) == 3
    assert {row[0] for row in rows[1:]} == {"OWN-1", "FAR-1"}
    assert "测试鉴定所" in {row[3] for row in rows[1:]}
    by_accept = client.get(
        URL, headers={**auth, "Accept": "text/csv"}, params={"date": DAY, "sort": "time"}
    )
    assert by_accept.content == response.content
    filtered = client.get(URL, headers=auth, params={"format": "csv", "institution": "T2"})
    assert [row[0] for row in csv.reader(io.StringIO(filtered.text.lstrip("\ufeff")))][1:] == [
        "FAR-1"
    ]
    monkeypatch.setattr(endpoints, "CSV_MAX_ROWS", 1)
    refused = client.get(URL, headers=auth, params={"format": "csv", "date": DAY})
    assert refused.status_code == 422 and refused.json()["code"] == "csv_too_large"


def test_the_sweep_fills_in_summaries_of_sittings_judged_before_them(
    world: tuple[TestClient, Services], admin_token: str
) -> None:
    client, services = world
    services.db.run_write(lambda s: s.execute(update(Sitting).values(coverage_summary=None)))
    auth = {"Authorization": f"Bearer {admin_token}"}
    assert {row["summarised"] for row in _list(client, auth)["sittings"]} == {False}
    sweep_pending(services.db, services.settings, now=datetime.now(UTC))
    rows = _list(client, auth)["sittings"]
    assert {row["summarised"] for row in rows} == {True}
    assert all(camera["missing_seconds"] == 3600 for row in rows for camera in row["missing"])


def test_a_room_named_in_the_registry_has_its_name_in_the_list(
    world: tuple[TestClient, Services], admin_token: str
) -> None:
    client, services = world
    named = copy.deepcopy(REGISTRY)
    named["institutions"][0]["sites"][0]["rooms"][0]["name"] = "101 理论考场"
    services.db.run_write(lambda s: import_registry(s, json.dumps(named), actor="test"))
    auth = {"Authorization": f"Bearer {admin_token}"}
    rows = {row["code"]: row for row in _list(client, auth, date=DAY)["sittings"]}
    assert rows["OWN-1"]["room_name"] == "101 理论考场"
    assert rows["FAR-1"]["room_name"] is None
    named["institutions"][0]["sites"][0]["rooms"][0]["name"] = "长" * 201
    with pytest.raises(RegistryError, match=r"rooms\[0\]\.name: at most 200"):
        parse_registry(json.dumps(named))
