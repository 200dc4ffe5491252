"""The ledger's stored Merkle tree: `examvault ledger verify` recomputes it and names the first
node that differs, and building it for a ledger that predates it (migration 0009) survives a
SIGKILL midway and ends with the same tree, on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from services.cli import main
from services.context import Services
from storage import ledger, merkle, tree
from storage.models import LedgerEntry, LedgerNode
from tests.ledger.tampering import drop_append_only_guard
from tests.processes import ROOT, examvault_env, run_cli


def _append(services: Services, count: int) -> None:
    events = [ledger.Event("test", "test.event", "test", n, {"n": n}) for n in range(count)]
    services.db.run_write(lambda session: ledger.append_many(session, events))


@pytest.fixture
def cli(services: Services, monkeypatch: pytest.MonkeyPatch) -> Services:
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", services.settings.resolved_database_url)
    monkeypatch.setenv("EXAMVAULT_STORAGE_URL", services.store.url)
    return services


def _alter_node(services: Services, level: int, position: int) -> None:
    """A forger with the database owner's rights changes one stored hash."""
    with services.db.write() as session:
        drop_append_only_guard(session, "ledger_nodes")
        session.execute(
            update(LedgerNode)
            .where(LedgerNode.level == level, LedgerNode.position == position)
            .values(digest=b"\x5a" * 32)
        )


@pytest.mark.parametrize(
    ("level", "position", "named"), [(2, 1, "entries 5..8"), (0, 9, "entry 10")]
)
def test_verify_names_the_first_stored_node_that_differs(
    cli: Services, capsys: pytest.CaptureFixture[str], level: int, position: int, named: str
) -> None:
    _append(cli, 12)
    assert main(["ledger", "verify"]) == 0
    assert "22 stored tree nodes match" in capsys.readouterr().out  # 2 * 12 - popcount(12)
    _alter_node(cli, level, position)
    assert main(["ledger", "verify"]) == 1
    err = capsys.readouterr().err
    assert (
        f"ledger tree does not verify: node (level {level}, position {position}) over {named}: "
        f"stored {'5a' * 32}, recomputed from the entries"
    ) in err
    # The entries are untouched: only the tree check fails.
    assert "ledger does not verify" not in err


def _bulk_entries(session: Session, count: int) -> None:
    """A ledger as it stood before migration 0009: entries inserted without their nodes."""
    prev = ledger.GENESIS_HASH
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for seq in range(1, count + 1):
        fields = {
            "seq": seq,
            "recorded_at": moment,
            "actor": "test",
            "action": "test.event",
            "subject_type": "test",
            "subject_id": str(seq),
            "details": "{}",
            "prev_hash": prev,
        }
        prev = ledger.entry_hash(**fields)  # type: ignore[arg-type]
        rows.append({**fields, "entry_hash": prev})
    session.execute(insert(LedgerEntry), rows)


def _stored_nodes(services: Services) -> dict[tuple[int, int], bytes]:
    with services.db.read() as session:
        rows = session.execute(select(LedgerNode.level, LedgerNode.position, LedgerNode.digest))
        return {(level, position): bytes(digest) for level, position, digest in rows}


def _stored_size(services: Services) -> int:
    with services.db.read() as session:
        return tree.stored_size(session)


def test_tree_build_killed_midway_resumes_to_the_same_tree(
    services: Services, tmp_path: Path
) -> None:
    entries = 40_000
    services.db.run_write(lambda session: _bulk_entries(session, entries))
    assert _stored_size(services) == 0
    env = examvault_env(
        services.settings.data_dir,
        services.settings.resolved_database_url,
        EXAMVAULT_STORAGE_URL=services.store.url,
    )
    log = tmp_path / "build.log"
    with log.open("wb") as sink:
        build = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "ledger", "build-tree", "--batch", "250"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while _stored_size(services) < 2_000 and time.monotonic() < deadline:
            assert build.poll() is None, log.read_text()
            time.sleep(0.02)
        build.send_signal(signal.SIGKILL)
    finally:
        build.kill()
        build.wait()
    killed_at = _stored_size(services)
    assert 2_000 <= killed_at < entries, f"not killed midway: {killed_at} of {entries}"

    resumed = run_cli(env, "ledger", "build-tree", "--batch", "250", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"the ledger's stored tree holds {entries} entries" in resumed.stdout

    with services.db.read() as session:
        leaves = [
            bytes.fromhex(digest)
            for digest in session.scalars(select(LedgerEntry.entry_hash).order_by(LedgerEntry.seq))
        ]
        assert ledger.verify_stored_tree(session).ok
    expected: dict[tuple[int, int], bytes] = {}
    accumulator = merkle.MerkleAccumulator()
    for leaf in leaves:
        for node in accumulator.append(leaf):
            expected[(node.level, node.position)] = node.digest
    assert _stored_nodes(services) == expected
    # The tree keeps growing with the ledger once it is complete.
    _append(services, 3)
    with services.db.read() as session:
        assert tree.stored_size(session) == entries + 3
        assert ledger.verify_stored_tree(session).ok
