"""the ledger's Merkle tree is stored: one row per complete node, append-only

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 17:00:00

Checkpoints and proofs then read O(log n) stored hashes instead of every leaf. The table is
created here, empty, with the same append-only triggers as the ledger (migration 0006); the
nodes of an existing ledger are built right after the migrations by
`storage.tree.build_stored_tree` (run by `Database.upgrade`, so by `examvault db upgrade` and
every command that migrates), in committed batches, so a killed build resumes where it stopped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TABLE = "ledger_nodes"


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "position"),
        sqlite_with_rowid=False,
    )
    if op.get_bind().dialect.name == "postgresql":
        # examvault_refuse_change() is migration 0006's.
        op.execute(
            f"CREATE TRIGGER {_TABLE}_append_only BEFORE UPDATE OR DELETE ON {_TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION examvault_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {_TABLE}_no_truncate BEFORE TRUNCATE ON {_TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION examvault_refuse_change()"
        )
        return
    for operation in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {_TABLE}_no_{operation.lower()} BEFORE {operation} ON {_TABLE} "
            f"BEGIN SELECT RAISE(ABORT, 'examvault: {operation} on {_TABLE} refused: "
            "the table is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER {_TABLE}_append_only ON {_TABLE}")
        op.execute(f"DROP TRIGGER {_TABLE}_no_truncate ON {_TABLE}")
    else:
        op.execute(f"DROP TRIGGER {_TABLE}_no_update")
        op.execute(f"DROP TRIGGER {_TABLE}_no_delete")
    op.drop_table(_TABLE)
