"""Operations: liveness and readiness (no auth: nothing here is evidence), and Prometheus
metrics behind their own bearer token (EXAMVAULT_METRICS_TOKEN; off without one)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select, text

from services.api.deps import ServicesDep
from services.api.errors import ApiError
from storage.blobs import BlobStoreError
from storage.models import LedgerEntry, QuarantineRecord, Segment, Sitting

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up and has finished starting")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers and the blob store is reachable")
def readyz(services: ServicesDep) -> JSONResponse:
    problems: list[str] = []
    try:
        with services.db.read() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        problems.append(f"database: {exc.__class__.__name__}")
    try:
        services.store.check_ready()
    except BlobStoreError as exc:
        # Our own sentence (a missing bucket says to run `examvault storage init`), no secrets.
        problems.append(f"blob store: {exc}")
    except Exception as exc:
        problems.append(f"blob store: {exc.__class__.__name__}")
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


def _metrics_reader(request: Request, services: ServicesDep) -> None:
    # Counts of segments, rejections and verdicts tell an outsider how the centre is doing:
    # only the scraper holding the configured token reads them, and none when none is set.
    expected = services.settings.metrics_token
    if expected is None:
        raise ApiError(
            404, "metrics_off", "metrics are off: set EXAMVAULT_METRICS_TOKEN and scrape with it"
        )
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), expected.encode()
    ):
        raise ApiError(401, "unauthorized", "/metrics needs the bearer token of the scraper")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus text format (bearer EXAMVAULT_METRICS_TOKEN)",
    dependencies=[Depends(_metrics_reader)],
)
def metrics(request: Request, services: ServicesDep) -> str:
    with services.db.read() as session:
        segments = session.scalar(select(func.count()).select_from(Segment)) or 0
        stored_bytes = session.scalar(select(func.coalesce(func.sum(Segment.size_bytes), 0))) or 0
        quarantined = session.scalar(select(func.count()).select_from(QuarantineRecord)) or 0
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
        # What the centre watches: sittings not proven covered, by verdict.
        "# TYPE examvault_sittings gauge",
        *(
            f'examvault_sittings{{status="{status}"}} {verdicts.get(status, 0)}'
            for status in ("pending", "complete", "incomplete", "missing")
        ),
        "# TYPE examvault_ledger_entries gauge",
        f"examvault_ledger_entries {ledger_head}",
    ]
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        lines.append("# TYPE examvault_ingest_outcomes_total counter")
        for outcome, count in sorted(worker.outcomes.items()):
            lines.append(f'examvault_ingest_outcomes_total{{outcome="{outcome}"}} {count}')
    return "\n".join(lines) + "\n"
