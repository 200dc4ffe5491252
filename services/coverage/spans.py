"""Which sittings a span of one camera's time touches: the one answer that coverage, ingest
(a new segment's expiry), the schedule import (expiries moved later) and holds (a sitting's
scope) share, so the margins are applied the same way everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.coverage.rule import Interval, required_span
from services.settings import Settings
from storage.models import Camera, Sitting


def required_interval(sitting: Sitting, settings: Settings) -> Interval:
    """The interval the sitting must be filmed over: [start - pre-margin, end + post-margin]."""
    return required_span(
        sitting.starts_at,
        sitting.ends_at,
        pre_margin=timedelta(seconds=settings.coverage_pre_margin_seconds),
        post_margin=timedelta(seconds=settings.coverage_post_margin_seconds),
    )


def sittings_touching(
    session: Session, camera_code: str, start: datetime, end: datetime, settings: Settings
) -> Sequence[Sitting]:
    """Sittings of the camera's room whose required interval the span [start, end) overlaps."""
    pre = timedelta(seconds=settings.coverage_pre_margin_seconds)
    post = timedelta(seconds=settings.coverage_post_margin_seconds)
    return session.scalars(
        select(Sitting)
        .join(Camera, Camera.room_id == Sitting.room_id)
        .where(
            Camera.code == camera_code,
            Sitting.starts_at < end + pre,
            Sitting.ends_at > start - post,
        )
        .order_by(Sitting.starts_at)
    ).all()
