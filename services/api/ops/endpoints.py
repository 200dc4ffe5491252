"""Operations: liveness and readiness (no auth for the verdict; readiness's details only for the
metrics token), and Prometheus metrics behind their own bearer token (EXAMVAULT_METRICS_TOKEN;
off without one).

`/healthz` and `/readyz` are `async` and touch no dependency: they never wait for a thread of
the pool that requests share, so they answer while the store or the database hangs.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select

from services.api.deps import ServicesDep
from services.api.errors import ApiError
from storage.db import DatabaseUnavailable
from storage.models import LedgerEntry, QuarantineRecord, Segment, Sitting

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

# How long a /readyz asked right after start waits for the first checks to finish.
_FIRST_CHECK_WAIT_SECONDS = 3.0


@router.get("/healthz", summary="The process is up (no dependency is asked)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready or not, by coarse check (database, blob_store, migrations, disk); the "
    "problems themselves only for the metrics token",
)
async def readyz(request: Request, services: ServicesDep) -> JSONResponse:
    readiness = services.readiness
    # Normally started with the app; started here too for an app run without its lifespan.
    readiness.start()
    for _ in range(int(_FIRST_CHECK_WAIT_SECONDS / 0.05)):
        if all(check.first_result.is_set() for check in readiness.checks.values()):
            break
        await asyncio.sleep(0.05)
    problems = readiness.problems()
    body: dict[str, object] = {
        "status": "unavailable" if problems else "ready",
        "checks": {
            name: "ok" if ok else "failing" for name, ok in readiness.dependency_up().items()
        },
    }
    # A load balancer needs only the verdict; the problems name hosts, buckets, paths and
    # driver errors, so only the operator's scraper (the /metrics token) reads them. A wrong
    # or missing token still gets the verdict: a probe must never fail on credentials.
    if problems and _is_scraper(request, services.settings.metrics_token):
        body["problems"] = problems
    return JSONResponse(body, status_code=503 if problems else 200)


def _is_scraper(request: Request, expected: str | None) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return (
        expected is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(presented.strip().encode(), expected.encode())
    )


def _metrics_reader(request: Request, services: ServicesDep) -> None:
    # Counts of segments, rejections and verdicts tell an outsider how the centre is doing:
    # only the scraper holding the configured token reads them, and none when none is set.
    expected = services.settings.metrics_token
    if expected is None:
        raise ApiError(
            404, "metrics_off", "metrics are off: set EXAMVAULT_METRICS_TOKEN and scrape with it"
        )
    if not _is_scraper(request, expected):
        raise ApiError(401, "unauthorized", "/metrics needs the bearer token of the scraper")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus text format (bearer EXAMVAULT_METRICS_TOKEN)",
    dependencies=[Depends(_metrics_reader)],
)
def metrics(request: Request, services: ServicesDep) -> str:
    try:
        lines = _database_lines(services)
    except DatabaseUnavailable as exc:
        # The rest still matters most now: dependency_up says which one is down.
        logger.warning("metrics without database figures: %s", exc)
        lines = []
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        lines.append("# TYPE examvault_ingest_outcomes_total counter")
        for outcome, count in sorted(worker.outcomes.items()):
            lines.append(f'examvault_ingest_outcomes_total{{outcome="{outcome}"}} {count}')
    return "\n".join(lines) + "\n" + services.metrics.render()


def _database_lines(services: ServicesDep) -> list[str]:
    with services.db.read() as session:
        segments = session.scalar(select(func.count()).select_from(Segment)) or 0
        stored_bytes = session.scalar(select(func.coalesce(func.sum(Segment.size_bytes), 0))) or 0
        quarantined = session.scalar(select(func.count()).select_from(QuarantineRecord)) or 0
        quarantine_files, quarantine_bytes = session.execute(
            select(func.count(), func.coalesce(func.sum(QuarantineRecord.kept_bytes), 0)).where(
                QuarantineRecord.kept_bytes > 0
            )
        ).one()
        verdicts = dict(
            session.execute(
                select(Sitting.coverage_status, func.count()).group_by(Sitting.coverage_status)
            ).all()
        )
        ledger_head = session.scalar(select(func.max(LedgerEntry.seq))) or 0
    lines = [
        "# TYPE examvault_segments gauge",
        f"examvault_segments {segments}",
        "# TYPE examvault_segment_bytes gauge",
        f"examvault_segment_bytes {stored_bytes}",
        "# TYPE examvault_quarantined gauge",
        f"examvault_quarantined {quarantined}",
        # Rejected files' bytes on disk against their budget (docs/ingest.md, "Quarantine").
        "# TYPE examvault_quarantine_files gauge",
        f"examvault_quarantine_files {quarantine_files}",
        "# TYPE examvault_quarantine_bytes gauge",
        f"examvault_quarantine_bytes {quarantine_bytes}",
        "# TYPE examvault_quarantine_budget_bytes gauge",
        f"examvault_quarantine_budget_bytes {services.settings.quarantine_budget_bytes}",
        # What the centre watches: sittings not proven covered, by verdict.
        "# TYPE examvault_sittings gauge",
        *(
            f'examvault_sittings{{status="{status}"}} {verdicts.get(status, 0)}'
            for status in ("pending", "complete", "incomplete", "missing")
        ),
        "# TYPE examvault_ledger_entries gauge",
        f"examvault_ledger_entries {ledger_head}",
    ]
    return lines
