"""The purge on /metrics (services/operations/purge_watch.py): runs by how they ended, when one
last completed, and tombstoned blobs the store still holds, read in the background."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.context import Services
from services.retention.purge import execute_purge
from storage.blobs import BlobStoreError
from tests.conftest import CAMERA_FRONT
from tests.retention.test_purge import SegmentSpec, make_segments


def _scrape(services: Services) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    services.readiness.purge_watch.run_once()
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(services.metrics.render()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _expired(services: Services, scratch: Path, hours_ago: int) -> None:
    end = datetime.now(UTC) - timedelta(days=4 * 365, hours=hours_ago)
    make_segments(
        services,
        [SegmentSpec(CAMERA_FRONT, end - timedelta(minutes=5), end, end + timedelta(days=1))],
        scratch,
    )


def test_purge_runs_and_leftovers_move_on_metrics(
    registered: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = registered
    before = _scrape(services)
    assert before["examvault_purge_runs"][(("status", "stopped"),)] == 0
    assert "examvault_purge_last_completed_timestamp_seconds" not in before
    assert before["examvault_purge_blobs_pending_deletion"][()] == 0

    _expired(services, tmp_path / "a", hours_ago=2)
    execute_purge(services.db, services.store, services.settings, actor="test")
    done = _scrape(services)
    assert done["examvault_purge_runs"][(("status", "completed"),)] == 1
    finished = done["examvault_purge_last_completed_timestamp_seconds"][()]
    assert abs(finished - datetime.now(UTC).timestamp()) < 60

    def refuse(key: str) -> None:
        raise BlobStoreError(f"{key}: the store refused the deletion")

    _expired(services, tmp_path / "b", hours_ago=1)
    monkeypatch.setattr(services.store, "delete_deferred", refuse)
    execute_purge(services.db, services.store, services.settings, actor="test")
    left = _scrape(services)
    # Tombstoned, its blob still stored: the next run finishes it.
    assert left["examvault_purge_blobs_pending_deletion"][()] == 1
    assert sum(left["examvault_purge_runs"].values()) == 2
