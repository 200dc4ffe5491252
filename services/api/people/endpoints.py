"""People: log in (OAuth2 password flow), and the admin's users and supervisor assignments."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from services.access.people import (
    MAX_USER_NAME,
    LoginSession,
    LoginThrottle,
    PeopleError,
    UserNameError,
    assign,
    check_password,
    create_user,
    disable_user,
    normalise_user_name,
    open_login_session,
    reset_password,
    revoke_assignment,
)
from services.access.tokens import TokenError, create_token, revoke_token
from services.api.deps import (
    AdminSubject,
    BoundedAwareDatetime,
    BoundedDatetime,
    CurrentSubject,
    RowId,
    ServicesDep,
)
from services.api.errors import ApiError
from services.timefmt import rfc3339, rfc3339_or_none
from storage.models import ApiToken, Assignment, Institution, Room, Site, Sitting, User

router = APIRouter(tags=["people"])

# One page of history is plenty for a person or a sitting; the list is never unbounded.
MAX_ASSIGNMENTS_LISTED = 5000


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: str = Field(description="RFC 3339 with offset")


class UserIn(BaseModel):
    name: str = Field(
        description=f"1 to {MAX_USER_NAME} letters, digits, Chinese characters or . _ - "
        "(NFKC-normalised)"
    )
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
    covers_from: BoundedDatetime | None = None
    covers_until: BoundedDatetime | None = None
    valid_from: BoundedDatetime
    valid_until: BoundedDatetime


class AssignmentOut(BaseModel):
    id: int
    user: str
    sitting: str | None = Field(default=None, description="sitting code")
    institution: str | None = Field(default=None, description="institution code")
    covers_from: str | None = None
    covers_until: str | None = None
    valid_from: str
    valid_until: str
    granted_by: str | None = None
    granted_at: str | None = None
    revoked_at: str | None = None
    live: bool = Field(default=True, description="grants access right now")


class AssignmentList(BaseModel):
    assignments: list[AssignmentOut]


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


class UserDetail(BaseModel):
    id: int
    name: str
    role: str
    district: str | None
    institution: str | None
    created_at: str
    disabled_at: str | None


class UserList(BaseModel):
    users: list[UserDetail]


class PasswordReset(BaseModel):
    name: str
    password: str = Field(description="shown once; only its hash is kept")
    sessions_ended: bool = True


class MeOut(BaseModel):
    name: str
    role: str
    district: str | None
    institution: str | None
    assignments: list[AssignmentOut] = Field(description="a supervisor's live assignments")


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: str = Field(description="camera_host | admin | district_officer | ...")
    cameras: list[str] = Field(default_factory=list, description="camera_host: its cameras")
    expires_at: BoundedAwareDatetime | None = None


class TokenCreated(BaseModel):
    id: int
    token: str = Field(description="shown once; only its hash is kept")


class TokenInfo(BaseModel):
    id: int
    name: str
    role: str
    cameras: list[str]
    user: str | None = Field(description="the person, for a login session")
    created_at: str
    expires_at: str | None
    revoked_at: str | None


class TokenList(BaseModel):
    tokens: list[TokenInfo]


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
    try:
        name = normalise_user_name(username)
    except UserNameError as exc:
        # Reveals nothing: no user can have a name of that form.
        raise ApiError(400, "invalid_user", str(exc)) from exc
    # Counted and committed before the password is checked, so concurrent guesses and other
    # API processes cannot get past the limit.
    wait = services.db.run_write(lambda session: throttle.admit(session, name))
    if wait:
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many failed logins for {name!r}; retry in {wait:.0f} s",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    with services.db.read() as session:
        user_id = check_password(session, name, password)

    def grant(session: Session) -> LoginSession | None:
        granted = open_login_session(session, user_id) if user_id is not None else None
        if granted is not None:
            throttle.succeeded(session, name)
        return granted

    granted = services.db.run_write(grant) if user_id is not None else None
    if granted is None:
        raise ApiError(401, "invalid_credentials", "wrong user name or password")
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
    except UserNameError as exc:
        raise ApiError(400, "invalid_user", str(exc)) from exc
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
        return _assignment_out(session, made, services)

    try:
        return services.db.run_write(work)
    except PeopleError as exc:
        raise ApiError(422, "invalid_assignment", str(exc)) from exc


def _assignment_out(session: Session, row: Assignment, services: ServicesDep) -> AssignmentOut:
    zone = services.settings.zone
    now = datetime.now(UTC)
    user = session.get(User, row.user_id)
    sitting = session.get(Sitting, row.sitting_id) if row.sitting_id else None
    institution = session.get(Institution, row.institution_id) if row.institution_id else None
    return AssignmentOut(
        id=row.id,
        user=user.name if user else "?",
        sitting=sitting.code if sitting else None,
        institution=institution.code if institution else None,
        covers_from=rfc3339_or_none(row.covers_from, zone),
        covers_until=rfc3339_or_none(row.covers_until, zone),
        valid_from=rfc3339(row.valid_from, zone),
        valid_until=rfc3339(row.valid_until, zone),
        granted_by=row.granted_by,
        granted_at=rfc3339(row.granted_at, zone),
        revoked_at=rfc3339_or_none(row.revoked_at, zone),
        live=row.revoked_at is None and row.valid_from <= now < row.valid_until,
    )


@router.get(
    "/api/v1/assignments",
    response_model=AssignmentList,
    summary="Supervisor assignments: a person's (user=NAME), or who may see a sitting "
    "(sitting=CODE: its own and its institution's over its date) or an institution",
)
def list_assignments(
    services: ServicesDep,
    _subject: AdminSubject,
    user: Annotated[str | None, Query(max_length=4 * MAX_USER_NAME)] = None,
    sitting: Annotated[str | None, Query(max_length=64)] = None,
    institution: Annotated[str | None, Query(max_length=64)] = None,
    live: Annotated[bool, Query(description="only those granting access now")] = False,
) -> AssignmentList:
    query = select(Assignment).order_by(Assignment.id)
    if user is not None:
        query = query.join(User, Assignment.user_id == User.id).where(User.name == user)
    with services.db.read() as session:
        if sitting is not None:
            found = session.scalar(select(Sitting).where(Sitting.code == sitting))
            if found is None:
                raise ApiError(404, "not_found", f"no sitting {sitting!r}")
            owner = session.scalar(
                select(Site.institution_id)
                .join(Room, Room.site_id == Site.id)
                .where(Room.id == found.room_id)
            )
            query = query.where(
                or_(
                    Assignment.sitting_id == found.id,
                    and_(
                        Assignment.institution_id == owner,
                        Assignment.covers_from <= found.starts_at,
                        Assignment.covers_until > found.starts_at,
                    ),
                )
            )
        if institution is not None:
            institution_id = session.scalar(
                select(Institution.id).where(Institution.code == institution)
            )
            if institution_id is None:
                raise ApiError(404, "not_found", f"no institution {institution!r}")
            in_sittings = (
                select(Sitting.id)
                .join(Room, Sitting.room_id == Room.id)
                .join(Site, Room.site_id == Site.id)
                .where(Site.institution_id == institution_id)
            )
            query = query.where(
                or_(
                    Assignment.institution_id == institution_id,
                    Assignment.sitting_id.in_(in_sittings),
                )
            )
        if live:
            now = datetime.now(UTC)
            query = query.where(
                Assignment.revoked_at.is_(None),
                Assignment.valid_from <= now,
                Assignment.valid_until > now,
            )
        rows = session.scalars(query.limit(MAX_ASSIGNMENTS_LISTED)).all()
        return AssignmentList(assignments=[_assignment_out(session, r, services) for r in rows])


@router.post(
    "/api/v1/assignments/{assignment_id}/revoke",
    response_model=AssignmentOut,
    summary="End a supervisor's access now (the assignment stays in history)",
)
def revoke_assignment_route(
    assignment_id: RowId, body: ReasonIn, services: ServicesDep, subject: AdminSubject
) -> AssignmentOut:
    def work(session: Session) -> AssignmentOut:
        if session.get(Assignment, assignment_id) is None:
            raise ApiError(404, "not_found", f"no assignment {assignment_id}")
        row = revoke_assignment(session, assignment_id, actor=subject.actor, reason=body.reason)
        return _assignment_out(session, row, services)

    try:
        return services.db.run_write(work)
    except PeopleError as exc:
        raise ApiError(409, "already_revoked", str(exc)) from exc


def _user_out(session: Session, user: User, services: ServicesDep) -> UserDetail:
    zone = services.settings.zone
    institution = session.get(Institution, user.institution_id) if user.institution_id else None
    return UserDetail(
        id=user.id,
        name=user.name,
        role=user.role,
        district=user.district,
        institution=institution.code if institution else None,
        created_at=rfc3339(user.created_at, zone),
        disabled_at=rfc3339_or_none(user.disabled_at, zone),
    )


@router.get("/api/v1/users", response_model=UserList, summary="People who may log in")
def list_users(services: ServicesDep, _subject: AdminSubject) -> UserList:
    with services.db.read() as session:
        users = session.scalars(select(User).order_by(User.name)).all()
        return UserList(users=[_user_out(session, user, services) for user in users])


@router.post(
    "/api/v1/users/{name}/disable",
    response_model=UserDetail,
    summary="Lock a person out and end their sessions",
)
def disable_user_route(
    name: str, body: ReasonIn, services: ServicesDep, subject: AdminSubject
) -> UserDetail:
    def work(session: Session) -> UserDetail:
        if session.scalar(select(User.id).where(User.name == name)) is None:
            raise ApiError(404, "not_found", f"no user {name!r}")
        user = disable_user(session, name, actor=subject.actor, reason=body.reason)
        return _user_out(session, user, services)

    try:
        return services.db.run_write(work)
    except PeopleError as exc:
        raise ApiError(409, "already_disabled", str(exc)) from exc


@router.post(
    "/api/v1/users/{name}/password",
    response_model=PasswordReset,
    summary="Reset a person's password: a new random one, shown once; their sessions end",
)
def reset_password_route(
    name: str, response: Response, services: ServicesDep, subject: AdminSubject
) -> PasswordReset:
    # The one copy of the new password: no cache, no proxy, no back button keeps it.
    response.headers["Cache-Control"] = "no-store"

    def work(session: Session) -> PasswordReset:
        if session.scalar(select(User.id).where(User.name == name)) is None:
            raise ApiError(404, "not_found", f"no user {name!r}")
        password = secrets.token_urlsafe(12)  # 16 characters, 96 bits
        reset_password(session, name, password, actor=subject.actor)
        return PasswordReset(name=name, password=password)

    return services.db.run_write(work)


@router.get("/api/v1/me", response_model=MeOut, summary="Who the caller is, and their access")
def me(services: ServicesDep, subject: CurrentSubject) -> MeOut:
    with services.db.read() as session:
        institution = (
            session.get(Institution, subject.institution_id) if subject.institution_id else None
        )
        rows: list[Assignment] = []
        if subject.user_id is not None:
            now = datetime.now(UTC)
            rows = list(
                session.scalars(
                    select(Assignment)
                    .where(
                        Assignment.user_id == subject.user_id,
                        Assignment.revoked_at.is_(None),
                        Assignment.valid_from <= now,
                        Assignment.valid_until > now,
                    )
                    .order_by(Assignment.valid_until)
                )
            )
        return MeOut(
            name=subject.name,
            role=subject.role,
            district=subject.district,
            institution=institution.code if institution else None,
            assignments=[_assignment_out(session, row, services) for row in rows],
        )


@router.post(
    "/api/v1/auth/logout",
    status_code=204,
    summary="End the caller's own session (revokes the presented token)",
)
def logout(services: ServicesDep, subject: CurrentSubject) -> Response:
    token_id = subject.token_id
    if token_id is not None:
        services.db.run_write(
            lambda session: revoke_token(
                session, token_id, actor=subject.actor, reason="logged out"
            )
        )
    return Response(status_code=204)


def _token_out(session: Session, row: ApiToken, services: ServicesDep) -> TokenInfo:
    zone = services.settings.zone
    user = session.get(User, row.user_id) if row.user_id else None
    return TokenInfo(
        id=row.id,
        name=row.name,
        role=row.role,
        cameras=list(row.cameras),
        user=user.name if user else None,
        created_at=rfc3339(row.created_at, zone),
        expires_at=rfc3339_or_none(row.expires_at, zone),
        revoked_at=rfc3339_or_none(row.revoked_at, zone),
    )


@router.get(
    "/api/v1/tokens",
    response_model=TokenList,
    summary="Machine tokens (sessions=true: people's login sessions too); never the secrets",
)
def list_tokens(
    services: ServicesDep,
    _subject: AdminSubject,
    sessions: Annotated[bool, Query()] = False,
) -> TokenList:
    query = select(ApiToken).order_by(ApiToken.id)
    if not sessions:
        query = query.where(ApiToken.user_id.is_(None))
    with services.db.read() as session:
        rows = session.scalars(query).all()
        return TokenList(tokens=[_token_out(session, row, services) for row in rows])


@router.post(
    "/api/v1/tokens",
    status_code=201,
    response_model=TokenCreated,
    summary="Create a machine token (camera host, integration); shown once",
)
def post_token(body: TokenIn, services: ServicesDep, subject: AdminSubject) -> TokenCreated:
    def work(session: Session) -> TokenCreated:
        row, plaintext = create_token(
            session,
            role=body.role,
            name=body.name,
            cameras=body.cameras,
            expires_at=body.expires_at,
            actor=subject.actor,
        )
        return TokenCreated(id=row.id, token=plaintext)

    try:
        return services.db.run_write(work)
    except TokenError as exc:
        raise ApiError(422, "invalid_token", str(exc)) from exc


@router.post(
    "/api/v1/tokens/{token_id}/revoke",
    response_model=TokenInfo,
    summary="Revoke a token now: a lost camera host, a leaked script, a stale session",
)
def revoke_token_route(
    token_id: RowId, body: ReasonIn, services: ServicesDep, subject: AdminSubject
) -> TokenInfo:
    def work(session: Session) -> TokenInfo:
        if session.get(ApiToken, token_id) is None:
            raise ApiError(404, "not_found", f"no token {token_id}")
        row = revoke_token(session, token_id, actor=subject.actor, reason=body.reason)
        return _token_out(session, row, services)

    try:
        return services.db.run_write(work)
    except TokenError as exc:
        raise ApiError(409, "already_revoked", str(exc)) from exc
