"""quarantine within bounds: how many of a rejected file's bytes are kept, and when they went

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 17:30:00

Rejected files were kept byte for byte forever. The record stays; the bytes are now kept
within a budget and a retention (docs/ingest.md, "Quarantine"). Every existing record kept its
whole file, so `kept_bytes` starts as its size.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kept_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("bytes_removed_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("bytes_removed_reason", sa.String(length=32), nullable=True))
        batch_op.create_index(
            "ix_quarantine_kept_received", ["kept_bytes", "received_at"], unique=False
        )
    op.execute("UPDATE quarantine_records SET kept_bytes = size_bytes")


def downgrade() -> None:
    with op.batch_alter_table("quarantine_records", schema=None) as batch_op:
        batch_op.drop_index("ix_quarantine_kept_received")
        batch_op.drop_column("bytes_removed_reason")
        batch_op.drop_column("bytes_removed_at")
        batch_op.drop_column("kept_bytes")
