"""The web page for supervisors and district officers: static files from `services/web/`.

The page is plain HTML, CSS and JavaScript modules, served by the app itself so it shares the
API's origin (no CORS, and the bearer token never leaves it). These routes carry no data and no
auth: every piece of evidence the page shows comes from the API under the caller's token.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from services.api.errors import ApiError

router = APIRouter(include_in_schema=False)

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
# Plainly named files, flat or one folder down (admin/): a name or folder that does not match
# cannot climb out of the web folder.
_ASSET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.(?:html|js|css|svg|png|ico)")
_FOLDER_NAME = re.compile(r"[a-z][a-z0-9_-]*")
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    # Module scripts are refused by browsers unless served with a JavaScript type.
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# Everything the page loads comes from this origin (footage through same-origin footage links;
# an export is saved through a blob: URL). No inline script or style, so a string injected into
# a sitting's data can never run.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "media-src 'self'; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    # Footage links carry their credential in the query; never hand a URL on as a referrer.
    "Referrer-Policy": "no-referrer",
    # Revalidate so a deployed fix reaches the browser at once (FileResponse sends an ETag).
    "Cache-Control": "no-cache",
}


def _file(name: str, folder: str | None = None) -> FileResponse:
    if not _ASSET_NAME.fullmatch(name) or (
        folder is not None and not _FOLDER_NAME.fullmatch(folder)
    ):
        raise ApiError(404, "not_found", f"no web file {name!r}")
    path = WEB_DIR / folder / name if folder is not None else WEB_DIR / name
    if not path.is_file():
        raise ApiError(404, "not_found", f"no web file {name!r}")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_HEADERS)


@router.get("/")
def index() -> FileResponse:
    return _file("index.html")


@router.get("/web/{name}")
def asset(name: Annotated[str, PathParam(max_length=100)]) -> FileResponse:
    return _file(name)


@router.get("/web/{folder}/{name}")
def folder_asset(
    folder: Annotated[str, PathParam(max_length=40)],
    name: Annotated[str, PathParam(max_length=100)],
) -> FileResponse:
    return _file(name, folder)
