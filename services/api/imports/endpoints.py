"""The centre's imports from the page: the registry (JSON) and the schedule (CSV), uploaded as
the request body. `dry_run=true` checks the whole file against the database and answers what
the import would do, writing nothing; without it the import runs, all or nothing. Either way a
refused file answers 422 with every problem, each with its line and field."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from services.api.deps import AdminSubject, ServicesDep
from services.api.errors import ApiError
from services.coverage.schedule import (
    ScheduleError,
    ScheduleSummary,
    check_csv,
    preview_sittings,
)
from services.exchange import Problem
from services.registry import ImportSummary, RegistryError, import_registry, preview_registry

router = APIRouter(tags=["imports"])

# A city's registry (thousands of rooms) or a month's schedule is well under this; the JSON
# line finder scans in Python, about 0.6 s per MiB.
MAX_IMPORT_BYTES = 4 * 1024 * 1024

DRY_RUN = Query(description="check and tell what would change; write nothing")


class ProblemOut(BaseModel):
    """One problem of a refused file (the 422's `problems`)."""

    line: int | None = Field(description="1-based line in the file, when known")
    field: str | None = Field(description="the column (CSV) or path (JSON) at fault")
    message: str
    message_zh: str


class ImportOut(BaseModel):
    dry_run: bool
    created: dict[str, list[str]] = Field(description="codes by kind")
    updated: dict[str, list[str]]
    unchanged: dict[str, list[str]]
    retired_cameras: list[str] = Field(default_factory=list)
    zone_assumed: list[str] = Field(
        default_factory=list, description="times without an offset, read in the local zone"
    )


async def _file_text(request: Request) -> str:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_IMPORT_BYTES:
        raise ApiError(
            413, "too_large", f"an import file is at most {MAX_IMPORT_BYTES} bytes, not {length}"
        )
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_IMPORT_BYTES:
            raise ApiError(413, "too_large", f"an import file is at most {MAX_IMPORT_BYTES} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise _refused(
            "invalid_file",
            [
                Problem(
                    f"line {line}: not UTF-8 text (byte {exc.start})",
                    line=line,
                    detail=f"not UTF-8 text (byte {exc.start})",
                )
            ],
        ) from exc


def _refused(code: str, problems: list[Problem]) -> ApiError:
    first = problems[0].text if problems else "refused"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ApiError(
        422,
        code,
        f"{first}{more}; nothing was imported",
        problems=[problem.as_json() for problem in problems],
    )


def _registry_out(summary: ImportSummary, dry_run: bool) -> ImportOut:
    return ImportOut(
        dry_run=dry_run,
        created=summary.created,
        updated=summary.updated,
        unchanged=summary.unchanged,
        retired_cameras=summary.retired_cameras,
    )


def _schedule_out(summary: ScheduleSummary, dry_run: bool) -> ImportOut:
    return ImportOut(
        dry_run=dry_run,
        created={"sitting": summary.created},
        updated={"sitting": summary.updated},
        unchanged={"sitting": summary.unchanged},
        zone_assumed=summary.zone_assumed,
    )


@router.post(
    "/api/v1/imports/registry",
    response_model=ImportOut,
    summary="Import the registry JSON (body); dry_run=true previews without writing",
    responses={413: {"description": "over the size limit"}, 422: {"description": "problems"}},
)
async def post_registry(
    request: Request,
    services: ServicesDep,
    subject: AdminSubject,
    dry_run: Annotated[bool, DRY_RUN] = False,
) -> ImportOut:
    text = await _file_text(request)

    def work() -> ImportOut:
        if dry_run:
            with services.db.read() as session:
                return _registry_out(preview_registry(session, text), True)
        return services.db.run_write(
            lambda session: _registry_out(
                import_registry(session, text, actor=subject.actor), False
            )
        )

    try:
        return await run_in_threadpool(work)
    except RegistryError as exc:
        raise _refused("invalid_registry", exc.problems) from exc


@router.post(
    "/api/v1/imports/schedule",
    response_model=ImportOut,
    summary="Import the schedule CSV (body); dry_run=true previews without writing",
    responses={413: {"description": "over the size limit"}, 422: {"description": "problems"}},
)
async def post_schedule(
    request: Request,
    services: ServicesDep,
    subject: AdminSubject,
    dry_run: Annotated[bool, DRY_RUN] = False,
) -> ImportOut:
    text = await _file_text(request)

    def work() -> ImportOut:
        notes: list[str] = []
        with services.db.read() as session:
            rows = check_csv(session, text, services.settings.zone, notes)
            if dry_run:
                return _schedule_out(preview_sittings(session, rows, zone_assumed=notes), True)

        def write(session: Session) -> ImportOut:
            summary = services.import_schedule(
                session, rows, actor=subject.actor, zone_assumed=notes
            )
            return _schedule_out(summary, False)

        return services.db.run_write(write)

    try:
        return await run_in_threadpool(work)
    except ScheduleError as exc:
        raise _refused("invalid_schedule", exc.problems) from exc
