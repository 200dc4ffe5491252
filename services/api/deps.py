"""Dependencies named for what they give: `ServicesDep`, `CurrentSubject`, role-scoped aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api.errors import ApiError
from services.auth import token_subject
from services.context import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Subject:
    """Who is calling: the name goes into every ledger entry the call causes."""

    name: str
    role: str
    cameras: frozenset[str]

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"


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
        return Subject(name=token.name, role=token.role, cameras=frozenset(token.cameras))


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


# The supervisor-access issue widens these to scoped roles; until then, the centre's admins.
AdminSubject = Annotated[Subject, Depends(_admin)]
