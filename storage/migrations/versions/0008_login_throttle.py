"""login throttle in the database: failed log-ins counted across processes and restarts

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00

The throttle was a dict in each API process, so a second process or a restart forgave a
guesser. One row per user name under attack; nothing to backfill.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_login_attempts_last", "login_attempts", ["last_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_login_attempts_last", table_name="login_attempts")
    op.drop_table("login_attempts")
