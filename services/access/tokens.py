"""Machine identities: API tokens (camera hosts, integrations, the admin's own scripts).

A token is 32 random bytes shown once; the database keeps only its SHA-256, so a leaked
database grants nothing. Lookups go by that hash, so the comparison is an index probe on a
value the caller cannot choose, not a byte-by-byte compare of the secret.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import ledger
from storage.models import ApiToken, Camera

ROLES = ("admin", "district_officer", "supervisor", "institution", "camera_host")
TOKEN_PREFIX = "evt_"


class TokenError(ValueError):
    """A token that cannot be created as asked; the message says why."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    session: Session,
    *,
    role: str,
    name: str,
    cameras: list[str] | None = None,
    expires_at: datetime | None = None,
    actor: str,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    if role not in ROLES:
        raise TokenError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    now = now or datetime.now(UTC)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise TokenError("expires_at: give the instant with its offset")
        if expires_at <= now:
            # A dead-on-arrival token would still be ledgered as created and shown once.
            raise TokenError(
                f"expires_at {expires_at.isoformat()} is not in the future "
                f"(now {now.isoformat(timespec='seconds')})"
            )
    cameras = sorted(set(cameras or []))
    if role == "camera_host":
        if not cameras:
            raise TokenError("a camera_host token needs --cameras CODE[,CODE...]")
        known = set(session.scalars(select(Camera.code).where(Camera.code.in_(cameras))))
        unknown = [code for code in cameras if code not in known]
        if unknown:
            raise TokenError(f"unknown camera(s): {', '.join(unknown)}")
    elif cameras:
        raise TokenError("--cameras applies to camera_host tokens only")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        role=role,
        token_hash=hash_token(plaintext),
        cameras=cameras,
        created_at=now,
        expires_at=expires_at,
        revoked_at=None,
    )
    session.add(row)
    session.flush()
    ledger.append(
        session,
        actor=actor,
        action="token.created",
        subject_type="token",
        subject_id=row.id,
        details={
            "name": name,
            "role": role,
            "cameras": cameras,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return row, plaintext


def _live(row: ApiToken | None, now: datetime) -> ApiToken | None:
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    return row


def token_subject(session: Session, token: str, *, now: datetime | None = None) -> ApiToken | None:
    """The live token row for a presented bearer token, or None (unknown, expired, revoked)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    row = _live(row, now or datetime.now(UTC))
    # Defence in depth against a hash collision on a truncated or altered column.
    if row is None or not secrets.compare_digest(row.token_hash, hash_token(token)):
        return None
    return row


def live_token(session: Session, token_id: int, *, now: datetime | None = None) -> ApiToken | None:
    """The token row by id if it is still live: a footage link dies with its token."""
    return _live(session.get(ApiToken, token_id), now or datetime.now(UTC))


def revoke_token(session: Session, token_id: int, *, actor: str, reason: str) -> ApiToken:
    """End a token now; idempotent refusal if it already ended, so the ledger records one end."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise TokenError(f"no token {token_id}")
    if row.revoked_at is not None:
        raise TokenError(f"token {token_id} was revoked already")
    row.revoked_at = datetime.now(UTC)
    session.flush()
    ledger.append(
        session,
        actor=actor,
        action="token.revoked",
        subject_type="token",
        subject_id=row.id,
        details={"name": row.name, "role": row.role, "reason": reason},
        recorded_at=row.revoked_at,
    )
    return row
