"""the day view: each sitting's stored gap summary, room names, indexes for the list's filters

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 20:45:00

- `sittings.coverage_summary` (JSON, nullable): per required camera, its position, missing
  seconds and its first gaps, written with the stored verdict (services/coverage/verdicts.py) so
  the list shows "missing minutes per camera" without judging a page of sittings per request.
  NULL for sittings judged before this revision; the verdict sweep fills them in, in batches.
- `rooms.name` (nullable): the registry may name a room ("101 理论考场"); the list shows it
  beside the code.
- Indexes: `sittings(starts_at, id)` for the day and range filters and the time sort;
  `sittings(room_id, coverage_status)` so the counts per verdict read an index alone;
  `institutions(district)` for the district filter and scope.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sittings") as batch:
        batch.add_column(sa.Column("coverage_summary", sa.JSON(), nullable=True))
    with op.batch_alter_table("rooms") as batch:
        batch.add_column(sa.Column("name", sa.String(length=200), nullable=True))
    op.create_index("ix_sittings_starts", "sittings", ["starts_at", "id"])
    op.create_index("ix_sittings_room_status", "sittings", ["room_id", "coverage_status"])
    op.create_index("ix_institutions_district", "institutions", ["district"])


def downgrade() -> None:
    op.drop_index("ix_institutions_district", table_name="institutions")
    op.drop_index("ix_sittings_room_status", table_name="sittings")
    op.drop_index("ix_sittings_starts", table_name="sittings")
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("name")
    with op.batch_alter_table("sittings") as batch:
        batch.drop_column("coverage_summary")
