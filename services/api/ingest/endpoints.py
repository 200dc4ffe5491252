"""`PUT /api/v1/ingest/{camera_code}/{file_name}`: camera hosts push one finished segment.

The body is streamed to `<spool>/.incoming/<id>.part` (never held in memory), hashed on the
way, checked against `X-Content-SHA256`, given a sidecar with what the request said, renamed
to `<id>.bin` and handed to the pipeline. If the process dies after that rename, the worker's
sweep finishes the ingest; before it, the client never got an answer and will retry.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import stat
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from services.api.deps import CameraPusher, ServicesDep
from services.api.errors import (
    MESSAGES_ZH,
    QUARANTINE_KEPT_EN,
    QUARANTINE_KEPT_ZH,
    ApiError,
    ErrorBody,
    error_response,
    outage_response,
)
from services.api.ingest.schemas import StoredSegment
from services.ingest.clock import StartError, name_carries_start, parse_name_start, parse_rfc3339
from services.ingest.pipeline import IngestResult, Outcome
from services.ingest.quarantine import write_json_atomically
from services.ingest.uploads import (
    UPLOAD_ID,
    UploadResult,
    ingest_staged_upload,
    read_result,
    read_sidecar,
    staged_paths,
)
from services.registry import CODE as CAMERA_CODE
from services.timefmt import rfc3339
from storage.faults import fault_point
from storage.models import Segment
from storage.outages import Outage, outage_of

if TYPE_CHECKING:
    from services.jobs import JobQueue

router = APIRouter(tags=["ingest"])

FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_WRITE_BATCH = 1024 * 1024
# How long the status URL waits for a result whose upload a worker has just removed.
_RESULT_GRACE_SECONDS = 10.0

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "bad header, camera code or file name, or the body does not match X-Content-SHA256"),
        (401, "no valid bearer token"),
        (403, "the token may not push for this camera"),
        (408, "the body stalled or came too slowly (nothing kept); send it again"),
        (409, "the camera already has different bytes at this start (file quarantined)"),
        (413, "over the size limit"),
        (422, "not a usable video (file quarantined, reason given)"),
        (
            503,
            "retry later (Retry-After): busy, or store_unavailable, database_unavailable, "
            "disk_full; with `kept` the upload arrived and will be stored without a resend",
        ),
    )
}

logger = logging.getLogger(__name__)


def _check_file_name(file_name: str) -> None:
    if ".." in file_name or not FILE_NAME.match(file_name):
        raise ApiError(
            400,
            "bad_file_name",
            f"file name {file_name!r} must be 1-200 letters, digits, '.', '_', '+' or '-', "
            "with no path separators or '..'",
        )


def _declared_start(file_name: str, header: str | None, services: ServicesDep) -> str | None:
    """Validate the start early (400), return what the pipeline should read it from."""
    from_name = None
    if name_carries_start(file_name):
        try:
            from_name = parse_name_start(file_name, services.settings.zone)
        except StartError as exc:
            raise ApiError(400, "bad_file_name", exc.reason) from exc
    if header is None:
        if from_name is None:
            raise ApiError(
                400,
                "missing_start",
                "the recording start is needed: send X-Recording-Start (RFC 3339) or name "
                "the file YYYYMMDDTHHMMSS+HHMM.ext",
            )
        return None
    try:
        declared = parse_rfc3339(header)
    except StartError as exc:
        raise ApiError(400, exc.code, exc.reason) from exc
    if from_name is not None and from_name.instant != declared.instant:
        raise ApiError(
            400,
            "start_mismatch",
            f"X-Recording-Start {header!r} and the file name's start {from_name.raw!r} differ",
        )
    return header


class _Upload:
    """The temporary file of one upload, locked while it is written."""

    def __init__(self, incoming: Path) -> None:
        incoming.mkdir(parents=True, exist_ok=True)
        # A symlinked (or replaced) `.incoming` would put the upload's bytes outside the
        # spool, where the sweep never looks: refuse rather than write there.
        if not stat.S_ISDIR(os.lstat(incoming).st_mode):
            logger.error("%s is not a real directory (a symlink?): uploads refused", incoming)
            raise ApiError(
                503,
                "spool_unavailable",
                "the server's upload folder is misconfigured; try again later",
            )
        self.stem = incoming / uuid.uuid4().hex
        self.part = self.stem.with_suffix(".part")
        self.handle: IO[bytes] = self.part.open("xb")
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.handle.write(data)

    def finish(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def discard(self) -> None:
        self.handle.close()
        self.part.unlink(missing_ok=True)
        self.stem.with_suffix(".json").unlink(missing_ok=True)


async def _receive(request: Request, upload: _Upload, limit: int) -> None:
    pending = bytearray()
    async for chunk in request.stream():
        upload.size += len(chunk)
        if upload.size > limit:
            raise ApiError(413, "too_large", f"the body is over the {limit}-byte limit")
        pending += chunk
        if len(pending) >= _WRITE_BATCH:
            await anyio.to_thread.run_sync(upload.write, bytes(pending))
            pending.clear()
    if pending:
        await anyio.to_thread.run_sync(upload.write, bytes(pending))
    await anyio.to_thread.run_sync(upload.finish)


@router.put(
    "/api/v1/ingest/{camera_code}/{file_name:path}",
    status_code=201,
    response_model=StoredSegment,
    responses={
        200: {"model": StoredSegment, "description": "the same bytes were already stored"},
        **_ERRORS,
    },
    summary="Push one recording segment",
)
async def push_segment(
    camera_code: str,
    file_name: str,
    request: Request,
    services: ServicesDep,
    subject: CameraPusher,
    x_recording_start: Annotated[str | None, Header()] = None,
    x_content_sha256: Annotated[str | None, Header()] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    if not CAMERA_CODE.match(camera_code):
        # Never a path, never a quarantine record for a camera that cannot exist.
        raise ApiError(
            400,
            "bad_camera_code",
            f"camera code {camera_code!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    if subject.role == "camera_host" and camera_code not in subject.cameras:
        raise ApiError(403, "forbidden", f"this token may not push for camera {camera_code!r}")
    _check_file_name(file_name)
    declared_start = _declared_start(file_name, x_recording_start, services)
    if x_content_sha256 is not None and not SHA256_HEX.match(x_content_sha256):
        raise ApiError(400, "bad_checksum_header", "X-Content-SHA256 must be 64 hex digits")
    limit = services.settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, "too_large", f"Content-Length {length} is over the {limit}-byte limit")
    known = _known_outage(services)
    if known is not None:
        # Not worth the body: it could not be stored now, and kept copies would fill the disk.
        return outage_response(request, known)

    received_at = datetime.now(UTC)
    upload = _Upload(services.settings.incoming_dir)
    try:
        await _receive(request, upload, limit)
    except ClientDisconnect:
        # The host will push again; a traceback at ERROR for it would only bury real faults.
        upload.discard()
        logger.info(
            "push of %s/%s cut by the client after %d bytes; nothing kept",
            camera_code,
            file_name,
            upload.size,
        )
        return Response(status_code=499)  # nobody is left to read it
    except BaseException:
        # Too large, too slow, or cancelled: nothing was acknowledged, so nothing is kept.
        upload.discard()
        raise
    sha256 = upload.digest.hexdigest()
    if x_content_sha256 is not None and sha256 != x_content_sha256.lower():
        upload.discard()
        raise ApiError(
            400,
            "checksum_mismatch",
            f"the body's SHA-256 is {sha256}, not {x_content_sha256.lower()}: resend the file",
        )
    meta_path = upload.stem.with_suffix(".json")
    data_path = upload.stem.with_suffix(".bin")
    try:
        write_json_atomically(
            meta_path,
            {
                "camera": camera_code,
                "file_name": file_name,
                "declared_start": declared_start,
                "received_at": received_at.isoformat(),
                "sha256": sha256,
                "actor": subject.actor,
            },
        )
    except BaseException:
        # No room for the sidecar (a full disk): not kept, not acknowledged, nothing left.
        upload.discard()
        raise
    os.rename(upload.part, data_path)
    upload.handle.close()  # releases the lock: the pipeline takes its own on the .bin
    fault_point("upload.renamed")

    upload_id = upload.stem.name
    job_queue = getattr(request.app.state, "job_queue", None)
    if job_queue is not None:
        return await _queued(
            request,
            services,
            job_queue,
            upload_id,
            camera_code,
            sha256,
            respond_async="respond-async" in (prefer or "").lower(),
        )
    try:
        result = await run_in_threadpool(
            ingest_staged_upload, services.pipeline, data_path, record=False
        )
    except Exception as exc:
        outage = outage_of(exc)
        if outage is None:
            raise
        # The upload is complete and kept (.bin + sidecar): the worker stores it once the
        # dependency is back. Not acknowledged yet, so the host keeps its copy; its retry
        # is answered 200 with the same SHA-256 once the kept one is stored.
        worker = getattr(request.app.state, "worker", None)
        if worker is not None:
            worker.submit(data_path, time.time() + services.settings.outage_retry_seconds)
        logger.warning("upload %s of %s kept for later: %s", data_path.name, camera_code, exc)
        return _kept(request, outage, sha256)
    if result is None:
        result = IngestResult(Outcome.SKIPPED)
    return _answer(result, camera_code, services)


def _kept(request: Request, outage: Outage, sha256: str, **extra: Any) -> JSONResponse:
    kept = Outage(
        outage.code,
        f"{outage.message}; the upload arrived whole and is kept: it is stored when the "
        "dependency is back, and a retry is then answered 200 with the same SHA-256",
    )
    return outage_response(
        request,
        kept,
        kept=True,
        sha256=sha256,
        message_zh=f"{MESSAGES_ZH[outage.code]}上传内容已完整接收并暂存，恢复后自动入库。",
        **extra,
    )


def _status_url(upload_id: str) -> str:
    return f"/api/v1/uploads/{upload_id}"


async def _queued(
    request: Request,
    services: ServicesDep,
    job_queue: JobQueue,
    upload_id: str,
    camera_code: str,
    sha256: str,
    *,
    respond_async: bool,
) -> Response:
    """The job queue's answer: the worker's result within EXAMVAULT_UPLOAD_WAIT_SECONDS (as
    if ingested here), or at once 202 when the client asked (`Prefer: respond-async`)."""
    status_url = _status_url(upload_id)
    try:
        await job_queue.defer_upload(upload_id)
    except Exception as exc:
        outage = outage_of(exc) or Outage(
            "database_unavailable", f"the job queue did not take the upload: {exc}"
        )
        # Kept in the staging folder: a worker's sweep queues it after a minute anyway.
        logger.warning("upload %s of %s not queued, kept: %s", upload_id, camera_code, exc)
        return _kept(request, outage, sha256, upload_id=upload_id, status_url=status_url)
    if respond_async:
        return JSONResponse(
            {"status": "queued", "upload_id": upload_id, "status_url": status_url,
             "sha256": sha256, "camera": camera_code},
            status_code=202,
            headers={"Location": status_url, "Preference-Applied": "respond-async",
                     "Retry-After": "1"},
        )  # fmt: skip
    _, _, result_path = staged_paths(services.settings.incoming_dir, upload_id)
    deadline = time.monotonic() + services.settings.upload_wait_seconds
    pause = 0.05
    while time.monotonic() < deadline:
        record = await anyio.to_thread.run_sync(read_result, result_path)
        if record is not None:
            return await run_in_threadpool(_answer_record, record, services)
        await anyio.sleep(pause)
        pause = min(pause * 1.5, 0.5)
    return error_response(
        503,
        "queued",
        f"the upload arrived whole and waits for a worker (not stored within "
        f"{services.settings.upload_wait_seconds:g} s); GET {status_url} gives the final "
        "answer, or push again later: the same bytes are then answered 200",
        headers={"Retry-After": str(services.settings.outage_retry_seconds),
                 "Location": status_url},
        kept=True,
        sha256=sha256,
        upload_id=upload_id,
        status_url=status_url,
    )  # fmt: skip


def _answer_record(record: UploadResult, services: ServicesDep) -> JSONResponse:
    segment = None
    if record.segment_id is not None:
        with services.db.read() as session:
            segment = session.get(Segment, record.segment_id)
    result = IngestResult(
        record.outcome,
        segment=segment,
        code=record.code,
        reason=record.reason,
        quarantine_id=record.quarantine_id,
        quarantine_kept=record.quarantine_kept,
        camera_code=record.camera,
        damaged=record.damaged,
    )
    return _answer(result, record.camera, services)


@router.get(
    "/api/v1/uploads/{upload_id}",
    responses={
        200: {"model": StoredSegment, "description": "stored earlier (the same bytes)"},
        201: {"model": StoredSegment, "description": "stored"},
        202: {"description": "still waiting for a worker; ask again after Retry-After"},
        404: {"model": ErrorBody, "description": "no such upload of this token's cameras"},
        409: {"model": ErrorBody, "description": "conflict, as the PUT would have answered"},
        422: {"model": ErrorBody, "description": "not a usable video, as the PUT would have"},
    },
    summary="What became of an upload answered 202 (or 503 queued)",
)
async def upload_status(upload_id: str, services: ServicesDep, subject: CameraPusher) -> Response:
    """The final answer the PUT would have given (201, 200, 409, 422), or 202 while the upload
    waits; only to the token that pushed it (or an admin), kept for a day."""
    unknown = ApiError(404, "unknown_upload", f"no upload {upload_id!r} of this token is known")
    if not UPLOAD_ID.match(upload_id):
        raise unknown
    data_path, meta_path, result_path = staged_paths(services.settings.incoming_dir, upload_id)

    def allowed(actor: str | None, camera: str | None) -> bool:
        if subject.role == "admin":
            return True
        return actor == subject.actor and camera in subject.cameras

    record = await anyio.to_thread.run_sync(read_result, result_path)
    sidecar = await anyio.to_thread.run_sync(read_sidecar, meta_path)
    if record is None and not (sidecar and os.path.lexists(data_path)):
        # The worker removes the upload a moment before it writes the result (its coverage
        # and hold follow-ups run between): wait for that moment rather than answer 404,
        # which would make the host push the bytes again.
        deadline = time.monotonic() + _RESULT_GRACE_SECONDS
        while record is None and time.monotonic() < deadline:
            await anyio.sleep(0.1)
            record = await anyio.to_thread.run_sync(read_result, result_path)
    if record is not None:
        if not allowed(record.actor, record.camera):
            raise unknown
        return await run_in_threadpool(_answer_record, record, services)
    if not sidecar or not allowed(sidecar.get("actor"), sidecar.get("camera")):
        raise unknown
    if not os.path.lexists(data_path):
        # A worker killed between removing the upload and writing its result: the host
        # pushes again after this 404, and is answered 200 if it was stored.
        raise unknown
    return JSONResponse(
        {"status": "queued", "upload_id": upload_id, "status_url": _status_url(upload_id),
         "sha256": sidecar.get("sha256"), "camera": sidecar.get("camera")},
        status_code=202,
        headers={"Retry-After": "1"},
    )  # fmt: skip


def _known_outage(services: ServicesDep) -> Outage | None:
    """What the last readiness checks found down that an upload needs: the store, the
    database, or room on the disk."""
    readiness = services.readiness
    if not readiness.started:
        return None
    for check, code in (
        ("blob store", "store_unavailable"),
        ("database", "database_unavailable"),
        ("disk", "disk_full"),
    ):
        problem = readiness.failing(check)
        if problem is not None:
            return Outage(code, f"{check}: {problem}; retry later")
    return None


def _answer(result: IngestResult, camera_code: str, services: ServicesDep) -> JSONResponse:
    zone = services.settings.zone
    if result.outcome in (Outcome.STORED, Outcome.DUPLICATE) and result.segment is not None:
        segment = result.segment
        body = StoredSegment(
            segment_id=segment.id,
            status=result.outcome.value,
            camera=camera_code,
            sha256=segment.sha256,
            size=segment.size_bytes,
            start=rfc3339(segment.starts_at, zone),
            end=rfc3339(segment.ends_at, zone),
            duration_seconds=segment.duration_seconds,
            expires_at=rfc3339(segment.expires_at, zone),
            clock_flags=segment.clock_flags,
            damaged=[
                {"start": rfc3339(start, zone), "end": rfc3339(end, zone)}
                for start, end in result.damaged
            ],
        )
        status = 201 if result.outcome is Outcome.STORED else 200
        return JSONResponse(body.model_dump(), status_code=status)
    if result.outcome is Outcome.CONFLICT:
        message, message_zh = _kept_wording(
            "conflict", result.reason or "conflict", result.quarantine_kept
        )
        return error_response(
            409,
            "conflict",
            message,
            message_zh=message_zh,
            segment_id=result.segment.id if result.segment else None,
            quarantine_id=result.quarantine_id,
            quarantine_kept=result.quarantine_kept,
        )
    if result.outcome is Outcome.REJECTED:
        code = result.code or "not_a_video"
        message, message_zh = _kept_wording(
            code, result.reason or "rejected", result.quarantine_kept
        )
        return error_response(
            422,
            code,
            message,
            message_zh=message_zh,
            quarantine_id=result.quarantine_id,
            quarantine_kept=result.quarantine_kept,
        )
    return error_response(
        503,
        "busy",
        "this file is being ingested right now; retry shortly",
        headers={"Retry-After": "5"},
    )


def _kept_wording(code: str, reason: str, kept: str | None) -> tuple[str, str | None]:
    """(message, message_zh): when the quarantine was at its budget, both say the file was
    not (all) kept, so the camera host knows its copy is the only whole one."""
    if kept in (None, "whole"):
        return reason, None
    english = QUARANTINE_KEPT_EN[kept]
    return f"{reason}; {english}", f"{MESSAGES_ZH.get(code, '')}{QUARANTINE_KEPT_ZH[kept]}"
