"""What an attacker with the database owner's rights does first: switch off the append-only
triggers (migrations 0006 and 0009), so rows can then be edited and deleted as a plain table's."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

GUARDED = ("ledger_entries", "ledger_checkpoints", "ledger_nodes", "tombstones")


def drop_append_only_guard(session: Session, *tables: str) -> None:
    """Inside the caller's transaction: PostgreSQL disables the tables' triggers (an owner's
    right), SQLite drops them; the rest of the test then works on unguarded tables."""
    for table in tables or GUARDED:
        assert table in GUARDED, table
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            continue
        names = session.scalars(
            text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table"),
            {"table": table},
        ).all()
        for name in names:
            session.execute(text(f'DROP TRIGGER "{name}"'))
