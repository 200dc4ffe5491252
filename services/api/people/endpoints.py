"""People: log in (OAuth2 password flow), and the admin's users and supervisor assignments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from services.api.deps import AdminSubject, ServicesDep
from services.api.errors import ApiError
from services.people import LoginThrottle, PeopleError, assign, create_user, log_in
from services.timefmt import rfc3339

router = APIRouter(tags=["people"])


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: str = Field(description="RFC 3339 with offset")


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: str
    password: str
    district: str | None = None
    institution: str | None = Field(default=None, description="institution code")


class UserOut(BaseModel):
    id: int
    name: str
    role: str
    district: str | None


class AssignmentIn(BaseModel):
    user: str
    sitting: str | None = None
    institution: str | None = None
    covers_from: datetime | None = None
    covers_until: datetime | None = None
    valid_from: datetime
    valid_until: datetime


class AssignmentOut(BaseModel):
    id: int
    user: str
    valid_from: str
    valid_until: str


def _throttle(request: Request) -> LoginThrottle:
    throttle: LoginThrottle = request.app.state.login_throttle
    return throttle


@router.post("/api/v1/auth/token", response_model=TokenOut, summary="Log in (OAuth2 password)")
def login(
    request: Request,
    services: ServicesDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
) -> TokenOut:
    throttle = _throttle(request)
    wait = throttle.retry_after(username)
    if wait:
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many failed logins for {username!r}; retry in {wait:.0f} s",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    granted = services.db.run_write(lambda session: log_in(session, username, password))
    if granted is None:
        throttle.failed(username)
        raise ApiError(401, "invalid_credentials", "wrong user name or password")
    throttle.succeeded(username)
    return TokenOut(
        access_token=granted.token, expires_at=rfc3339(granted.expires_at, services.settings.zone)
    )


@router.post("/api/v1/users", status_code=201, response_model=UserOut, summary="Create a user")
def post_user(body: UserIn, services: ServicesDep, subject: AdminSubject) -> UserOut:
    def work(session: Session) -> UserOut:
        user = create_user(
            session,
            name=body.name,
            role=body.role,
            password=body.password,
            district=body.district,
            institution_code=body.institution,
            actor=subject.actor,
        )
        return UserOut(id=user.id, name=user.name, role=user.role, district=user.district)

    try:
        return services.db.run_write(work)
    except PeopleError as exc:
        raise ApiError(422, "invalid_user", str(exc)) from exc


@router.post(
    "/api/v1/assignments",
    status_code=201,
    response_model=AssignmentOut,
    summary="Assign a supervisor to a sitting, or to an institution over dates",
)
def post_assignment(
    body: AssignmentIn, services: ServicesDep, subject: AdminSubject
) -> AssignmentOut:
    for name in ("covers_from", "covers_until", "valid_from", "valid_until"):
        value = getattr(body, name)
        if value is not None and value.tzinfo is None:
            raise ApiError(400, "invalid_request", f"{name}: give the instant with its offset")

    def work(session: Session) -> AssignmentOut:
        made = assign(
            session,
            user_name=body.user,
            sitting_code=body.sitting,
            institution_code=body.institution,
            covers_from=body.covers_from,
            covers_until=body.covers_until,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
            actor=subject.actor,
        )
        zone = services.settings.zone
        return AssignmentOut(
            id=made.id,
            user=body.user,
            valid_from=rfc3339(made.valid_from, zone),
            valid_until=rfc3339(made.valid_until, zone),
        )

    try:
        return services.db.run_write(work)
    except PeopleError as exc:
        raise ApiError(422, "invalid_assignment", str(exc)) from exc
