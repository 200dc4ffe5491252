"""Camera hosts as the centre sees them: each host's token, the cameras it pushes for, its last
upload (from the segments it stored) and what its push daemon last reported (backlog, errors).

The report is the daemon's own word, sent with its own token (services/ingest/pushd.py): the
server cannot see a host's disk, so without a report the backlog is "not reported", never 0."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.models import ApiToken, Camera, HostReport, Institution, Room, Segment, Site

# What a report may say; longer text is cut, so a daemon cannot fill the table.
MAX_ERROR_TEXT = 2000


@dataclass(frozen=True)
class DaemonReport:
    backlog_files: int
    backlog_bytes: int
    unfinished_files: int = 0
    last_success_at: str | None = None
    last_error_at: str | None = None
    last_error: str | None = None
    disk_low: bool = False


def record_report(
    session: Session, token_id: int, report: DaemonReport, *, now: datetime | None = None
) -> None:
    """Keep the host's latest report, replacing the one before: one upsert, so two daemons
    sharing a token (a misconfiguration) race to the last word instead of a key conflict."""
    values = {
        "token_id": token_id,
        "reported_at": now or datetime.now(UTC),
        "backlog_files": report.backlog_files,
        "backlog_bytes": report.backlog_bytes,
        "unfinished_files": report.unfinished_files,
        "last_success_at": report.last_success_at,
        "last_error_at": report.last_error_at,
        "last_error": report.last_error[:MAX_ERROR_TEXT] if report.last_error else None,
        "disk_low": report.disk_low,
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(HostReport).values(**values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["token_id"],
            set_={key: value for key, value in values.items() if key != "token_id"},
        )
    )


@dataclass(frozen=True)
class CameraEntry:
    id: int
    code: str
    position: str
    room: str
    institution: str
    retired_at: datetime | None


@dataclass(frozen=True)
class LastUpload:
    camera: str
    segment_id: int
    received_at: datetime
    starts_at: datetime
    size_bytes: int


@dataclass(frozen=True)
class HostView:
    token: ApiToken
    last_upload: LastUpload | None
    report: HostReport | None


def cameras(session: Session) -> list[CameraEntry]:
    rows = session.execute(
        select(
            Camera.id,
            Camera.code,
            Camera.position,
            Room.code,
            Site.institution_id,
            Camera.retired_at,
        )
        .join(Room, Room.id == Camera.room_id)
        .join(Site, Site.id == Room.site_id)
        .order_by(Camera.code)
    ).all()
    names = {a: b for a, b in session.execute(select(Institution.id, Institution.name))}
    return [
        CameraEntry(cid, code, position, room, names.get(institution_id, ""), retired)
        for cid, code, position, room, institution_id, retired in rows
    ]


def last_uploads(session: Session, camera_ids: list[int]) -> dict[int, LastUpload]:
    """Per camera, the stored segment with the newest recording start: one index probe each
    (ix_segments_camera_time), never a scan of the segments. A host backfilling older footage
    shows its newest recording, not its latest push."""
    if not camera_ids:
        return {}
    newest = (
        select(Segment.id)
        .where(Segment.camera_id == Camera.id)
        .order_by(Segment.starts_at.desc())
        .limit(1)
        .correlate(Camera)
        .scalar_subquery()
    )
    picked = session.execute(
        select(Camera.id, Camera.code, newest).where(Camera.id.in_(camera_ids))
    ).all()
    ids = [segment_id for _, _, segment_id in picked if segment_id is not None]
    segments = (
        {
            segment.id: segment
            for segment in session.scalars(select(Segment).where(Segment.id.in_(ids)))
        }
        if ids
        else {}
    )
    found = {}
    for camera_id, code, segment_id in picked:
        segment = segments.get(segment_id)
        if segment is not None:
            found[camera_id] = LastUpload(
                code, segment.id, segment.received_at, segment.starts_at, segment.size_bytes
            )
    return found


def host_views(session: Session) -> list[HostView]:
    """Every camera-host token (revoked ones too, last), with its last upload and report."""
    tokens = session.scalars(
        select(ApiToken)
        .where(ApiToken.role == "camera_host", ApiToken.user_id.is_(None))
        .order_by(ApiToken.revoked_at.is_not(None), ApiToken.id.desc())
    ).all()
    codes = {code for token in tokens for code in token.cameras}
    by_code = (
        dict(session.execute(select(Camera.code, Camera.id).where(Camera.code.in_(codes))).all())
        if codes
        else {}
    )
    uploads = last_uploads(session, list(by_code.values()))
    reports = (
        {
            report.token_id: report
            for report in session.scalars(
                select(HostReport).where(HostReport.token_id.in_([t.id for t in tokens]))
            )
        }
        if tokens
        else {}
    )
    views = []
    for token in tokens:
        candidates = [uploads[by_code[c]] for c in token.cameras if by_code.get(c) in uploads]
        latest = max(candidates, key=lambda upload: upload.received_at, default=None)
        views.append(HostView(token, latest, reports.get(token.id)))
    return views
