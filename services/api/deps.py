"""Dependencies named for what they give: `ServicesDep`, `CurrentSubject`, role-scoped aliases."""

from __future__ import annotations

import pathlib
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, AwareDatetime
from sqlalchemy.orm import Session

from services.access.scopes import Subject
from services.access.tokens import live_token, token_subject
from services.api.errors import ApiError
from services.context import Services
from services.footage.links import LINK_PARAMETER, check_link, link_key
from storage.models import ApiToken, User


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

# Row ids are 32-bit INTEGER columns on PostgreSQL (64-bit on SQLite); a larger number names
# nothing and must get a 400, not overflow the driver. Ledger sequence numbers are BIGINT.
MAX_ROW_ID = 2**31 - 1
MAX_LEDGER_SEQ = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="row id")]

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _within_calendar(value: datetime) -> datetime:
    """A body's instant within 1970..9000, as `instant_param` bounds a query's; unchanged."""
    try:
        utc = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except OverflowError as exc:  # 9999-12-31T23:00:00-14:00 is past the calendar in UTC
        raise ValueError("must be within 1970..9000") from exc
    if not _EARLIEST <= utc <= _LATEST:
        raise ValueError("must be within 1970..9000")
    return value


# Body instants (pydantic): near year 9999 the first day added to one overflowed into a 500.
BoundedDatetime = Annotated[datetime, AfterValidator(_within_calendar)]
BoundedAwareDatetime = Annotated[AwareDatetime, AfterValidator(_within_calendar)]


def instant_param(value: str | None, name: str) -> datetime | None:
    """A query parameter's RFC 3339 instant, in UTC; 400 without an offset or outside
    1970..9000 (far from any recording, and clear of datetime's limits when converted)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ApiError(400, "invalid_request", f"{name}: {value!r} needs a UTC offset")
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ApiError(400, "invalid_request", f"{name}: {value!r} is not RFC 3339") from exc
    if not _EARLIEST <= moment <= _LATEST:
        raise ApiError(400, "invalid_request", f"{name}: {value!r} is outside 1970..9000")
    return moment


_bearer = HTTPBearer(auto_error=False)
_TEXT_BODIES = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


async def refuse_nul_characters(request: Request) -> None:
    """No text the API stores or looks up may hold NUL: PostgreSQL refuses it in text columns,
    so it would surface as a 500 deep inside; say so up front, once, for every route. Bodies
    are looked at only where the route itself parses one (FastAPI has read it already, so this
    costs nothing): an upload streamed by its route (video, images) is never read here."""
    found = "\x00" in request.scope["path"] or any(
        "\x00" in key or "\x00" in value for key, value in request.query_params.multi_items()
    )
    route = request.scope.get("route")
    parses_body = getattr(route, "body_field", None) is not None
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not found and parses_body and media_type == "application/json":
        try:
            found = _holds_nul(await request.json())
        except ValueError:
            return  # not JSON: the route's own validation answers that
    elif not found and parses_body and media_type in _TEXT_BODIES:
        form = await request.form()
        found = any(
            isinstance(value, str) and ("\x00" in key or "\x00" in value)
            for key, value in form.multi_items()
        )
    if found:
        raise ApiError(400, "invalid_request", "text must not contain NUL (U+0000) characters")


@lru_cache(maxsize=8)
def _link_key(data_dir: pathlib.Path) -> bytes:
    return link_key(data_dir)


def footage_link_key(services: Services) -> bytes:
    """The key that signs and checks footage links, read from the data directory once."""
    return _link_key(services.settings.data_dir.resolve())


def _presented_token(
    session: Session,
    request: Request,
    services: Services,
    credentials: HTTPAuthorizationCredentials | None,
) -> ApiToken:
    """The live token behind the call: a bearer header, or a footage link on a GET."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        token = token_subject(session, credentials.credentials)
        if token is None:
            raise ApiError(401, "unauthorized", "the bearer token is unknown, expired or revoked")
        return token
    link = request.query_params.get(LINK_PARAMETER)
    if link is not None and request.method in ("GET", "HEAD"):
        token_id = check_link(
            footage_link_key(services),
            link,
            request.url.path,
            request.url.query,
        )
        token = live_token(session, token_id) if token_id is not None else None
        if token is None:
            raise ApiError(401, "unauthorized", "the footage link is invalid or has expired")
        return token
    raise ApiError(401, "unauthorized", "a bearer token is required")


def current_subject(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Subject:
    with services.db.read() as session:
        token = _presented_token(session, request, services, credentials)
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


# Which sittings a reader sees is decided per query (services/access/scopes.py).
SittingReader = Annotated[Subject, Depends(_sitting_reader)]
