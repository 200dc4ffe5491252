"""The centre's records pages over HTTP: the retention plan for a day (with held items and the
rule behind each expiry), purge runs and tombstones, camera hosts (tokens, last upload, the
daemon's report) and the ledger (status, a bounded check, the search of who read what)."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import update

from services.access.tokens import create_token
from services.api.app import create_app
from services.cli import main
from services.context import Services
from services.ingest.pushd import CameraFolder, DaemonConfig, PushDaemon
from services.ledger.keys import key_id_for
from services.ledger.status import ledger_status
from services.retention.purge import execute_purge
from services.witness.cosignatures import witness_key_text
from storage.db import Database
from storage.models import LedgerCosignature, LedgerEntry, PurgeRun, Segment
from tests.api.conftest import START, assign_now, ingest_file, login, make_user
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY, VideoFactory, serving
from tests.ledger.tampering import drop_append_only_guard

World = tuple[TestClient, Services]


def _admin(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def footage(world: World, make_video: VideoFactory) -> dict[str, int]:
    """OWN-1's two cameras, one short segment each at its start (expiring with the sitting)."""
    _, services = world
    ids = {}
    for seed, camera in enumerate((CAMERA_FRONT, CAMERA_BACK)):
        path = make_video(f"{START:%Y%m%dT%H%M%S}Z_{seed}.mp4", seconds=2, seed=seed)
        ids[camera] = ingest_file(services, camera, path).id
    return ids


def test_plan_for_a_day_groups_what_goes_says_why_and_shows_held_items(
    world: World, admin_token: str, footage: dict[str, int]
) -> None:
    client, _ = world
    admin = _admin(admin_token)
    hold = client.post(
        "/api/v1/holds",
        headers=admin,
        json={"segment": footage[CAMERA_BACK], "reason": "投诉调查", "case_reference": "CQ-29"},
    )
    assert hold.status_code == 201, hold.text
    # Three calendar years after OWN-1 (20 November 2026, local), to the end of that day: a
    # purge run on 21 November 2029 deletes it, one on the 20th does not.
    before = client.get("/api/v1/retention/plan?date=2029-11-20", headers=admin).json()
    assert (before["segments"], before["held_segments"]) == (0, 0)
    plan = client.get("/api/v1/retention/plan?date=2029-11-21", headers=admin).json()
    assert plan["as_of"].startswith("2029-11-21T23:59:59.999") and plan["as_of"].endswith("+08:00")
    assert plan["segments"] == 1 and plan["bytes"] > 0
    assert plan["retention_years"] == 3 and "calendar years" in plan["rule"]
    [group] = plan["groups"]
    assert group["camera"] == CAMERA_FRONT
    assert group["expires_at"] == "2029-11-21T00:00:00.000+08:00"
    assert (group["anchor"], group["sittings"]) == ("sitting", ["OWN-1"])
    assert group["bytes"] == plan["bytes"]
    assert plan["held_segments"] == 1 and plan["held_bytes"] > 0
    [held] = plan["held"]
    assert held["segment"] == footage[CAMERA_BACK] and held["camera"] == CAMERA_BACK
    assert [(h["id"], h["reason"], h["case_reference"]) for h in held["holds"]] == [
        (hold.json()["id"], "投诉调查", "CQ-29")
    ]


def test_plan_refuses_bad_dates_big_pages_and_non_admins(world: World, admin_token: str) -> None:
    client, services = world
    admin = _admin(admin_token)
    for value, status, code in (
        ("2029-02-30", 422, "invalid_date"),
        ("0001-01-01", 422, "invalid_date"),
        ("tomorrow", 400, "invalid_request"),
        ("2029-11-21T00:00:00+08:00", 400, "invalid_request"),
    ):
        answer = client.get(f"/api/v1/retention/plan?date={value}", headers=admin)
        assert (answer.status_code, answer.json()["code"]) == (status, code), value
        assert answer.json()["message_zh"]
    too_big = client.get("/api/v1/retention/plan?date=2029-11-21&limit=201", headers=admin)
    assert too_big.status_code == 400
    for forged in ("offset=-1", "held_limit=1000000", "limit=0", "date=2029-11-21&date=x"):
        query = forged if forged.startswith("date") else f"date=2029-11-21&{forged}"
        answer = client.get(f"/api/v1/retention/plan?{query}", headers=admin)
        assert answer.status_code in (400, 422), forged
    assert client.get("/api/v1/retention/plan", headers=admin).status_code == 400
    assert client.get("/api/v1/retention/tombstones?before=0", headers=admin).status_code == 400
    assert client.get("/api/v1/retention/tombstones?limit=201", headers=admin).status_code == 400
    assert client.get("/api/v1/retention/runs?limit=201", headers=admin).status_code == 400
    make_user(services, "zhang", "supervisor")
    make_user(services, "yuzhong", "district_officer", district="渝中区")
    make_user(services, "t1", "institution", institution_code="T1")
    _, host = services.db.run_write(
        lambda s: create_token(
            s, role="camera_host", name="R1", cameras=[CAMERA_FRONT], actor="test"
        )
    )
    for headers in [login(client, name) for name in ("zhang", "yuzhong", "t1")] + [_admin(host)]:
        for path in (
            "/api/v1/retention/plan?date=2029-11-21",
            "/api/v1/retention/runs",
            "/api/v1/retention/tombstones",
            "/api/v1/machines",
            "/api/v1/ledger/status",
        ):
            refused = client.get(path, headers=headers)
            assert (refused.status_code, refused.json()["code"]) == (403, "forbidden"), path
        refused = client.post("/api/v1/ledger/checks", headers=headers, json={"entries": 10})
        assert refused.status_code == 403
    # Read only: no route deletes anything from the page.
    assert client.post("/api/v1/retention/plan?date=2029-11-21", headers=admin).status_code == 405
    assert client.delete("/api/v1/retention/tombstones", headers=admin).status_code == 405


def test_runs_and_tombstones_are_listed_searched_and_paged(
    world: World, admin_token: str, footage: dict[str, int]
) -> None:
    client, services = world
    admin = _admin(admin_token)
    services.db.run_write(
        lambda s: s.execute(
            update(Segment).values(expires_at=datetime.now(UTC) - timedelta(days=1))
        )
    )
    # An earlier run whose process was killed, as close_abandoned_runs leaves it.
    killed_at = datetime.now(UTC) - timedelta(days=1)
    services.db.run_write(
        lambda s: s.add(
            PurgeRun(
                id="0f5e2c1a-killed",
                as_of=killed_at,
                started_at=killed_at,
                finished_at=killed_at + timedelta(minutes=40),
                actor="schedule",
                planned=10,
                planned_bytes=1000,
                purged=4,
                purged_bytes=400,
                status="interrupted",
                stop_reason="the process running it ended before it finished",
            )
        )
    )
    result = execute_purge(services.db, services.store, services.settings, actor="test")
    assert result.purged == 2
    runs = client.get("/api/v1/retention/runs", headers=admin).json()
    assert runs["total"] == 2
    run, killed = runs["runs"]
    assert (killed["id"], killed["status"], killed["purged"]) == (
        "0f5e2c1a-killed",
        "interrupted",
        4,
    )
    assert killed["stop_reason"].startswith("the process running it ended")
    assert client.get("/api/v1/retention/runs?offset=1&limit=1", headers=admin).json()["runs"] == [
        killed
    ]
    assert (run["id"], run["status"], run["purged"]) == (result.run_id, "completed", 2)
    assert run["purged_bytes"] == result.bytes > 0 and run["finished_at"].endswith("+08:00")

    first = client.get("/api/v1/retention/tombstones?limit=1", headers=admin).json()
    assert len(first["tombstones"]) == 1 and first["next_before"] is not None
    second = client.get(
        f"/api/v1/retention/tombstones?limit=1&before={first['next_before']}", headers=admin
    ).json()
    assert second["next_before"] is None
    both = first["tombstones"] + second["tombstones"]
    assert {t["segment"] for t in both} == set(footage.values())
    assert all(t["blob_deleted_at"] and t["run"] == result.run_id for t in both)
    wanted = both[0]
    by_hash = client.get(
        f"/api/v1/retention/tombstones?q={wanted['sha256'][:12]}", headers=admin
    ).json()["tombstones"]
    assert [t["id"] for t in by_hash] == [wanted["id"]]
    by_segment = client.get(
        f"/api/v1/retention/tombstones?q={wanted['segment']}", headers=admin
    ).json()["tombstones"]
    assert [t["id"] for t in by_segment] == [wanted["id"]]
    by_camera = client.get(
        f"/api/v1/retention/tombstones?camera={CAMERA_BACK}", headers=admin
    ).json()["tombstones"]
    assert [t["segment"] for t in by_camera] == [footage[CAMERA_BACK]]
    nothing = client.get("/api/v1/retention/tombstones?run=no-such-run&q=%25", headers=admin).json()
    assert nothing == {"tombstones": [], "next_before": None}
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (
        client.get("/api/v1/retention/tombstones", params={"from": later}, headers=admin).json()[
            "tombstones"
        ]
        == []
    )
    naive = client.get("/api/v1/retention/tombstones?from=2026-01-01T00:00:00", headers=admin)
    assert naive.status_code == 400


def test_camera_host_token_is_listed_without_its_secret_with_upload_and_report(
    world: World, admin_token: str, make_video: VideoFactory
) -> None:
    client, _ = world
    admin = _admin(admin_token)
    created = client.post(
        "/api/v1/tokens",
        headers=admin,
        json={"name": "R1 录像主机", "role": "camera_host", "cameras": [CAMERA_FRONT]},
    )
    assert created.status_code == 201
    secret, token_id = created.json()["token"], created.json()["id"]
    listed = client.get("/api/v1/machines", headers=admin)
    assert secret not in listed.text and secret[4:20] not in listed.text
    [host] = listed.json()["hosts"]
    assert (host["id"], host["cameras"], host["live"]) == (token_id, [CAMERA_FRONT], True)
    assert host["last_upload"] is None and host["report"] is None
    cameras = {camera["code"]: camera for camera in listed.json()["cameras"]}
    assert cameras[CAMERA_FRONT]["hosts"] == [token_id] and cameras[CAMERA_BACK]["hosts"] == []
    assert cameras[CAMERA_FRONT]["institution"] == "测试鉴定所"

    path = make_video(f"{START:%Y%m%dT%H%M%S}Z.mp4", seconds=2)
    pushed = client.put(
        f"/api/v1/ingest/{CAMERA_FRONT}/{path.name}",
        content=path.read_bytes(),
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert pushed.status_code == 201, pushed.text
    report = {
        "backlog_files": 3,
        "backlog_bytes": 12_345_678,
        "unfinished_files": 1,
        "last_error": "HTTP 503 store_unavailable",
        "last_error_at": "2026-12-04T10:00:00+00:00",
        "disk_low": False,
    }
    sent = client.put(
        "/api/v1/hosts/report", json=report, headers={"Authorization": f"Bearer {secret}"}
    )
    assert sent.status_code == 204, sent.text
    # Only a host reports for itself: the admin has no daemon, a person none either.
    assert client.put("/api/v1/hosts/report", json=report, headers=admin).status_code == 403
    hostile = client.put(
        "/api/v1/hosts/report",
        json={**report, "backlog_files": -1},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert hostile.status_code == 400
    [host] = client.get("/api/v1/machines", headers=admin).json()["hosts"]
    assert host["last_upload"]["camera"] == CAMERA_FRONT
    assert host["last_upload"]["size"] == pushed.json()["size"]
    assert host["last_upload"]["received_at"].endswith("+08:00")
    assert host["report"]["backlog_files"] == 3
    assert host["report"]["backlog_bytes"] == 12_345_678
    assert host["report"]["last_error"] == "HTTP 503 store_unavailable"

    revoked = client.post(
        f"/api/v1/tokens/{token_id}/revoke", headers=admin, json={"reason": "主机更换"}
    )
    assert revoked.status_code == 200
    [host] = client.get("/api/v1/machines", headers=admin).json()["hosts"]
    assert host["live"] is False and host["revoked_at"]
    again = client.put(
        "/api/v1/hosts/report", json=report, headers={"Authorization": f"Bearer {secret}"}
    )
    assert again.status_code == 401


def test_ledger_status_shows_the_checkpoint_and_records_a_bounded_check(
    world: World, admin_token: str
) -> None:
    client, services = world
    admin = _admin(admin_token)
    status = client.get("/api/v1/ledger/status", headers=admin).json()
    assert status["size"] > 0 and status["size"] == status["tree_size"]
    assert status["checkpoint"] is None and status["last_recent_check"] is None
    assert client.get("/api/v1/ledger/checkpoint", headers=admin).status_code == 200
    status = client.get("/api/v1/ledger/status", headers=admin).json()
    assert status["checkpoint"]["size"] == status["size"]
    assert status["checkpoint"]["age_seconds"] < 60
    assert status["tree_root"] == {"size": status["size"], "ok": True, "problem": None}
    assert status["witnesses"] == [] and status["cosignatures"] == []

    check = client.post("/api/v1/ledger/checks", headers=admin, json={"entries": 5})
    assert check.status_code == 201
    assert check.json()["ok"] is True and check.json()["kind"] == "recent"
    assert check.json()["last_seq"] - check.json()["first_seq"] == 4
    too_many = client.post("/api/v1/ledger/checks", headers=admin, json={"entries": 20_001})
    assert too_many.status_code == 400
    status = client.get("/api/v1/ledger/status", headers=admin).json()
    assert status["last_recent_check"]["ok"] is True

    # An entry edited behind the triggers: the bounded check names it.
    newest = status["size"]

    def tamper(session: object) -> None:
        drop_append_only_guard(session, "ledger_entries")  # type: ignore[arg-type]
        from sqlalchemy import text

        session.execute(  # type: ignore[attr-defined]
            text("UPDATE ledger_entries SET actor = 'someone:else' WHERE seq = :seq"),
            {"seq": newest - 1},
        )

    services.db.run_write(tamper)
    failed = client.post("/api/v1/ledger/checks", headers=admin, json={"entries": 3}).json()
    assert failed["ok"] is False
    assert failed["problem"] == f"entry {newest - 1}: content does not match its entry_hash"
    status = client.get("/api/v1/ledger/status", headers=admin).json()
    assert status["last_recent_check"]["ok"] is False


def test_ledger_search_finds_a_supervisors_footage_reads(
    world: World, admin_token: str, footage: dict[str, int]
) -> None:
    client, services = world
    admin = _admin(admin_token)
    make_user(services, "zhang", "supervisor")
    assign_now(services, "zhang", "OWN-1")
    zhang = login(client, "zhang")
    read = client.get(f"/api/v1/segments/{footage[CAMERA_FRONT]}/content", headers=zhang)
    assert read.status_code == 200

    def search(**params: str) -> list[dict[str, object]]:
        answer = client.get("/api/v1/ledger/entries", params=params, headers=admin)
        assert answer.status_code == 200, answer.text
        return answer.json()["entries"]

    mine = search(actor="supervisor:zhang", kind="footage", order="desc")
    assert [(e["action"], e["subject_id"]) for e in mine] == [
        ("footage.content", str(footage[CAMERA_FRONT]))
    ]
    assert [e["seq"] for e in search(sitting="OWN-1", kind="footage")] == [mine[0]["seq"]]
    assert search(sitting="OWN-2", kind="footage") == []
    assert search(sitting="NO-SUCH") == []
    assert [e["seq"] for e in search(camera=CAMERA_FRONT, actor="supervisor:zhang")] == [
        mine[0]["seq"]
    ]
    assert search(camera=CAMERA_BACK, actor="supervisor:zhang") == []
    recorded = datetime.fromisoformat(str(mine[0]["recorded_at"]))
    just_before = (recorded - timedelta(seconds=1)).isoformat()
    just_after = (recorded + timedelta(seconds=1)).isoformat()
    assert len(search(actor="supervisor:zhang", kind="footage", **{"from": just_before})) == 1
    assert search(actor="supervisor:zhang", kind="footage", **{"from": just_after}) == []
    assert search(actor="supervisor:zhang", kind="footage", until=just_before) == []

    # Newest first, paged with `before`, never a repeat.
    seen: list[int] = []
    params = {"order": "desc", "limit": "3"}
    while True:
        page = client.get("/api/v1/ledger/entries", params=params, headers=admin).json()
        seen += [entry["seq"] for entry in page["entries"]]
        if page["next_before"] is None:
            break
        params["before"] = str(page["next_before"])
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == seen[0]

    refused = client.get("/api/v1/ledger/entries?limit=1001", headers=admin)
    assert refused.status_code == 400
    forged = client.get("/api/v1/ledger/entries?order=sideways", headers=admin)
    assert forged.status_code == 400
    assert client.get("/api/v1/ledger/entries?from=yesterday", headers=admin).status_code == 400
    supervisor = client.get("/api/v1/ledger/entries?actor=supervisor:zhang", headers=zhang)
    assert supervisor.status_code == 403


def test_the_push_daemon_reports_its_backlog_to_the_centre(
    registered: Services, admin_token: str, make_video: VideoFactory, tmp_path: Path
) -> None:
    """A real daemon against a real server: after its pass the centre sees what it pushed and
    what it could not (a file refused with 403 stays, counted in the backlog it reported)."""
    row, token = registered.db.run_write(
        lambda s: create_token(
            s, role="camera_host", name="R1", cameras=[CAMERA_FRONT], actor="test"
        )
    )
    host = tmp_path / "host"
    for camera, seed in ((CAMERA_FRONT, 1), (CAMERA_BACK, 2)):
        folder = host / camera
        folder.mkdir(parents=True)
        name = f"{START:%Y%m%dT%H%M%S}Z.mp4"
        (folder / name).write_bytes(make_video(f"{seed}-{name}", seconds=1, seed=seed).read_bytes())
        os.utime(folder / name, (time.time() - 60, time.time() - 60))
    with serving(registered) as url:
        config = DaemonConfig(
            server=url,
            token=token,
            folders=[CameraFolder(host)],
            state_path=tmp_path / "state.sqlite3",
            settle_seconds=5,
            max_backoff_seconds=1,
            once=True,
        )
        # The back camera is not this host's: 403, kept, tried again later.
        assert PushDaemon(config).run() == 1
        with TestClient(create_app(registered)) as client:
            [seen] = client.get("/api/v1/machines", headers=_admin(admin_token)).json()["hosts"]
    assert seen["id"] == row.id
    assert seen["last_upload"]["camera"] == CAMERA_FRONT
    report = seen["report"]
    assert report["backlog_files"] == 1 and report["backlog_bytes"] > 0
    assert report["last_success_at"] and "403" in report["last_error"]


def test_ledger_status_names_each_witness_and_what_it_cosigned(
    world: World, admin_token: str
) -> None:
    client, services = world
    admin = _admin(admin_token)
    signed, waiting = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    witnesses = ",".join(
        f"http://witness-{n}.invalid {witness_key_text(key.public_key())}"
        for n, key in enumerate((signed, waiting))
    )
    object.__setattr__(services.settings, "witnesses", witnesses)
    checkpoint = client.get("/api/v1/ledger/checkpoint", headers=admin).json()
    key_id = key_id_for(signed.public_key())
    services.db.run_write(
        lambda s: s.add(
            LedgerCosignature(
                checkpoint_size=checkpoint["size"],
                witness_key_id=key_id,
                checkpoint_root=checkpoint["root"],
                timestamp=int(time.time()),
                signature="c2lnbmF0dXJl",
                recorded_at=datetime.now(UTC),
            )
        )
    )
    status = client.get("/api/v1/ledger/status", headers=admin).json()
    by_url = {witness["url"]: witness for witness in status["witnesses"]}
    assert by_url["http://witness-0.invalid"]["cosigned_latest"] is True
    assert by_url["http://witness-0.invalid"]["cosigned_size"] == checkpoint["size"]
    assert by_url["http://witness-1.invalid"]["cosigned_latest"] is False
    assert by_url["http://witness-1.invalid"]["cosigned_size"] is None
    assert [c["witness_key_id"] for c in status["cosignatures"]] == [key_id]


def test_ledger_verify_records_its_result_for_the_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", database_url)
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(REGISTRY, ensure_ascii=False), encoding="utf-8")
    assert main(["registry", "import", str(registry)]) == 0
    assert main(["ledger", "verify"]) == 0
    db = Database(database_url)
    try:
        with db.read() as session:
            status = ledger_status(session)
        first = status.last_full
        assert first is not None and first.ok and first.actor == "cli:ledger-verify"
        assert (first.first_seq, first.last_seq) == (1, status.size)
        with db.write() as session:
            drop_append_only_guard(session, "ledger_entries")
            session.execute(update(LedgerEntry).where(LedgerEntry.seq == 1).values(actor="x"))
        assert main(["ledger", "verify"]) == 1
        with db.read() as session:
            failed = ledger_status(session).last_full
        assert failed is not None and not failed.ok
        assert failed.problem and "entry 1" in failed.problem
    finally:
        db.dispose()


def test_the_admin_page_modules_are_served_and_nothing_beside_them(world: World) -> None:
    client, _ = world
    for name in ("retention.js", "machines.js", "ledger.js", "records.js"):
        served = client.get(f"/web/admin/{name}")
        assert served.status_code == 200, name
        assert served.headers["content-type"].startswith("text/javascript")
        assert "script-src 'self'" in served.headers["content-security-policy"]
    for path in ("/web/secrets/ledger.js", "/web/admin/..%2Fapp.js", "/web/admin/.env"):
        assert client.get(path).status_code == 404, path
