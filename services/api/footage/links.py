"""Footage links for the browser: `<video src>` and `<img src>` cannot send a bearer header,
so the page trades its token for a short-lived link to one footage URL
(services/footage/links.py)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.api.deps import ServicesDep, SittingReader, footage_link_key
from services.api.errors import ApiError
from services.footage.links import LINK_LIFETIME, LinkError, mint_link
from services.timefmt import rfc3339

router = APIRouter(tags=["footage"])


class LinkIn(BaseModel):
    url: str = Field(
        min_length=1,
        max_length=2000,
        description="a footage GET as path and query, e.g. /api/v1/cameras/C/playback?start=...",
    )


class LinkOut(BaseModel):
    url: str = Field(description="the same URL with its link; opens it without a header")
    expires_at: str = Field(description="RFC 3339; a started stream runs on past it")


@router.post(
    "/api/v1/footage/links",
    status_code=201,
    response_model=LinkOut,
    summary=f"A link to one footage URL for <video>/<img>, valid {LINK_LIFETIME} at most",
)
def post_link(body: LinkIn, services: ServicesDep, subject: SittingReader) -> LinkOut:
    if subject.token_id is None:
        raise ApiError(403, "forbidden", "links are minted from a bearer token")
    try:
        link = mint_link(footage_link_key(services), subject.token_id, body.url)
    except LinkError as exc:
        raise ApiError(422, "invalid_link", str(exc)) from exc
    # Minting grants nothing by itself: the footage route checks the caller's scope and
    # ledgers the read when the link is opened.
    return LinkOut(url=link.url, expires_at=rfc3339(link.expires_at, services.settings.zone))
