"""Quarantine within bounds (issue 11, hole 8): a budget for rejected files' bytes (whole, then a
first-bytes sample, then the record alone), a retention for those bytes, the record kept for
ever, and gauges in /metrics (docs/ingest.md, "Quarantine")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.access.tokens import create_token
from services.api.app import create_app
from services.cli import main
from services.context import Services
from services.ingest.quarantine import Kept, QuarantineBounds, bytes_to_keep
from services.registry import import_registry
from services.settings import load_settings
from storage.models import LedgerEntry, QuarantineRecord
from tests.conftest import CAMERA_FRONT, REGISTRY

KIB = 1024
BUDGET = 64 * KIB
SAMPLE = 4 * KIB


@pytest.fixture
def bounded(tmp_path: Path, database_url: str) -> Iterator[Services]:
    settings = load_settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        quarantine_budget_bytes=BUDGET,
        quarantine_sample_bytes=SAMPLE,
        quarantine_retention_days=30,
    )
    services = Services.from_settings(settings)
    services.db.run_write(
        lambda session: import_registry(session, json.dumps(REGISTRY), actor="test")
    )
    yield services
    services.close()


@pytest.fixture
def client(bounded: Services) -> Iterator[TestClient]:
    _, token = bounded.db.run_write(
        lambda session: create_token(
            session, role="camera_host", name="host", cameras=[CAMERA_FRONT], actor="test"
        )
    )
    with TestClient(create_app(bounded)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def _push(client: TestClient, minute: int, body: bytes) -> dict[str, object]:
    response = client.put(
        f"/api/v1/ingest/{CAMERA_FRONT}/20261124T09{minute:02d}00+0800.mp4", content=body
    )
    assert response.status_code == 422, response.text
    return response.json()


def _records(services: Services) -> list[QuarantineRecord]:
    with services.db.read() as session:
        return list(session.scalars(select(QuarantineRecord).order_by(QuarantineRecord.id)))


def _bytes_on_disk(services: Services) -> int:
    root = services.settings.quarantine_dir
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.suffix != ".json")


@pytest.mark.parametrize(
    ("size", "used", "expected"),
    [
        (10, 0, (Kept.WHOLE, 10)),
        (BUDGET, 0, (Kept.WHOLE, BUDGET)),
        (BUDGET + 1, 0, (Kept.SAMPLE, SAMPLE)),
        (100, BUDGET - 100, (Kept.WHOLE, 100)),
        (10 * SAMPLE, BUDGET - SAMPLE, (Kept.SAMPLE, SAMPLE)),
        (10 * SAMPLE, BUDGET - SAMPLE + 1, (Kept.NONE, 0)),
        (0, BUDGET, (Kept.WHOLE, 0)),
    ],
)
def test_what_a_rejected_file_keeps_depends_on_the_room_in_the_budget(
    size: int, used: int, expected: tuple[Kept, int]
) -> None:
    bounds = QuarantineBounds(budget_bytes=BUDGET, sample_bytes=SAMPLE)
    assert bytes_to_keep(size, used, bounds) == expected


def test_rejected_uploads_never_take_more_disk_than_the_budget(
    client: TestClient, bounded: Services
) -> None:
    garbage = bytes(range(256)) * (24 * KIB // 256)  # 24 KiB of "not a video"
    answers = [_push(client, minute, garbage) for minute in range(8)]

    kept = [answer["quarantine_kept"] for answer in answers]
    # Two whole files fit in 64 KiB, then 4 KiB samples until the budget is used, then none.
    assert kept[:2] == ["whole", "whole"]
    assert "sample" in kept and kept[-1] == "none"
    assert _bytes_on_disk(bounded) <= BUDGET
    records = _records(bounded)
    assert len(records) == 8  # every rejection keeps its record
    assert all(r.size_bytes == len(garbage) and r.reason_code == "not_a_video" for r in records)
    assert sum(r.kept_bytes for r in records) == _bytes_on_disk(bounded)
    last = answers[-1]
    assert last["code"] == "not_a_video"
    assert "keep your copy" in str(last["message"]) and "本地副本" in str(last["message_zh"])
    sample = next(r for r in records if r.kept_bytes == SAMPLE)
    assert sample.bytes_removed_reason == "budget"
    stored = bounded.settings.quarantine_dir / sample.stored_path
    assert stored.read_bytes() == garbage[:SAMPLE]
    sidecar = json.loads(Path(f"{stored}.json").read_text())
    assert (sidecar["kept"], sidecar["kept_bytes"], sidecar["size"]) == (
        "sample",
        SAMPLE,
        len(garbage),
    )


def test_the_bytes_go_after_the_retention_and_the_record_says_when_and_why(
    client: TestClient, bounded: Services
) -> None:
    _push(client, 0, b"not a video at all" * 100)
    record = _records(bounded)[0]
    stored = bounded.settings.quarantine_dir / record.stored_path
    assert stored.exists()

    assert bounded.quarantine.prune(now=datetime.now(UTC) + timedelta(days=29)) == []
    later = datetime.now(UTC) + timedelta(days=31)
    pruned = bounded.quarantine.prune(now=later)

    assert [item.record_id for item in pruned] == [record.id]
    assert not stored.exists()
    (after,) = _records(bounded)
    assert (after.kept_bytes, after.bytes_removed_reason) == (0, "retention")
    assert after.bytes_removed_at == later and after.sha256 == record.sha256
    sidecar = json.loads(Path(f"{stored}.json").read_text())
    assert sidecar["bytes_removed_reason"] == "retention" and sidecar["code"] == "not_a_video"
    with bounded.db.read() as session:
        entry = session.scalars(
            select(LedgerEntry).where(LedgerEntry.action == "quarantine.bytes_removed")
        ).one()
    details = json.loads(entry.details)
    assert (details["reason"], details["sha256"]) == ("retention", record.sha256)


def test_metrics_show_quarantined_bytes_files_and_the_budget(
    client: TestClient, bounded: Services
) -> None:
    body = b"\x00\x01" * 5000
    _push(client, 0, body)

    bounded.settings.metrics_token = "scraper-0123456789abcdef"
    text = client.get("/metrics", headers={"Authorization": "Bearer scraper-0123456789abcdef"}).text

    assert "examvault_quarantine_files 1\n" in text
    assert f"examvault_quarantine_bytes {len(body)}\n" in text
    assert f"examvault_quarantine_budget_bytes {BUDGET}\n" in text


def test_the_prune_command_plans_then_executes(
    client: TestClient, bounded: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    _push(client, 0, b"rubbish" * 300)
    with bounded.db.write() as session:
        for row in session.scalars(select(QuarantineRecord)):
            row.received_at = datetime.now(UTC) - timedelta(days=40)
    settings = bounded.settings
    env = {
        "EXAMVAULT_DATA_DIR": str(settings.data_dir),
        "EXAMVAULT_DATABASE_URL": settings.resolved_database_url,
        "EXAMVAULT_QUARANTINE_RETENTION_DAYS": "30",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert main(["quarantine", "prune", "--json"]) == 0
        plan = json.loads(capsys.readouterr().out)
        assert plan["executed"] is False and len(plan["files"]) == 1
        assert _records(bounded)[0].kept_bytes == 2100

        assert main(["quarantine", "prune", "--execute", "--json"]) == 0
        done = json.loads(capsys.readouterr().out)
        assert done["executed"] is True and done["bytes"] == 2100
        assert main(["quarantine", "list", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
    assert listed["used_bytes"] == 0
    assert listed["records"][0]["bytes_removed_reason"] == "retention"
