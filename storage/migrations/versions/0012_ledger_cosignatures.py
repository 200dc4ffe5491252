"""witnesses' cosignatures of ledger checkpoints

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 18:30:00

- `ledger_cosignatures`: one row per checkpoint and witness that cosigned it (the witness's
  key_id, its timestamp and Ed25519 signature), so exports carry them and the centre knows
  which checkpoints are still waiting for a witness. Nothing to backfill: older checkpoints
  were never cosigned.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_cosignatures",
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=False),
        sa.Column("witness_key_id", sa.String(length=16), nullable=False),
        sa.Column("checkpoint_root", sa.String(length=64), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("checkpoint_size", "witness_key_id"),
    )


def downgrade() -> None:
    op.drop_table("ledger_cosignatures")
