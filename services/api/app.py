"""The ASGI application: routers, error handlers, and the ingest worker's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.api.errors import install_error_handlers
from services.api.ingest.endpoints import router as ingest_router
from services.api.ops.endpoints import router as ops_router
from services.context import Services
from services.ingest.jobs import IngestWorker


def create_app(services: Services, *, worker: IngestWorker | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    app = FastAPI(
        title="examvault",
        summary="考场录像证据服务 · exam-room video evidence",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.worker = worker
    install_error_handlers(app)
    app.include_router(ops_router)
    app.include_router(ingest_router)
    return app
