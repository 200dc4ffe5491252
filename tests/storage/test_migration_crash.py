"""Kill a real `examvault db upgrade` with SIGKILL in the middle of an upgrade, from an older
revision with evidence in the database, then rerun it: the kill leaves the schema it started
from (never half a migration), the rerun brings the schema to the newest revision, and no
segment, ledger entry or hold is lost or changed; `examvault ledger verify` passes.

The kill lands at the test-only fault point `migration.applied` (storage/migrations/env.py):
after the Nth migration of the upgrade ran and stamped its revision, before the upgrade's
transaction committed; each round moves N one further, so every boundary is hit once.

The evidence is made at the newest schema through the real pipeline, then the schema is
downgraded to the starting revision (the downgrades keep every row of the tables they keep):
the data of an older release, without depending on today's models fitting an older schema.
With EXAMVAULT_SOAK=1 the upgrade starts from the first revision, so every migration is crossed.
"""

from __future__ import annotations

import hashlib
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError

from services.context import Services
from services.retention.holds import HoldRequest, place_hold
from storage import ledger
from storage.db import Database, alembic_config, schema_differences
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, VideoFactory, import_sitting, ingest_file
from tests.processes import examvault_env, run_cli, spawn
from tests.reliability import Reliability

SOAK = os.environ.get("EXAMVAULT_SOAK") == "1"
# 0005: before the ledger's append-only triggers (0006) and the backfill of hold scopes from the
# holds already placed (0007), the two migrations with the most to leave half done.
START = "0001" if SOAK else "0005"
# The tables whose rows must survive; each is compared on the columns it had at START.
KEPT_TABLES = ("cameras", "sittings", "segments", "ledger_entries", "holds", "users")
SITTING = "MIG-2026-11-24-001"
Snapshot = dict[str, list[tuple[str, ...]]]


def _steps(url: str, start: str) -> list[str]:
    """The revisions an upgrade from `start` applies, oldest first."""
    scripts = ScriptDirectory.from_config(alembic_config(url))
    return [script.revision for script in reversed(list(scripts.iterate_revisions("head", start)))]


def _revision(db: Database) -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _tables(db: Database) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def _snapshot(db: Database, columns: dict[str, list[str]]) -> Snapshot:
    """Every row of the kept tables, on the columns they had at the starting revision."""
    snapshot: Snapshot = {}
    with db.engine.connect() as connection:
        for table, names in columns.items():
            # Identifiers from the database's own catalogue, not from input.
            listed = ", ".join(f'"{name}"' for name in names)
            rows = connection.execute(sa.text(f'SELECT {listed} FROM "{table}" ORDER BY 1'))
            # repr: PostgreSQL hands JSON columns back as lists, which sets cannot hold.
            snapshot[table] = [tuple(repr(value) for value in row) for row in rows]
    return snapshot


def _make_evidence(services: Services, make_video: VideoFactory) -> int:
    """Segments of both cameras, a sitting they cover, a sitting hold and a segment hold;
    returns how many hold scope rows the holds have (what the 0007 backfill must rebuild)."""
    first = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    segment_ids: list[int] = []
    for number in range(3):
        for camera, seed in ((CAMERA_FRONT, number), (CAMERA_BACK, 10 + number)):
            start = first + timedelta(seconds=3 * number)
            name = f"{start:%Y%m%dT%H%M%S}Z_{seed}.mp4"
            video = make_video(name, seconds=3, seed=seed)
            segment_ids.append(ingest_file(services, camera, video).id)
    import_sitting(services, SITTING, first, first + timedelta(seconds=9))
    for request in (
        HoldRequest(reason="complaint under investigation", sitting_code=SITTING),
        HoldRequest(reason="one clip kept for a case", segment_id=segment_ids[0]),
    ):
        services.db.run_write(
            lambda session, r=request: place_hold(
                session, services.store, services.settings, r, actor="test"
            )
        )
    return 2 + 1  # the sitting hold: one scope per camera of the room; the segment hold: one


def _killed_upgrade(env: dict[str, str], hit: int, log: Path) -> None:
    armed = {
        **env,
        "EXAMVAULT_TEST_FAULTS": "1",
        "EXAMVAULT_FAULT_POINT": f"migration.applied:{hit}",
    }
    process = spawn(armed, "db", "upgrade", log=log)
    code = process.wait(timeout=300)
    assert code == -signal.SIGKILL, f"exit {code}, not SIGKILL:\n{log.read_text()[-3000:]}"
    assert f"fault point migration.applied reached (hit {hit})" in log.read_text()


def test_sigkill_during_db_upgrade_leaves_the_old_schema_and_the_rerun_loses_nothing(
    tmp_path: Path,
    registered: Services,
    make_video: VideoFactory,
    reliability: Reliability,
) -> None:
    services = registered
    url = services.settings.resolved_database_url
    scope_rows = _make_evidence(services, make_video)
    with services.db.read() as session:
        assert ledger.verify(session).ok
    store = services.store
    services.close()

    command.downgrade(alembic_config(url), START)
    db = Database(url)
    try:
        assert _revision(db) == START
        at_start = _tables(db)
        inspector = sa.inspect(db.engine)
        columns = {
            table: [column["name"] for column in inspector.get_columns(table)]
            for table in KEPT_TABLES
            if table in at_start
        }
        before = _snapshot(db, columns)
        assert len(before["segments"]) == 6 and before["ledger_entries"]
        steps = _steps(url, START)
        assert len(steps) >= 2, "nothing left to interrupt: move START back"

        env = examvault_env(services.settings.data_dir, url, EXAMVAULT_HEALTH_CHECKS="false")
        for hit in range(1, len(steps) + 1):
            _killed_upgrade(env, hit, tmp_path / f"upgrade-{hit}.log")
            # All or nothing: nothing of the migrations that ran before the kill remains.
            assert _revision(db) == START, f"killed after {steps[hit - 1]}"
            assert _tables(db) == at_start, f"killed after {steps[hit - 1]}"
            assert _snapshot(db, columns) == before

        upgraded = run_cli(env, "db", "upgrade", timeout=300)
        assert upgraded.returncode == 0, upgraded.stderr[-3000:]
        assert _revision(db) == steps[-1]
        with db.engine.connect() as connection:
            assert schema_differences(connection) == []
        after = _snapshot(db, columns)

        # What was lost: segment rows or ledger entries gone or changed, and segments whose
        # stored bytes no longer have their SHA-256.
        evidence = ("segments", "ledger_entries")
        gone = sum(len(set(before[table]) - set(after[table])) for table in evidence)
        with db.engine.connect() as connection:
            stored = connection.execute(sa.text("SELECT sha256, blob_key FROM segments")).all()
        unreadable = sum(
            1
            for sha256, key in stored
            if hashlib.sha256(b"".join(store.read(key))).hexdigest() != sha256
        )
        verified = run_cli(env, "ledger", "verify", timeout=300)
        reliability.record(
            "crashes",
            f"SIGKILL in `db upgrade` {START}->{steps[-1]} after each migration, then a rerun "
            f"({db.engine.dialect.name}; acknowledged: segments + ledger entries)",
            tries=len(steps),
            acknowledged=sum(len(before[table]) for table in evidence),
            lost=gone + unreadable,
            answers={"SIGKILL": len(steps), f"rerun exit {upgraded.returncode}": 1},
        )
        assert after == before
        assert unreadable == 0
        assert verified.returncode == 0, verified.stderr[-3000:]
        if "holds" in at_start:
            with db.engine.connect() as connection:
                backfilled = connection.execute(sa.text("SELECT cause FROM hold_scopes")).scalars()
                assert sorted(backfilled) == ["backfilled"] * scope_rows
        # The rerun applied the append-only triggers (0006) too, not just the tables.
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM ledger_entries"))
    finally:
        db.dispose()
