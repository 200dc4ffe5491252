"""Dependencies named for what they give: `ServicesDep`, `CurrentSubject`, role-scoped aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.access import Subject
from services.api.errors import ApiError
from services.auth import token_subject
from services.context import Services
from storage.models import User


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False)


def current_subject(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Subject:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "unauthorized", "a bearer token is required")
    with services.db.read() as session:
        token = token_subject(session, credentials.credentials)
        if token is None:
            raise ApiError(401, "unauthorized", "the bearer token is unknown, expired or revoked")
        if token.user_id is None:
            return Subject(
                name=token.name,
                role=token.role,
                cameras=frozenset(token.cameras),
                token_id=token.id,
            )
        user = session.get(User, token.user_id)
        if user is None or user.disabled_at is not None:
            raise ApiError(401, "unauthorized", "this account is disabled")
        return Subject(
            name=user.name,
            role=user.role,
            user_id=user.id,
            district=user.district,
            institution_id=user.institution_id,
            token_id=token.id,
        )


CurrentSubject = Annotated[Subject, Depends(current_subject)]


def _camera_pusher(subject: CurrentSubject) -> Subject:
    if subject.role not in ("camera_host", "admin"):
        raise ApiError(403, "forbidden", f"role {subject.role!r} may not push recordings")
    return subject


CameraPusher = Annotated[Subject, Depends(_camera_pusher)]


def _admin(subject: CurrentSubject) -> Subject:
    if subject.role != "admin":
        raise ApiError(403, "forbidden", f"role {subject.role!r} may not do this; admin only")
    return subject


AdminSubject = Annotated[Subject, Depends(_admin)]


def _sitting_reader(subject: CurrentSubject) -> Subject:
    if subject.role == "camera_host":
        raise ApiError(403, "forbidden", "camera hosts push recordings; they read nothing")
    return subject


# Which sittings a reader sees is decided per query (services/access.py).
SittingReader = Annotated[Subject, Depends(_sitting_reader)]
