"""sittings verdicts, health samples, reference images

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 18:12:51.854556
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reference_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("camera_id", sa.Integer(), nullable=True),
        sa.Column("room_id", sa.Integer(), nullable=True),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("media_type", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("set_by", sa.String(length=200), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["camera_id"],
            ["cameras.id"],
        ),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["rooms.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "health_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("camera_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mean_luma", sa.Float(), nullable=False),
        sa.Column("dark_share", sa.Float(), nullable=False),
        sa.Column("motion", sa.Float(), nullable=True),
        sa.Column("sharpness", sa.Float(), nullable=False),
        sa.Column("reference_similarity", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["camera_id"],
            ["cameras.id"],
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["segments.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "health_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("camera_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"]),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("health_flags", schema=None) as batch_op:
        batch_op.create_index(
            "ix_health_flags_camera_time", ["camera_id", "starts_at"], unique=False
        )
        batch_op.create_index("ix_health_flags_segment", ["segment_id"], unique=False)

    with op.batch_alter_table("health_samples", schema=None) as batch_op:
        batch_op.create_index("ix_health_camera_time", ["camera_id", "at"], unique=False)
        batch_op.create_index("ix_health_segment", ["segment_id"], unique=False)

    with op.batch_alter_table("cameras", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sharpness_baseline", sa.Float(), nullable=True))

    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("health_checked_at", sa.DateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("sittings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "coverage_status", sa.String(length=16), nullable=False, server_default="pending"
            )
        )
        batch_op.add_column(
            sa.Column("coverage_checked_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_sittings_status", ["coverage_status", "ends_at"], unique=False)


def downgrade() -> None:
    op.drop_table("health_flags")
    with op.batch_alter_table("sittings", schema=None) as batch_op:
        batch_op.drop_index("ix_sittings_status")
        batch_op.drop_column("coverage_checked_at")
        batch_op.drop_column("coverage_status")

    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.drop_column("health_checked_at")

    with op.batch_alter_table("cameras", schema=None) as batch_op:
        batch_op.drop_column("sharpness_baseline")

    with op.batch_alter_table("health_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_health_segment")
        batch_op.drop_index("ix_health_camera_time")

    op.drop_table("health_samples")
    op.drop_table("reference_images")
