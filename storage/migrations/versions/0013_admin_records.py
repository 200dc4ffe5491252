"""the centre's records pages: host reports, recorded ledger checks, ledger search indexes

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 21:00:00

- `host_reports`: the latest status a camera host's push daemon reported with its own token
  (backlog, last success, last error), one row per token, replaced at each report. Operational
  state, not evidence: nothing is ledgered.
- `ledger_checks`: every recorded ledger verification (`examvault ledger verify`, the page's
  bounded check of the newest entries), so the page shows the last result without reading a
  ledger of 10^7 entries on load.
- `ix_ledger_actor_seq`, `ix_ledger_action_seq`: the centre searches who read which footage by
  actor or action, newest first, without walking the whole ledger.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_reports",
        sa.Column("token_id", sa.Integer(), sa.ForeignKey("api_tokens.id"), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("backlog_files", sa.Integer(), nullable=False),
        sa.Column("backlog_bytes", sa.BigInteger(), nullable=False),
        sa.Column("unfinished_files", sa.Integer(), nullable=False),
        sa.Column("last_success_at", sa.String(length=64), nullable=True),
        sa.Column("last_error_at", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("disk_low", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("token_id"),
    )
    op.create_table(
        "ledger_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ledger_actor_seq", "ledger_entries", ["actor", "seq"])
    op.create_index("ix_ledger_action_seq", "ledger_entries", ["action", "seq"])


def downgrade() -> None:
    op.drop_index("ix_ledger_action_seq", table_name="ledger_entries")
    op.drop_index("ix_ledger_actor_seq", table_name="ledger_entries")
    op.drop_table("ledger_checks")
    op.drop_table("host_reports")
