"""the ledger is append-only in the database; the latest checkpoints are recorded in it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:00:00

Triggers refuse UPDATE and DELETE on `ledger_entries` and `ledger_checkpoints`, and on
`tombstones` everything but the purge's one legitimate change: `blob_deleted_at` from NULL to a
value, every other column unchanged. PostgreSQL also refuses TRUNCATE of the three tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_APPEND_ONLY = ("ledger_entries", "ledger_checkpoints")
# Every tombstones column except blob_deleted_at; SQLite's trigger must name them one by one.
_TOMBSTONE_FIXED = (
    "id",
    "segment_id",
    "run_id",
    "sha256",
    "size_bytes",
    "blob_key",
    "starts_at",
    "ends_at",
    "expires_at",
    "purged_at",
    "reason",
)


def upgrade() -> None:
    op.create_table(
        "ledger_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def _postgresql_triggers() -> None:
    op.execute(
        """
        CREATE FUNCTION examvault_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'examvault: % on % refused: the table is append-only',
                TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION examvault_tombstone_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND OLD.blob_deleted_at IS NULL
                    AND NEW.blob_deleted_at IS NOT NULL
                    AND to_jsonb(NEW) - 'blob_deleted_at' = to_jsonb(OLD) - 'blob_deleted_at' THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'examvault: % on % refused: only blob_deleted_at may be set, once',
                TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
        END
        $$
        """
    )
    for table in _APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION examvault_refuse_change()"
        )
    op.execute(
        "CREATE TRIGGER tombstones_append_only BEFORE UPDATE OR DELETE ON tombstones "
        "FOR EACH ROW EXECUTE FUNCTION examvault_tombstone_change()"
    )
    for table in (*_APPEND_ONLY, "tombstones"):
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION examvault_refuse_change()"
        )


def _sqlite_triggers() -> None:
    for table in _APPEND_ONLY:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'examvault: {operation} on {table} refused: "
                "the table is append-only'); END"
            )
    unchanged = " AND ".join(f"NEW.{column} IS OLD.{column}" for column in _TOMBSTONE_FIXED)
    op.execute(
        "CREATE TRIGGER tombstones_no_update BEFORE UPDATE ON tombstones "
        f"WHEN NOT (OLD.blob_deleted_at IS NULL AND NEW.blob_deleted_at IS NOT NULL "
        f"AND {unchanged}) "
        "BEGIN SELECT RAISE(ABORT, 'examvault: UPDATE on tombstones refused: only "
        "blob_deleted_at may be set, once'); END"
    )
    op.execute(
        "CREATE TRIGGER tombstones_no_delete BEFORE DELETE ON tombstones "
        "BEGIN SELECT RAISE(ABORT, 'examvault: DELETE on tombstones refused: "
        "the table is append-only'); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in (*_APPEND_ONLY, "tombstones"):
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION examvault_tombstone_change()")
        op.execute("DROP FUNCTION examvault_refuse_change()")
    else:
        for table in (*_APPEND_ONLY, "tombstones"):
            op.execute(f"DROP TRIGGER {table}_no_update")
            op.execute(f"DROP TRIGGER {table}_no_delete")
    op.drop_table("ledger_checkpoints")
