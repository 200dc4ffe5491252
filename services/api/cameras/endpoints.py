"""Cameras' reference images: what each camera should see (scene-mismatch checks, Articles 13
and 28 of the regulation). Set by an admin from an uploaded JPEG/PNG or from the camera's own
footage at an instant."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.deps import AdminSubject, ServicesDep
from services.api.errors import ApiError
from services.health.checker import ReferenceError
from services.timefmt import rfc3339
from storage.models import Camera, ReferenceImage

router = APIRouter(tags=["cameras"])

IMAGE_TYPES = ("image/jpeg", "image/png")
MAX_REFERENCE_BYTES = 10 * 1024 * 1024


class ReferenceOut(BaseModel):
    camera: str
    sha256: str
    source: str
    set_by: str
    set_at: str = Field(description="RFC 3339 with offset")


class FromFootage(BaseModel):
    at: datetime = Field(description="RFC 3339 instant with offset")


def _camera(session: Session, code: str) -> Camera:
    camera = session.scalar(select(Camera).where(Camera.code == code))
    if camera is None:
        raise ApiError(404, "not_found", f"no camera {code!r}")
    return camera


def _out(row: ReferenceImage, camera: str, services: ServicesDep) -> ReferenceOut:
    return ReferenceOut(
        camera=camera,
        sha256=row.sha256,
        source=row.source,
        set_by=row.set_by,
        set_at=rfc3339(row.set_at, services.settings.zone),
    )


@router.put(
    "/api/v1/cameras/{code}/reference",
    status_code=201,
    response_model=ReferenceOut,
    summary="Set the reference image from an uploaded JPEG or PNG",
)
async def put_reference(
    code: str, request: Request, services: ServicesDep, subject: AdminSubject
) -> ReferenceOut:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in IMAGE_TYPES:
        raise ApiError(415, "unsupported_media_type", "send image/jpeg or image/png")
    body = await request.body()
    if len(body) > MAX_REFERENCE_BYTES:
        raise ApiError(
            413, "too_large", f"a reference image is at most {MAX_REFERENCE_BYTES} bytes"
        )

    def work(session: Session) -> ReferenceOut:
        camera = _camera(session, code)
        row = services.health.set_reference(
            session,
            camera=camera,
            image=body,
            media_type=media_type,
            source="upload",
            actor=subject.actor,
        )
        return _out(row, camera.code, services)

    try:
        return services.db.run_write(work)
    except ReferenceError as exc:
        raise ApiError(422, "not_an_image", str(exc)) from exc


@router.post(
    "/api/v1/cameras/{code}/reference/from-footage",
    status_code=201,
    response_model=ReferenceOut,
    summary="Use the camera's own picture at an instant as its reference",
)
def reference_from_footage(
    code: str, body: FromFootage, services: ServicesDep, subject: AdminSubject
) -> ReferenceOut:
    if body.at.tzinfo is None:
        raise ApiError(400, "invalid_request", "at: give the instant with its UTC offset")
    at = body.at.astimezone(UTC)

    def work(session: Session) -> ReferenceOut:
        camera = _camera(session, code)
        image = services.health.frame_from_footage(session, camera, at)
        row = services.health.set_reference(
            session,
            camera=camera,
            image=image,
            media_type="image/jpeg",
            source=f"footage at {at.isoformat()}",
            actor=subject.actor,
        )
        return _out(row, camera.code, services)

    try:
        return services.db.run_write(work)
    except ReferenceError as exc:
        raise ApiError(422, "no_footage", str(exc)) from exc


@router.get(
    "/api/v1/cameras/{code}/reference",
    summary="The reference image in force",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
)
def get_reference(code: str, services: ServicesDep, _subject: AdminSubject) -> Response:
    with services.db.read() as session:
        camera = _camera(session, code)
        row = session.scalar(
            select(ReferenceImage)
            .where(ReferenceImage.camera_id == camera.id)
            .order_by(ReferenceImage.set_at.desc())
            .limit(1)
        )
        if row is None:
            raise ApiError(404, "not_found", f"camera {code!r} has no reference image")
        return Response(row.image, media_type=row.media_type, headers={"ETag": f'"{row.sha256}"'})
