"""runs and streams that say how they ended; health checks retried after a store outage

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 17:20:00

- `purge_runs` gets a status (running, completed, stopped, interrupted), why it stopped, the
  process that ran it and a heartbeat, so a run killed mid-way is found and closed by the next
  one instead of staying open for ever; and the bytes it deleted.
- `export_streams`: one row per export being streamed (which process, bytes handed to the
  server so far), so an export whose process died is found and ledgered as interrupted.
- `segments` get the health check's attempts, when to try again and the last error: a check
  that could not read the footage (store outage) is retried with backoff, across restarts.
Existing unfinished purge runs become `running` and are closed by the next run.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("purge_runs") as batch:
        batch.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="completed")
        )
        batch.add_column(sa.Column("stop_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("purged_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.execute("UPDATE purge_runs SET status = 'running' WHERE finished_at IS NULL")

    op.create_table(
        "export_streams",
        sa.Column("export_id", sa.String(length=36), nullable=False),
        sa.Column("sitting_code", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bytes_sent", sa.BigInteger(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("export_id"),
    )
    op.create_index("ix_export_streams_open", "export_streams", ["ended_at"], unique=False)

    with op.batch_alter_table("segments") as batch:
        batch.add_column(
            sa.Column("health_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("health_retry_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("health_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("health_error")
        batch.drop_column("health_retry_at")
        batch.drop_column("health_attempts")
    op.drop_index("ix_export_streams_open", table_name="export_streams")
    op.drop_table("export_streams")
    with op.batch_alter_table("purge_runs") as batch:
        batch.drop_column("purged_bytes")
        batch.drop_column("heartbeat_at")
        batch.drop_column("owner")
        batch.drop_column("stop_reason")
        batch.drop_column("status")
