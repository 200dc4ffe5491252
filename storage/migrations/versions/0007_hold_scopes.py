"""hold scopes: what each hold covers, frozen when it is placed

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 20:00:00

Until now a sitting hold's scope was re-derived at every purge from the sitting's current room
and times, so moving the sitting moved the hold. Existing holds get their scope frozen from the
current data: a segment hold its segment, a camera hold its camera over [from, until), a sitting
hold every camera of its room over its required interval. The margins of that interval are the
service's own settings (EXAMVAULT_COVERAGE_PRE/POST_MARGIN_SECONDS, from the environment or the
`.env` file, as services/settings.py reads them), so the frozen scope is what the purge used.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op
from dotenv import dotenv_values

from storage.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _margin(name: str) -> timedelta:
    # Environment over `.env`, names case-insensitive: the precedence pydantic-settings applies.
    values = {key.lower(): value for key, value in dotenv_values(".env").items()}
    values.update({key.lower(): value for key, value in os.environ.items()})
    return timedelta(seconds=float(values.get(f"examvault_{name}") or 0))


def upgrade() -> None:
    op.create_table(
        "hold_scopes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hold_id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=True),
        sa.Column("camera_id", sa.Integer(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"]),
        sa.ForeignKeyConstraint(["hold_id"], ["holds.id"]),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hold_scopes", schema=None) as batch_op:
        batch_op.create_index("ix_hold_scopes_hold", ["hold_id"], unique=False)
    _backfill()


def _backfill() -> None:
    bind = op.get_bind()
    holds = sa.table(
        "holds",
        sa.column("id", sa.Integer),
        sa.column("scope", sa.String),
        sa.column("sitting_id", sa.Integer),
        sa.column("camera_id", sa.Integer),
        sa.column("segment_id", sa.Integer),
        sa.column("held_from", UTCDateTime),
        sa.column("held_until", UTCDateTime),
    )
    sittings = sa.table(
        "sittings",
        sa.column("id", sa.Integer),
        sa.column("room_id", sa.Integer),
        sa.column("starts_at", UTCDateTime),
        sa.column("ends_at", UTCDateTime),
    )
    cameras = sa.table("cameras", sa.column("id", sa.Integer), sa.column("room_id", sa.Integer))
    scopes = sa.table(
        "hold_scopes",
        sa.column("hold_id", sa.Integer),
        sa.column("segment_id", sa.Integer),
        sa.column("camera_id", sa.Integer),
        sa.column("starts_at", UTCDateTime),
        sa.column("ends_at", UTCDateTime),
        sa.column("cause", sa.String),
        sa.column("added_at", UTCDateTime),
    )
    pre, post = _margin("coverage_pre_margin_seconds"), _margin("coverage_post_margin_seconds")
    now = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    for hold in bind.execute(sa.select(holds).order_by(holds.c.id)):
        base = {"hold_id": hold.id, "cause": "backfilled", "added_at": now}
        if hold.scope == "segment":
            rows.append({**base, "segment_id": hold.segment_id})
        elif hold.scope == "camera":
            rows.append(
                {
                    **base,
                    "camera_id": hold.camera_id,
                    "starts_at": hold.held_from,
                    "ends_at": hold.held_until,
                }
            )
        else:
            sitting = bind.execute(
                sa.select(sittings).where(sittings.c.id == hold.sitting_id)
            ).one()
            for (camera_id,) in bind.execute(
                sa.select(cameras.c.id)
                .where(cameras.c.room_id == sitting.room_id)
                .order_by(cameras.c.id)
            ):
                rows.append(
                    {
                        **base,
                        "camera_id": camera_id,
                        "starts_at": sitting.starts_at - pre,
                        "ends_at": sitting.ends_at + post,
                    }
                )
    if rows:
        # Every row names all columns, so one executemany fits them all.
        columns = ("segment_id", "camera_id", "starts_at", "ends_at")
        bind.execute(sa.insert(scopes), [{**dict.fromkeys(columns), **row} for row in rows])


def downgrade() -> None:
    with op.batch_alter_table("hold_scopes", schema=None) as batch_op:
        batch_op.drop_index("ix_hold_scopes_hold")
    op.drop_table("hold_scopes")
