"""Camera hosts (machines) for the centre's page, and the push daemon's status report.

Tokens are made and revoked through /api/v1/tokens (people/endpoints.py: shown once, stored as
a hash); this adds the overview the page needs (each host's cameras, last upload and reported
backlog) and the one route a camera host may call besides pushing: its own status report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field, field_validator

from services.access.hosts import MAX_ERROR_TEXT, DaemonReport, cameras, host_views, record_report
from services.access.scopes import Subject
from services.api.deps import AdminSubject, CurrentSubject, ServicesDep
from services.api.errors import ApiError
from services.timefmt import rfc3339, rfc3339_or_none

router = APIRouter(tags=["machines"])


class CameraOut(BaseModel):
    code: str
    position: str
    room: str
    institution: str
    retired_at: str | None
    hosts: list[int] = Field(description="ids of the live camera-host tokens allowed for it")


class UploadOut(BaseModel):
    camera: str
    segment: int
    received_at: str
    start: str
    size: int


class ReportOut(BaseModel):
    reported_at: str = Field(description="when the server received it")
    backlog_files: int
    backlog_bytes: int
    unfinished_files: int
    last_success_at: str | None = Field(description="as the host's clock wrote it")
    last_error_at: str | None
    last_error: str | None
    disk_low: bool


class HostOut(BaseModel):
    id: int
    name: str
    cameras: list[str]
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    live: bool
    last_upload: UploadOut | None
    report: ReportOut | None = Field(description="null: the host's daemon has not reported")


class MachinesOut(BaseModel):
    hosts: list[HostOut]
    cameras: list[CameraOut]


class ReportIn(BaseModel):
    backlog_files: int = Field(ge=0, le=10**9)
    backlog_bytes: int = Field(ge=0, le=2**62)
    unfinished_files: int = Field(default=0, ge=0, le=10**9)
    last_success_at: str | None = Field(default=None, max_length=64)
    last_error_at: str | None = Field(default=None, max_length=64)

    @field_validator("last_success_at", "last_error_at")
    @classmethod
    def _rfc3339(cls, value: str | None) -> str | None:
        # Shown to the centre as a time: an RFC 3339 instant with its offset, nothing else.
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an RFC 3339 date-time") from exc
        if moment.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset")
        return value

    last_error: str | None = Field(default=None, max_length=MAX_ERROR_TEXT)
    disk_low: bool = False


@router.get("/api/v1/machines", response_model=MachinesOut, summary="Camera hosts and cameras")
def get_machines(services: ServicesDep, _subject: AdminSubject) -> MachinesOut:
    zone = services.settings.zone
    with services.db.read() as session:
        views = host_views(session)
        entries = cameras(session)
    now = datetime.now(UTC)
    hosts = []
    live_by_camera: dict[str, list[int]] = {}
    for view in views:
        token = view.token
        live = token.revoked_at is None and (token.expires_at is None or token.expires_at > now)
        if live:
            for code in token.cameras:
                live_by_camera.setdefault(code, []).append(token.id)
        upload, report = view.last_upload, view.report
        hosts.append(
            HostOut(
                id=token.id,
                name=token.name,
                cameras=list(token.cameras),
                created_at=rfc3339(token.created_at, zone),
                expires_at=rfc3339_or_none(token.expires_at, zone),
                revoked_at=rfc3339_or_none(token.revoked_at, zone),
                live=live,
                last_upload=UploadOut(
                    camera=upload.camera,
                    segment=upload.segment_id,
                    received_at=rfc3339(upload.received_at, zone),
                    start=rfc3339(upload.starts_at, zone),
                    size=upload.size_bytes,
                )
                if upload
                else None,
                report=ReportOut(
                    reported_at=rfc3339(report.reported_at, zone),
                    backlog_files=report.backlog_files,
                    backlog_bytes=report.backlog_bytes,
                    unfinished_files=report.unfinished_files,
                    last_success_at=report.last_success_at,
                    last_error_at=report.last_error_at,
                    last_error=report.last_error,
                    disk_low=report.disk_low,
                )
                if report
                else None,
            )
        )
    return MachinesOut(
        hosts=hosts,
        cameras=[
            CameraOut(
                code=entry.code,
                position=entry.position,
                room=entry.room,
                institution=entry.institution,
                retired_at=rfc3339_or_none(entry.retired_at, zone),
                hosts=live_by_camera.get(entry.code, []),
            )
            for entry in entries
        ],
    )


def _camera_host(subject: CurrentSubject) -> Subject:
    # Only a machine's own token reports for it: a person has no daemon, and an admin's
    # report would be stored against the admin's token, not a host's.
    if subject.role != "camera_host" or subject.token_id is None:
        raise ApiError(403, "forbidden", "only a camera host reports its push daemon's status")
    return subject


CameraHost = Annotated[Subject, Depends(_camera_host)]


@router.put(
    "/api/v1/hosts/report",
    status_code=204,
    summary="A camera host's push daemon reports its backlog and last error (its own token)",
)
def put_report(body: ReportIn, services: ServicesDep, subject: CameraHost) -> Response:
    token_id = subject.token_id
    assert token_id is not None
    report = DaemonReport(**body.model_dump())
    services.db.run_write(lambda session: record_report(session, token_id, report))
    return Response(status_code=204)
