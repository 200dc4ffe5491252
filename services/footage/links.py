"""Footage links: a short-lived URL that stands in for the bearer token on one footage GET.

A browser's `<video src>` and `<img src>` cannot send an Authorization header, so the page asks
for a link to exactly the footage it wants to show. The link carries the caller's token id, an
expiry and an HMAC over both and the exact path and query; it opens that one URL only, and only
while the token it was minted from is live (logout or revocation ends its links too). The
route's own authorization runs on every use, as for a header, and every use is ledgered there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from services.keyfiles import read_or_create

KEY_FILE = "footage-link-key"
LINK_PARAMETER = "link"
LINK_LIFETIME = timedelta(hours=1)
# Only footage reads may be opened by a link; never a write, never the admin's routes.
LINKABLE_PATHS = (
    re.compile(r"/api/v1/segments/\d+/content"),
    re.compile(r"/api/v1/cameras/[^/?#]+/playback"),
    re.compile(r"/api/v1/sittings/[^/?#]+/playback"),
    re.compile(r"/api/v1/sittings/[^/?#]+/cameras/[^/?#]+/thumbnails"),
    re.compile(r"/api/v1/sittings/[^/?#]+/exports/download"),
)


class LinkError(ValueError):
    """A URL that may not be linked; the message says why."""


def link_key(data_dir: Path) -> bytes:
    return read_or_create(data_dir / KEY_FILE, lambda: secrets.token_bytes(32))


def canonical_target(path: str, query: str) -> str:
    """Path plus query without the link itself, parameters sorted: what the HMAC covers."""
    pairs = sorted(
        (k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != LINK_PARAMETER
    )
    return f"{path}?{urlencode(pairs)}"


def _mac(key: bytes, token_id: int, expires: int, target: str) -> str:
    digest = hmac.new(key, f"{token_id}.{expires}\n{target}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class FootageLink:
    url: str
    expires_at: datetime


def mint_link(key: bytes, token_id: int, url: str, *, now: datetime | None = None) -> FootageLink:
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise LinkError("give the footage URL as a path, e.g. /api/v1/segments/7/content")
    # The server sees the path percent-decoded; sign it the way it will be checked.
    path = unquote(parts.path)
    if not any(pattern.fullmatch(path) for pattern in LINKABLE_PATHS):
        raise LinkError(f"{path!r} is not a footage read that a link may open")
    expires_at = (now or datetime.now(UTC)) + LINK_LIFETIME
    expires = int(expires_at.timestamp())
    target = canonical_target(path, parts.query)
    value = f"{token_id}.{expires}.{_mac(key, token_id, expires, target)}"
    separator = "&" if parts.query else "?"
    return FootageLink(f"{url}{separator}{urlencode({LINK_PARAMETER: value})}", expires_at)


def check_link(
    key: bytes, value: str, path: str, query: str, *, now: datetime | None = None
) -> int | None:
    """The token id the link was minted from, or None if it is forged, altered or expired."""
    token, _, rest = value.partition(".")
    expires, _, mac = rest.partition(".")
    if not (token.isdigit() and expires.isdigit() and mac):
        return None
    target = canonical_target(path, query)
    if not any(pattern.fullmatch(path) for pattern in LINKABLE_PATHS):
        return None
    if not hmac.compare_digest(mac, _mac(key, int(token), int(expires), target)):
        return None
    if int(expires) <= (now or datetime.now(UTC)).timestamp():
        return None
    return int(token)
