"""Sittings (场次): the list with verdicts, one sitting, its coverage report, and the admin's
bulk upsert of the schedule for the exam-affairs system."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import ColumnElement, Row, select
from sqlalchemy.orm import Session

from services.access.scopes import Subject, sitting_scope, visible_sitting
from services.api.deps import AdminSubject, ServicesDep, SittingReader, instant_param
from services.api.errors import ApiError
from services.api.sittings.schemas import (
    CameraMissing,
    CoverageOut,
    DaySitting,
    GapBrief,
    PictureProblem,
    ScheduleIn,
    ScheduleOut,
    SittingChoices,
    SittingList,
    SittingSummary,
)
from services.api.sittings.service import (
    DayFilter,
    Glance,
    choices,
    glances,
    iter_rows,
    missing_of,
    page_rows,
    verdict_counts,
)
from services.coverage.reports import CoverageReport
from services.coverage.rule import Verdict
from services.coverage.schedule import ScheduleError, parse_json
from services.coverage.verdicts import refresh_verdict
from services.settings import Settings
from services.timefmt import rfc3339, rfc3339_or_none
from storage.models import Institution, Room, Site, Sitting

router = APIRouter(tags=["sittings"])


def _find(session: Session, code: str, subject: Subject) -> Sitting:
    """The sitting if the caller may see it; otherwise 404, as for one that does not exist,
    so that a supervisor cannot learn which other sittings there are."""
    sitting = visible_sitting(session, code, subject, datetime.now(UTC))
    if sitting is None:
        raise ApiError(404, "not_found", f"no sitting {code!r}")
    return sitting


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A page of the list; the CSV of what is shown has a bound of its own (a month of a city).
MAX_PAGE = 1000
CSV_MAX_ROWS = 20_000
_ROOM_KINDS = ("theory", "practical")


def _day(value: str, name: str) -> date:
    try:
        day = date.fromisoformat(value)
        if not date(1970, 1, 2) <= day <= date(9000, 1, 1):
            raise ValueError(value)
        return day
    except ValueError as exc:
        raise ApiError(
            400, "invalid_request", f"{name}: {value!r} is not a YYYY-MM-DD date in 1970..9000"
        ) from exc


def _local_midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _day_filter(
    zone: tzinfo,
    *,
    date_: str | None,
    from_: str | None,
    to: str | None,
    **exact: str | None,
) -> DayFilter:
    """`date=` one local day; `from`/`to` as local dates (inclusive days) or, as before the
    day view, RFC 3339 instants (sittings overlapping the window). None at all: every date."""
    if date_ is not None and (from_ is not None or to is not None):
        raise ApiError(400, "invalid_request", "give either date or from/to, not both")
    if date_ is not None:
        if not _DAY.match(date_):
            raise ApiError(400, "invalid_request", f"date: {date_!r} is not a YYYY-MM-DD date")
        day = _day(date_, "date")
        return DayFilter(
            starts_from=_local_midnight(day, zone),
            starts_before=_local_midnight(day + timedelta(days=1), zone),
            **exact,
        )
    by_day = [value is not None and bool(_DAY.match(value)) for value in (from_, to)]
    if any(by_day):
        if not all(by_day[i] or value is None for i, value in enumerate((from_, to))):
            raise ApiError(400, "invalid_request", "from and to: both dates or both instants")
        first = _day(from_, "from") if from_ else None
        last = _day(to, "to") if to else None
        if first and last and last < first:
            raise ApiError(400, "invalid_request", "to is before from")
        return DayFilter(
            starts_from=_local_midnight(first, zone) if first else None,
            starts_before=_local_midnight(last + timedelta(days=1), zone) if last else None,
            **exact,
        )
    return DayFilter(
        overlap_from=instant_param(from_, "from"), overlap_to=instant_param(to, "to"), **exact
    )


def _wants_csv(request: Request, format_: str | None) -> bool:
    if format_ is not None:
        return format_ == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _row_out(
    row: Row[Any], glance: Glance, settings: Settings, now: datetime, *, findings_visible: bool
) -> DaySitting:
    zone = settings.zone
    sitting: Sitting = row.Sitting
    cameras, deadline, ended = missing_of(sitting, settings, now)
    return DaySitting(
        code=sitting.code,
        room=row.room_code,
        institution=row.institution_code,
        kind=sitting.kind,
        occupation=sitting.occupation,
        level=sitting.level,
        starts_at=rfc3339(sitting.starts_at, zone),
        ends_at=rfc3339(sitting.ends_at, zone),
        status=sitting.coverage_status,
        checked_at=rfc3339_or_none(sitting.coverage_checked_at, zone),
        institution_name=row.institution_name,
        district=row.district,
        site=row.site_code,
        site_address=row.site_address,
        room_name=row.room_name,
        room_kind=row.room_kind,
        ended=ended,
        upload_deadline=rfc3339(deadline, zone),
        summarised=sitting.coverage_summary is not None,
        missing=[
            CameraMissing(
                camera=camera["camera"],
                position=camera["position"],
                missing_seconds=camera["missing_seconds"],
                has_footage=camera["has_footage"],
                gap_count=camera["gap_count"],
                gaps=[
                    GapBrief(
                        start=rfc3339(datetime.fromisoformat(start), zone),
                        end=rfc3339(datetime.fromisoformat(end), zone),
                        cause=cause,
                    )
                    for start, end, cause in camera["gaps"]
                ],
            )
            for camera in cameras
        ],
        picture_problems=[PictureProblem(**problem) for problem in glance.health],
        open_findings=glance.open_findings if findings_visible else None,
        active_holds=glance.active_holds,
    )


def _rows_out(
    session: Session, rows: Sequence[Row[Any]], settings: Settings, now: datetime, subject: Subject
) -> list[DaySitting]:
    found = glances(session, [row.Sitting for row in rows], settings)
    # Institutions are the ones supervised: they see verdicts and gaps, never whether a
    # supervisor recorded findings on them (their findings routes answer 403 too).
    visible = subject.role != "institution"
    return [
        _row_out(row, found[row.Sitting.id], settings, now, findings_visible=visible)
        for row in rows
    ]


_CSV_HEADER = (
    "场次编号 sitting",
    "区县 district",
    "机构编号 institution",
    "机构名称 institution name",
    "场所 site",
    "考场 room",
    "考场名称 room name",
    "考场类型 room kind",
    "职业 occupation",
    "等级 level",
    "开始 starts",
    "结束 ends",
    "结论 verdict",
    "缺录分钟 missing minutes",
    "画面异常 picture problems",
    "督导记录 open findings",
    "保全 active holds",
    "补传截止 upload deadline",
)


def _csv_line(sitting: DaySitting) -> list[str]:
    missing = "; ".join(
        f"{camera.position} {camera.camera} {camera.missing_seconds / 60:.1f}"
        for camera in sitting.missing
        if camera.missing_seconds > 0
    )
    problems = "; ".join(
        f"{problem.position} {problem.kind} {problem.seconds}s"
        for problem in sitting.picture_problems
    )
    return [
        sitting.code,
        sitting.district,
        sitting.institution,
        sitting.institution_name,
        sitting.site,
        sitting.room,
        sitting.room_name or "",
        sitting.room_kind,
        sitting.occupation,
        sitting.level,
        sitting.starts_at,
        sitting.ends_at,
        sitting.status,
        missing if sitting.ended else "",
        problems,
        "" if sitting.open_findings is None else str(sitting.open_findings),
        str(sitting.active_holds),
        sitting.upload_deadline,
    ]


def _csv_safe(cell: str) -> str:
    # A cell that Excel would read as a formula (=, +, -, @, or a tab or CR before one, as
    # OWASP lists) is quoted as text.
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def _csv_stream(
    services: ServicesDep,
    day: DayFilter,
    scope: ColumnElement[bool],
    sort: str,
    total: int,
    subject: Subject,
) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    # The BOM lets Excel open the UTF-8 file with its Chinese intact.
    buffer.write("\ufeff")
    writer.writerow(_CSV_HEADER)
    now = datetime.now(UTC)
    with services.db.read() as session:
        for rows in iter_rows(session, day, scope, sort=sort, limit=total):
            for sitting in _rows_out(session, rows, services.settings, now, subject):
                writer.writerow([_csv_safe(cell) for cell in _csv_line(sitting)])
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


@router.get(
    "/api/v1/sittings",
    response_model=SittingList,
    summary="Sittings with verdicts: a day or dates, filters, sort, pages, counts; CSV too",
    responses={200: {"content": {"text/csv": {}}}},
)
def list_sittings(
    request: Request,
    services: ServicesDep,
    subject: SittingReader,
    date_: Annotated[
        str | None, Query(alias="date", description="one day (YYYY-MM-DD), local zone")
    ] = None,
    from_: Annotated[
        str | None, Query(alias="from", description="YYYY-MM-DD (first day) or RFC 3339")
    ] = None,
    to: Annotated[str | None, Query(description="YYYY-MM-DD (last day) or RFC 3339")] = None,
    status: Annotated[Verdict | None, Query(description="the verdict")] = None,
    district: Annotated[str | None, Query(max_length=100)] = None,
    institution: Annotated[str | None, Query(description="institution code", max_length=64)] = None,
    site: Annotated[str | None, Query(description="site code", max_length=64)] = None,
    room_kind: Annotated[Literal["theory", "practical"] | None, Query()] = None,
    occupation: Annotated[str | None, Query(max_length=100)] = None,
    sort: Annotated[
        Literal["time", "-time", "institution", "verdict"], Query(description="-time: newest first")
    ] = "-time",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    format_: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
) -> Any:
    zone = services.settings.zone
    day = _day_filter(
        zone,
        date_=date_,
        from_=from_,
        to=to,
        district=district,
        institution=institution,
        site=site,
        room_kind=room_kind,
        occupation=occupation,
        status=status.value if status is not None else None,
    )
    now = datetime.now(UTC)
    # The caller's scope is ANDed with every filter: a district officer naming another district
    # (a forged link) gets an empty list, never that district's sittings.
    scope = sitting_scope(subject, now)
    with services.db.read() as session:
        counts = verdict_counts(session, day, scope)
        total = counts.get(day.status, 0) if day.status else sum(counts.values())
        if _wants_csv(request, format_):
            if total > CSV_MAX_ROWS:
                raise ApiError(
                    422,
                    "csv_too_large",
                    f"{total} sittings match; a CSV holds at most {CSV_MAX_ROWS}: narrow the dates",
                    message_zh=(
                        f"符合条件的场次有 {total} 个，CSV 最多 {CSV_MAX_ROWS} 个：请缩小日期范围。"
                    ),
                )
            return StreamingResponse(
                _csv_stream(services, day, scope, sort, total, subject),
                media_type="text/csv; charset=utf-8",
                headers={
                    "Content-Disposition": 'attachment; filename="sittings.csv"',
                    "X-Total-Count": str(total),
                },
            )
        rows = page_rows(session, day, scope, sort=sort, limit=limit, offset=offset)
        sittings = _rows_out(session, rows, services.settings, now, subject)
    starts = day.starts_from or day.overlap_from
    ends = day.starts_before or day.overlap_to
    return SittingList(
        sittings=sittings,
        total=total,
        offset=offset,
        limit=limit,
        counts=counts,
        window_start=rfc3339_or_none(starts, zone),
        window_end=rfc3339_or_none(ends, zone),
        now=rfc3339(now, zone),
    )


@router.get(
    "/api/v1/sitting-choices",
    response_model=SittingChoices,
    summary="What the day view's filters may choose from, among the caller's sittings",
)
def sitting_choices(
    services: ServicesDep,
    subject: SittingReader,
    date_: Annotated[str | None, Query(alias="date")] = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: Annotated[str | None, Query()] = None,
) -> SittingChoices:
    day = _day_filter(services.settings.zone, date_=date_, from_=from_, to=to)
    with services.db.read() as session:
        return SittingChoices.model_validate(
            choices(session, day, sitting_scope(subject, datetime.now(UTC)))
        )


def _judged(services: ServicesDep, code: str, subject: Subject) -> CoverageReport:
    def work(session: Session) -> CoverageReport:
        return refresh_verdict(
            session,
            _find(session, code, subject),
            services.settings,
            actor="coverage",
            reason="report requested",
        )

    return services.db.run_write(work)


@router.get("/api/v1/sittings/{code}", response_model=SittingSummary, summary="One sitting")
def get_sitting(code: str, services: ServicesDep, subject: SittingReader) -> SittingSummary:
    report = _judged(services, code, subject)
    zone = services.settings.zone
    with services.db.read() as session:
        sitting = _find(session, code, subject)
        names = session.execute(
            select(Institution.name, Institution.district, Site.address)
            .join(Site, Site.institution_id == Institution.id)
            .join(Room, Room.site_id == Site.id)
            .where(Room.id == sitting.room_id)
        ).one()
        return SittingSummary(
            code=sitting.code,
            room=report.room,
            institution=report.institution,
            kind=sitting.kind,
            occupation=sitting.occupation,
            level=sitting.level,
            starts_at=rfc3339(sitting.starts_at, zone),
            ends_at=rfc3339(sitting.ends_at, zone),
            status=report.status.value,
            checked_at=rfc3339(report.computed_at, zone),
            institution_name=names.name,
            district=names.district,
            site_address=names.address,
        )


@router.get(
    "/api/v1/sittings/{code}/coverage",
    response_model=CoverageOut,
    summary="Coverage report: per camera covered seconds, gaps with causes, health flags",
)
def get_coverage(code: str, services: ServicesDep, subject: SittingReader) -> CoverageOut:
    report = _judged(services, code, subject)
    return CoverageOut.model_validate(report.as_json(services.settings.zone))


@router.put(
    "/api/v1/sittings",
    response_model=ScheduleOut,
    summary="Bulk upsert of the schedule (the exam-affairs system's push)",
)
def put_schedule(body: ScheduleIn, services: ServicesDep, subject: AdminSubject) -> ScheduleOut:
    notes: list[str] = []
    try:
        rows = parse_json(body.model_dump(), services.settings.zone, notes)

        def work(session: Session) -> ScheduleOut:
            summary = services.import_schedule(
                session,
                rows,
                actor=subject.actor,
                zone_assumed=notes,
            )
            return ScheduleOut(
                created=summary.created,
                updated=summary.updated,
                unchanged=summary.unchanged,
                zone_assumed=summary.zone_assumed,
            )

        return services.db.run_write(work)
    except ScheduleError as exc:
        raise ApiError(422, "invalid_schedule", f"{exc}; nothing was imported") from exc
