from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update

from services.context import Services
from storage import ledger
from storage.models import LedgerEntry
from tests.ledger.tampering import drop_append_only_guard


def _append_three(services: Services) -> None:
    for number in range(3):
        services.db.run_write(
            lambda session, n=number: ledger.append(
                session,
                actor="test",
                action="test.event",
                subject_type="test",
                subject_id=n,
                details={"n": n, "text": "台账"},
            )
        )


def test_chain_links_each_entry_to_the_previous_hash(services: Services) -> None:
    _append_three(services)
    with services.db.read() as session:
        entries = session.query(LedgerEntry).order_by(LedgerEntry.seq).all()
        assert [entry.seq for entry in entries] == [1, 2, 3]
        assert entries[0].prev_hash == ledger.GENESIS_HASH
        assert entries[1].prev_hash == entries[0].entry_hash
        assert entries[2].prev_hash == entries[1].entry_hash
        assert ledger.verify(session).ok


def test_verify_names_an_edited_entry(services: Services) -> None:
    _append_three(services)
    with services.db.write() as session:
        # An attacker with the database owner's rights: the append-only trigger goes first.
        drop_append_only_guard(session, "ledger_entries")
        session.execute(
            update(LedgerEntry).where(LedgerEntry.seq == 2).values(details='{"n":99,"text":"台账"}')
        )
    with services.db.read() as session:
        verdict = ledger.verify(session)
    assert verdict.mismatch is not None
    assert verdict.mismatch.seq == 2


def test_verify_names_a_removed_entry(services: Services) -> None:
    _append_three(services)
    with services.db.write() as session:
        # An attacker with the database owner's rights: the append-only trigger goes first.
        drop_append_only_guard(session, "ledger_entries")
        session.execute(delete(LedgerEntry).where(LedgerEntry.seq == 2))
    with services.db.read() as session:
        verdict = ledger.verify(session)
    assert verdict.mismatch is not None
    assert verdict.mismatch.seq == 2
    assert "missing" in verdict.mismatch.reason


def test_instants_round_trip_exactly_so_hashes_verify(services: Services) -> None:
    _append_three(services)
    with services.db.read() as session:
        for entry in session.query(LedgerEntry):
            assert entry.recorded_at.tzinfo is not None
        assert ledger.verify(session).entries == 3


def test_recorded_at_never_runs_backwards_against_seq(services: Services) -> None:
    # A caller's instant taken before the append lock (an export's `now`, a report's computed_at)
    # can be older than the entry another writer appended meanwhile.
    taken_before_the_lock = datetime.now(UTC) - timedelta(seconds=5)
    first = services.db.run_write(
        lambda session: ledger.append(
            session, actor="test", action="test.event", subject_type="test", subject_id=1
        )
    )
    second = services.db.run_write(
        lambda session: ledger.append(
            session,
            actor="test",
            action="test.event",
            subject_type="test",
            subject_id=2,
            recorded_at=taken_before_the_lock,
        )
    )
    assert second.seq == first.seq + 1
    assert second.recorded_at >= first.recorded_at
    with services.db.read() as session:
        rows = session.query(LedgerEntry).order_by(LedgerEntry.seq).all()
        assert ledger.verify(session).ok
    assert [row.recorded_at for row in rows] == sorted(row.recorded_at for row in rows)
