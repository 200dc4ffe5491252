"""A sitting's stored verdict and its ledger trail: re-judged when footage arrives or is
rejected, when the schedule changes, and by the sweep once a sitting's grace period is over."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.background import BackgroundThread
from services.coverage.reports import CoverageReport, coverage_report
from services.coverage.spans import sittings_touching
from services.settings import Settings
from storage import ledger
from storage.db import Database
from storage.models import Sitting

logger = logging.getLogger(__name__)

# Gaps kept per camera in the stored summary: enough for the institution to see what to push;
# a camera with more also has its count and missing seconds, so nothing is understated.
SUMMARY_GAPS = 20
# Sittings judged before the summary existed, filled in per sweep pass (bounded work).
BACKFILL_BATCH = 500


def gap_summary(report: CoverageReport) -> dict[str, Any]:
    """What the list shows of a report at a glance: per required camera its position, missing
    seconds and first gaps (UTC, with cause). Health flags, findings and holds are read live."""
    return {
        "cameras": [
            {
                "camera": camera.camera,
                "position": camera.position,
                "missing_seconds": round(sum(gap.seconds for gap in camera.coverage.gaps), 3),
                "has_footage": camera.coverage.has_footage,
                "gap_count": len(camera.coverage.gaps),
                "gaps": [
                    [gap.start.isoformat(), gap.end.isoformat(), gap.cause.value]
                    for gap in camera.coverage.gaps[:SUMMARY_GAPS]
                ],
            }
            for camera in report.cameras
        ]
    }


def refresh_verdict(
    session: Session,
    sitting: Sitting,
    settings: Settings,
    *,
    actor: str,
    now: datetime | None = None,
    reason: str = "",
) -> CoverageReport:
    """Recompute and store the verdict; a change is a ledger entry."""
    report = coverage_report(session, sitting, settings, now=now)
    previous = sitting.coverage_status
    sitting.coverage_status = report.status.value
    sitting.coverage_checked_at = report.computed_at
    sitting.coverage_summary = gap_summary(report)
    if previous != report.status.value:
        ledger.append(
            session,
            actor=actor,
            action="coverage.verdict_changed",
            subject_type="sitting",
            subject_id=sitting.code,
            details={
                "from": previous,
                "to": report.status.value,
                "reason": reason,
                "gaps": [
                    {
                        "camera": camera,
                        "start": gap.start.isoformat(),
                        "end": gap.end.isoformat(),
                        "cause": gap.cause.value,
                    }
                    for camera, gap in report.gaps
                ],
            },
            recorded_at=report.computed_at,
        )
    session.flush()
    return report


def pending_due(session: Session, settings: Settings, now: datetime) -> Sequence[Sitting]:
    """Pending sittings whose verdict may have moved on by now: every one that has ended (it
    may be complete already, or its grace period may be over)."""
    ended_before = now - timedelta(seconds=settings.coverage_post_margin_seconds)
    return session.scalars(
        select(Sitting).where(Sitting.coverage_status == "pending", Sitting.ends_at <= ended_before)
    ).all()


def unsummarised(session: Session, limit: int = BACKFILL_BATCH) -> Sequence[Sitting]:
    """Sittings judged before the stored summary existed (migration 0013), oldest first."""
    return session.scalars(
        select(Sitting)
        .where(Sitting.coverage_summary.is_(None))
        .order_by(Sitting.starts_at, Sitting.id)
        .limit(limit)
    ).all()


def refresh_span(
    db: Database,
    settings: Settings,
    *,
    camera_code: str,
    start: datetime,
    end: datetime,
    actor: str,
    reason: str,
) -> list[CoverageReport]:
    """Re-judge every sitting a span of footage (stored or rejected) touches."""

    def work(session: Session) -> list[CoverageReport]:
        return [
            refresh_verdict(session, sitting, settings, actor=actor, reason=reason)
            for sitting in sittings_touching(session, camera_code, start, end, settings)
        ]

    return db.run_write(work)


def sweep_pending(db: Database, settings: Settings, *, now: datetime | None = None) -> int:
    """Give ended pending sittings their verdict; returns how many changed."""
    now = now or datetime.now(UTC)

    def work(session: Session) -> int:
        changed = 0
        for sitting in pending_due(session, settings, now):
            before = sitting.coverage_status
            report = refresh_verdict(
                session, sitting, settings, actor="sweep", now=now, reason="sweep"
            )
            changed += report.status.value != before
        for sitting in unsummarised(session):
            before = sitting.coverage_status
            report = refresh_verdict(
                session, sitting, settings, actor="sweep", now=now, reason="summary backfill"
            )
            changed += report.status.value != before
        return changed

    return db.run_write(work)


class VerdictSweeper(BackgroundThread):
    """Moves ended sittings out of `pending` (their grace period has passed, or they are
    complete) even when no footage arrives to trigger it."""

    name = "verdict-sweep"

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__()
        self.db = db
        self.settings = settings

    def run_once(self) -> float:
        changed = sweep_pending(self.db, self.settings)
        if changed:
            logger.info("verdict sweep: %d sitting(s) changed verdict", changed)
        return self.settings.verdict_sweep_seconds
