"""People: users with argon2 passwords, login sessions (expiring bearer tokens), supervisor
assignments, and login throttling against guessing."""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.access.tokens import TOKEN_PREFIX, hash_token
from storage import ledger
from storage.models import ApiToken, Assignment, Institution, Sitting, User

PEOPLE_ROLES = ("admin", "district_officer", "supervisor", "institution")
SESSION_HOURS = 8
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
# Verified against when the user name is unknown, so a guess at a name takes as long as a
# guess at a password (the full-stack template's habit).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class PeopleError(ValueError):
    """A user or assignment that cannot be created as asked; the message says why."""


def create_user(
    session: Session,
    *,
    name: str,
    role: str,
    password: str,
    district: str | None = None,
    institution_code: str | None = None,
    actor: str,
) -> User:
    if role not in PEOPLE_ROLES:
        raise PeopleError(f"unknown role {role!r}; choose one of {', '.join(PEOPLE_ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PeopleError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise PeopleError(f"user {name!r} exists already")
    if role == "district_officer" and not district:
        raise PeopleError("a district officer needs --district")
    institution_id = None
    if role == "institution":
        if not institution_code:
            raise PeopleError("an institution user needs --institution CODE")
        institution_id = session.scalar(
            select(Institution.id).where(Institution.code == institution_code)
        )
        if institution_id is None:
            raise PeopleError(f"no institution {institution_code!r}")
    user = User(
        name=name,
        role=role,
        district=district,
        institution_id=institution_id,
        password_hash=_hasher.hash(password),
        created_at=datetime.now(UTC),
        disabled_at=None,
    )
    session.add(user)
    session.flush()
    ledger.append(
        session,
        actor=actor,
        action="user.created",
        subject_type="user",
        subject_id=name,
        details={"role": role, "district": district, "institution": institution_code},
    )
    return user


@dataclass(frozen=True)
class LoginSession:
    token: str
    expires_at: datetime


def log_in(
    session: Session, name: str, password: str, *, now: datetime | None = None
) -> LoginSession | None:
    """A fresh session token, or None for a wrong name or password (indistinguishably)."""
    user = session.scalar(select(User).where(User.name == name))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled_at is not None:
        return None
    now = now or datetime.now(UTC)
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = now + timedelta(hours=SESSION_HOURS)
    session.add(
        ApiToken(
            name=user.name,
            role=user.role,
            token_hash=hash_token(plaintext),
            cameras=[],
            user_id=user.id,
            created_at=now,
            expires_at=expires,
            revoked_at=None,
        )
    )
    ledger.append(
        session,
        actor=f"{user.role}:{user.name}",
        action="user.logged_in",
        subject_type="user",
        subject_id=user.name,
        details={"expires_at": expires.isoformat()},
        recorded_at=now,
    )
    return LoginSession(plaintext, expires)


class LoginThrottle:
    """At most `limit` failed logins per user name within `window` seconds; then refused
    until the oldest failure ages out. In memory: a restart forgives, which is acceptable for
    slowing a guesser down."""

    def __init__(self, limit: int = 5, window: float = 900.0, max_names: int = 100_000) -> None:
        self.limit, self.window, self.max_names = limit, window, max_names
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, name: str, now: float) -> deque[float]:
        failures = self._failures.get(name, deque())
        while failures and now - failures[0] > self.window:
            failures.popleft()
        if not failures:
            # Names are the caller's choice: never keep an entry that holds nothing.
            self._failures.pop(name, None)
        return failures

    def retry_after(self, name: str) -> float:
        """Seconds until another attempt is allowed (0: allowed now)."""
        now = time.monotonic()
        with self._lock:
            failures = self._recent(name, now)
            if len(failures) < self.limit:
                return 0.0
            return max(1.0, self.window - (now - failures[0]))

    def failed(self, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            failures = self._recent(name, now)
            if name not in self._failures and len(self._failures) >= self.max_names:
                # A flood of invented names must not grow memory without bound: forget the
                # name whose last failure is oldest (kept first: see the re-insert below).
                self._failures.pop(next(iter(self._failures)))
            failures.append(now)
            self._failures.pop(name, None)  # re-insert: most recent failure last
            self._failures[name] = failures

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)


def assign(
    session: Session,
    *,
    user_name: str,
    sitting_code: str | None = None,
    institution_code: str | None = None,
    covers_from: datetime | None = None,
    covers_until: datetime | None = None,
    valid_from: datetime,
    valid_until: datetime,
    actor: str,
) -> Assignment:
    user = session.scalar(select(User).where(User.name == user_name))
    if user is None:
        raise PeopleError(f"no user {user_name!r}")
    if user.role != "supervisor":
        raise PeopleError(f"{user_name!r} is a {user.role}, not a supervisor")
    if (sitting_code is None) == (institution_code is None):
        raise PeopleError("assign either one sitting or one institution (with a date range)")
    if valid_until <= valid_from:
        raise PeopleError("the assignment must end after it starts")
    assignment = Assignment(
        user_id=user.id,
        valid_from=valid_from,
        valid_until=valid_until,
        granted_by=actor,
        granted_at=datetime.now(UTC),
        revoked_at=None,
    )
    if sitting_code is not None:
        sitting_id = session.scalar(select(Sitting.id).where(Sitting.code == sitting_code))
        if sitting_id is None:
            raise PeopleError(f"no sitting {sitting_code!r}")
        assignment.sitting_id = sitting_id
        subject = sitting_code
    else:
        institution_id = session.scalar(
            select(Institution.id).where(Institution.code == institution_code)
        )
        if institution_id is None:
            raise PeopleError(f"no institution {institution_code!r}")
        if covers_from is None or covers_until is None or covers_until <= covers_from:
            raise PeopleError("an institution assignment needs a date range (from < until)")
        assignment.institution_id = institution_id
        assignment.covers_from, assignment.covers_until = covers_from, covers_until
        subject = str(institution_code)
    session.add(assignment)
    session.flush()
    ledger.append(
        session,
        actor=actor,
        action="assignment.granted",
        subject_type="user",
        subject_id=user_name,
        details={
            "assignment": assignment.id,
            "scope": subject,
            "valid_from": valid_from.isoformat(),
            "valid_until": valid_until.isoformat(),
        },
    )
    return assignment


def revoke_assignment(
    session: Session, assignment_id: int, *, actor: str, reason: str
) -> Assignment:
    """End a supervisor's access early; the row stays, with when, and the ledger says who."""
    assignment = session.get(Assignment, assignment_id)
    if assignment is None:
        raise PeopleError(f"no assignment {assignment_id}")
    if assignment.revoked_at is not None:
        raise PeopleError(f"assignment {assignment_id} was revoked already")
    assignment.revoked_at = datetime.now(UTC)
    user = session.get(User, assignment.user_id)
    session.flush()
    ledger.append(
        session,
        actor=actor,
        action="assignment.revoked",
        subject_type="user",
        subject_id=user.name if user else str(assignment.user_id),
        details={"assignment": assignment.id, "reason": reason},
        recorded_at=assignment.revoked_at,
    )
    return assignment


def disable_user(session: Session, name: str, *, actor: str, reason: str) -> User:
    """Lock a person out: no new logins, and every session they hold ends now."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise PeopleError(f"no user {name!r}")
    if user.disabled_at is not None:
        raise PeopleError(f"user {name!r} is disabled already")
    now = datetime.now(UTC)
    user.disabled_at = now
    ended = 0
    for token in session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    ):
        token.revoked_at = now
        ended += 1
    session.flush()
    ledger.append(
        session,
        actor=actor,
        action="user.disabled",
        subject_type="user",
        subject_id=name,
        details={"reason": reason, "sessions_ended": ended},
        recorded_at=now,
    )
    return user
