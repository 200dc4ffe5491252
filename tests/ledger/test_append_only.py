"""The ledger is append-only in the database itself (migrations 0006 and 0009): triggers refuse
UPDATE and DELETE of ledger entries, checkpoint records and stored tree nodes, and every change
of a tombstone except the purge's one mark, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from services.context import Services
from services.ledger.checkpoints import make_checkpoint
from services.ledger.keys import load_or_create_signer
from services.retention.purge import execute_purge
from storage import ledger
from storage.models import LedgerCheckpointRecord, LedgerEntry, LedgerNode, PurgeRun, Tombstone
from tests.retention.test_purge import SegmentSpec, make_segments


def _append(services: Services, count: int) -> None:
    def work(session: Session) -> None:
        for number in range(count):
            ledger.append(
                session,
                actor="test",
                action="test.event",
                subject_type="test",
                subject_id=number,
            )

    services.db.run_write(work)


def _refused(services: Services, statement: Executable) -> str:
    with pytest.raises(DatabaseError) as caught, services.db.write() as session:
        session.execute(statement)
    return str(caught.value)


def test_ledger_entries_refuse_update_and_delete(services: Services) -> None:
    _append(services, 3)
    edit = update(LedgerEntry).where(LedgerEntry.seq == 2).values(actor="intruder")
    assert "UPDATE on ledger_entries refused" in _refused(services, edit)
    assert "DELETE on ledger_entries refused" in _refused(services, delete(LedgerEntry))
    with services.db.read() as session:
        assert ledger.verify(session).entries == 3
        assert session.get_one(LedgerEntry, 2).actor == "test"


def test_ledger_entries_refuse_raw_sql_and_truncate(services: Services) -> None:
    _append(services, 2)
    assert "refused" in _refused(services, text("DELETE FROM ledger_entries WHERE seq = 2"))
    assert "refused" in _refused(services, text("UPDATE ledger_entries SET details = '{}'"))
    if not services.db.is_sqlite:
        assert "refused" in _refused(services, text("TRUNCATE ledger_entries"))
    with services.db.read() as session:
        assert ledger.verify(session).entries == 2


def test_appending_still_works_under_the_triggers(services: Services) -> None:
    _append(services, 2)
    _append(services, 3)
    with services.db.read() as session:
        verdict = ledger.verify(session)
    assert verdict.ok and verdict.entries == 5


def test_checkpoint_records_refuse_update_and_delete(services: Services) -> None:
    _append(services, 4)
    make_checkpoint(services.db, services.store, load_or_create_signer(services.settings.data_dir))
    edit = update(LedgerCheckpointRecord).values(size=2)
    assert "UPDATE on ledger_checkpoints refused" in _refused(services, edit)
    erase = delete(LedgerCheckpointRecord)
    assert "DELETE on ledger_checkpoints refused" in _refused(services, erase)
    with services.db.read() as session:
        assert session.scalars(select(LedgerCheckpointRecord.size)).all() == [4]


def test_stored_tree_nodes_refuse_update_delete_and_truncate(services: Services) -> None:
    _append(services, 5)
    edit = update(LedgerNode).where(LedgerNode.level == 0).values(digest=b"\x00" * 32)
    assert "UPDATE on ledger_nodes refused" in _refused(services, edit)
    assert "DELETE on ledger_nodes refused" in _refused(services, delete(LedgerNode))
    if not services.db.is_sqlite:
        assert "refused" in _refused(services, text("TRUNCATE ledger_nodes"))
    with services.db.read() as session:
        assert ledger.verify_stored_tree(session).ok
        # 5 leaves: 5 leaf hashes, 2 pairs and 1 node of four.
        assert len(session.scalars(select(LedgerNode.level)).all()) == 8


def _expired_segment(registered: Services, tmp_path: Path) -> int:
    start = datetime(2020, 1, 6, 1, 0, tzinfo=UTC)
    spec = SegmentSpec("T1-S1-R1-F", start, start + timedelta(minutes=10), start + timedelta(1))
    return make_segments(registered, [spec], tmp_path / "blobs")[0].id


def test_the_purge_still_tombstones_and_marks_blobs_deleted(
    registered: Services, tmp_path: Path
) -> None:
    _expired_segment(registered, tmp_path)
    result = execute_purge(registered.db, registered.store, registered.settings, actor="test")
    assert result.purged == 1
    with registered.db.read() as session:
        assert session.scalars(select(Tombstone.blob_deleted_at)).one() is not None


def test_tombstones_allow_only_setting_blob_deleted_at_once(
    registered: Services, tmp_path: Path
) -> None:
    segment_id = _expired_segment(registered, tmp_path)
    now = datetime.now(UTC)
    # A pending tombstone, as a kill between the purge's commit and its unlink leaves one.
    with registered.db.write() as session:
        session.add(
            PurgeRun(
                id="run-1",
                as_of=now,
                started_at=now,
                finished_at=None,
                actor="test",
                planned=1,
                planned_bytes=1,
                purged=1,
            )
        )
        session.flush()
        session.add(
            Tombstone(
                segment_id=segment_id,
                run_id="run-1",
                sha256="a" * 64,
                size_bytes=1,
                blob_key="k",
                starts_at=now,
                ends_at=now,
                expires_at=now,
                purged_at=now,
                reason="retention expired",
                blob_deleted_at=None,
            )
        )
    row = update(Tombstone).where(Tombstone.segment_id == segment_id)
    assert "refused" in _refused(registered, row.values(sha256="0" * 64))
    assert "refused" in _refused(registered, row.values(blob_deleted_at=now, reason="other"))
    assert "DELETE on tombstones refused" in _refused(registered, delete(Tombstone))

    with registered.db.write() as session:
        session.execute(row.values(blob_deleted_at=now))
    later = now + timedelta(days=1)
    assert "refused" in _refused(registered, row.values(blob_deleted_at=later))
    assert "refused" in _refused(registered, row.values(blob_deleted_at=None))
    if not registered.db.is_sqlite:
        assert "refused" in _refused(registered, text("TRUNCATE tombstones CASCADE"))
    with registered.db.read() as session:
        tombstone = session.scalars(select(Tombstone)).one()
    assert (tombstone.blob_deleted_at, tombstone.sha256) == (now, "a" * 64)
    assert tombstone.reason == "retention expired"
