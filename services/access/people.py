"""People: users with argon2 passwords, login sessions (expiring bearer tokens), supervisor
assignments, and login throttling against guessing."""

from __future__ import annotations

import re
import secrets
import threading
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from services.access.tokens import TOKEN_PREFIX, hash_token
from storage import ledger
from storage.models import ApiToken, Assignment, Institution, LoginAttempt, Sitting, User

PEOPLE_ROLES = ("admin", "district_officer", "supervisor", "institution")
SESSION_HOURS = 8
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
# Verified against when the user name is unknown, so a guess at a name takes as long as a
# guess at a password (the full-stack template's habit).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
# Each argon2 check takes 64 MiB and a core for tens of milliseconds: a flood of guesses at
# many names queues here instead of taking the process's memory.
_PASSWORD_CHECKS = threading.BoundedSemaphore(4)

MAX_USER_NAME = 64
# ASCII letters and digits, `._-`, and CJK ideographs (with extension A and beyond); starting
# with a letter or digit. No spaces, controls, zero-width characters or `/`: `carol ` and
# `carol` must never be two people in the ledger.
_HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0003134f"
_USER_NAME = re.compile(f"[A-Za-z0-9{_HAN}][A-Za-z0-9._{_HAN}-]*")


class PeopleError(ValueError):
    """A user or assignment that cannot be created as asked; the message says why."""


class UserNameError(PeopleError):
    """A user name outside the allowed form (a bad input, not a refused act)."""


def normalise_user_name(raw: str) -> str:
    """The user name in its one stored form (NFKC), or UserNameError saying what is wrong."""
    # Bound the input before NFKC, which can expand a character many times over.
    if len(raw) > 4 * MAX_USER_NAME:
        raise UserNameError(f"a user name has at most {MAX_USER_NAME} characters")
    name = unicodedata.normalize("NFKC", raw)
    if not 1 <= len(name) <= MAX_USER_NAME:
        raise UserNameError(f"a user name has 1 to {MAX_USER_NAME} characters, not {len(name)}")
    if _USER_NAME.fullmatch(name) is None:
        bad = next((c for c in name if _USER_NAME.fullmatch("a" + c) is None), None)
        if bad is None:
            raise UserNameError(f"user name {name!r} must start with a letter or digit")
        raise UserNameError(
            f"user name {name!r}: character {bad!r} (U+{ord(bad):04X}) is not allowed; use "
            "letters, digits, Chinese characters and . _ - , starting with a letter or digit"
        )
    return name


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
    name = normalise_user_name(name)
    if role not in PEOPLE_ROLES:
        raise PeopleError(f"unknown role {role!r}; choose one of {', '.join(PEOPLE_ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PeopleError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise PeopleError(f"user {name!r} exists already")
    if role == "district_officer" and not district:
        raise PeopleError("a district officer needs a district (--district)")
    institution_id = None
    if role == "institution":
        if not institution_code:
            raise PeopleError("an institution user needs an institution code (--institution CODE)")
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


def check_password(session: Session, name: str, password: str) -> int | None:
    """The id of the enabled user `name` if `password` is theirs; None otherwise, in the same
    time for an unknown name. Only reads: run it outside a write transaction, so the argon2
    check never holds SQLite's write lock."""
    user = session.execute(
        select(User.id, User.password_hash, User.disabled_at).where(User.name == name)
    ).first()
    with _PASSWORD_CHECKS:
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
    if user is None or user.disabled_at is not None:
        return None
    return int(user.id)


def open_login_session(
    session: Session, user_id: int, *, now: datetime | None = None
) -> LoginSession | None:
    """A fresh session token for a user whose password was checked; None if they were
    disabled in the meantime."""
    user = session.get(User, user_id)
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


def log_in(
    session: Session, name: str, password: str, *, now: datetime | None = None
) -> LoginSession | None:
    """A fresh session token, or None for a wrong name or password (indistinguishably), in
    one transaction; the API checks the password outside its write transaction instead."""
    try:
        name = normalise_user_name(name)
    except UserNameError:
        return None  # no user can have that name
    user_id = check_password(session, name, password)
    return None if user_id is None else open_login_session(session, user_id, now=now)


class LoginThrottle:
    """At most `limit` log-in attempts per user name in a window of `window` seconds from the
    first; then refused until that window ends. A success forgives.

    The count is a row in `login_attempts`, so every API process and a restart see it, and it
    is taken *before* the password is checked, by one atomic upsert: concurrent guesses each
    get their own number and only the first `limit` reach argon2. Names without failures keep
    no row (a success deletes it); rows whose last attempt left the window are pruned, and at
    most about `max_names` rows are kept (the least recently tried go first), however many
    names a guesser invents.
    """

    def __init__(
        self,
        limit: int = 5,
        window: float = 900.0,
        max_names: int = 100_000,
        prune_every: int = 64,
    ) -> None:
        self.limit, self.window, self.max_names = limit, window, max_names
        # Pruning scans an index; once per `prune_every` new windows keeps it off each guess.
        self.prune_every = prune_every
        self._new_windows = 0
        self._lock = threading.Lock()

    def admit(self, session: Session, name: str, *, now: datetime | None = None) -> float:
        """Count an attempt at `name`; 0 if it may check its password, else seconds to wait.
        Commit before checking the password, so other processes count it too."""
        now = now or datetime.now(UTC)
        table = LoginAttempt.__table__
        window_over = table.c.window_started_at <= now - timedelta(seconds=self.window)
        sqlite = session.get_bind().dialect.name == "sqlite"
        insert = sqlite_insert if sqlite else postgresql_insert
        fresh = insert(table).values(
            name=name, attempts=1, window_started_at=now, last_attempt_at=now
        )
        upsert = fresh.on_conflict_do_update(
            index_elements=[table.c.name],
            set_={
                "attempts": case((window_over, 1), else_=table.c.attempts + 1),
                "window_started_at": case(
                    (window_over, fresh.excluded.window_started_at),
                    else_=table.c.window_started_at,
                ),
                "last_attempt_at": fresh.excluded.last_attempt_at,
            },
        ).returning(table.c.attempts, table.c.window_started_at)
        attempts, started = session.execute(upsert).one()
        if attempts == 1:
            self._maybe_prune(session, now)
        if attempts <= self.limit:
            return 0.0
        return max(1.0, self.window - (now - started).total_seconds())

    def succeeded(self, session: Session, name: str) -> None:
        session.execute(delete(LoginAttempt).where(LoginAttempt.name == name))

    def _maybe_prune(self, session: Session, now: datetime) -> None:
        with self._lock:
            self._new_windows += 1
            if self._new_windows < self.prune_every:
                return
            self._new_windows = 0
        session.execute(
            delete(LoginAttempt).where(
                LoginAttempt.last_attempt_at <= now - timedelta(seconds=self.window)
            )
        )
        newest_dropped = session.scalar(
            select(LoginAttempt.last_attempt_at)
            .order_by(LoginAttempt.last_attempt_at.desc())
            .offset(self.max_names)
            .limit(1)
        )
        if newest_dropped is not None:
            session.execute(
                delete(LoginAttempt).where(LoginAttempt.last_attempt_at <= newest_dropped)
            )


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


def reset_password(session: Session, name: str, password: str, *, actor: str) -> User:
    """Give a person a new password; every session they hold ends now, so a leaked old
    password or token stops working at once. The password itself goes nowhere but its hash."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise PeopleError(f"no user {name!r}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PeopleError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    now = datetime.now(UTC)
    user.password_hash = _hasher.hash(password)
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
        action="user.password_reset",
        subject_type="user",
        subject_id=user.name,
        details={"sessions_ended": ended},
        recorded_at=now,
    )
    return user
