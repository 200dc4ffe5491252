"""The ASGI application: routers, error handlers, and the ingest worker's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from services.access.people import LoginThrottle
from services.api.cameras.endpoints import router as cameras_router
from services.api.deps import refuse_nul_characters
from services.api.errors import ErrorBody, install_error_handlers
from services.api.exports.endpoints import router as exports_router
from services.api.findings.endpoints import router as findings_router
from services.api.footage.endpoints import router as footage_router
from services.api.footage.links import router as links_router
from services.api.holds.endpoints import router as holds_router
from services.api.imports.endpoints import router as imports_router
from services.api.ingest.endpoints import router as ingest_router
from services.api.ledger.endpoints import router as ledger_router
from services.api.machines.endpoints import router as machines_router
from services.api.ops.endpoints import router as ops_router
from services.api.ops.ingest_answers import IngestAnswers
from services.api.pacing import BodyPacing
from services.api.people.endpoints import router as people_router
from services.api.retention.endpoints import router as retention_router
from services.api.sittings.endpoints import router as sittings_router
from services.api.web.endpoints import router as web_router
from services.background import BackgroundJob
from services.context import Services
from services.ingest.worker import IngestWorker

if TYPE_CHECKING:
    from services.jobs import JobQueue

_ERROR_RESPONSES = {
    400: "invalid request: the message names the parameter",
    401: "no valid bearer token",
    403: "the caller's role may not do this to a resource it may know of",
    404: "unknown, or outside the caller's scope (indistinguishable on purpose)",
    422: "well-formed but refused by a rule; the code says which",
}


def create_app(
    services: Services,
    *,
    worker: IngestWorker | None = None,
    jobs: Sequence[BackgroundJob] = (),
    job_queue: JobQueue | None = None,
) -> FastAPI:
    """The app; `worker` and `jobs` run for the app's lifetime (started and stopped with it),
    and so do the readiness checks. With `job_queue` (PostgreSQL), uploads are ingested by
    the queue's workers, not in this process."""
    background: list[BackgroundJob] = [services.readiness, *([worker] if worker else []), *jobs]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if job_queue is not None:
                await stack.enter_async_context(job_queue.app.open_async())
            for job in background:
                job.start()
            try:
                yield
            finally:
                for job in reversed(background):
                    job.stop()

    app = FastAPI(
        title="examvault",
        summary="考场录像证据服务 · exam-room video evidence",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul_characters)],
        # FastAPI's pages load their scripts from a CDN with no integrity check: /docs is
        # served from a package below instead, and ReDoc not at all.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.worker = worker
    app.state.job_queue = job_queue
    app.state.login_throttle = LoginThrottle()
    install_error_handlers(app)
    app.add_middleware(IngestAnswers, metrics=services.metrics)
    app.include_router(ops_router)
    # Every API route may answer these, always in the one error shape (errors.py).
    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody, "description": description}
        for status, description in _ERROR_RESPONSES.items()
    }
    app.include_router(ingest_router, responses=errors)
    app.include_router(sittings_router, responses=errors)
    app.include_router(cameras_router, responses=errors)
    app.include_router(holds_router, responses=errors)
    app.include_router(imports_router, responses=errors)
    app.include_router(ledger_router, responses=errors)
    app.include_router(people_router, responses=errors)
    app.include_router(footage_router, responses=errors)
    app.include_router(links_router, responses=errors)
    app.include_router(findings_router, responses=errors)
    app.include_router(exports_router, responses=errors)
    app.include_router(retention_router, responses=errors)
    app.include_router(machines_router, responses=errors)
    app.include_router(web_router)
    settings = services.settings
    if settings.api_docs:
        _serve_api_docs(app)
    # A stalled or trickled body is cut with 408, an oversized one refused with 413 (pacing.py;
    # the head is bounded in server.py).
    app.add_middleware(
        BodyPacing,
        window=settings.http_body_timeout_seconds,
        min_rate=settings.http_body_min_bytes_per_second,
        max_bytes=settings.http_max_body_bytes,
    )
    return app


def _serve_api_docs(app: FastAPI) -> None:
    """Swagger UI at /docs, every asset from the swagger-ui-bundle-v2 package."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="examvault API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )
