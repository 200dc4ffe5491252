"""The authorization matrix: every route × every role × a resource in the caller's scope ("own")
and one outside it ("foreign"), against the SPEC.md security model.

Answers: "ok" (2xx/3xx); 401 without credentials; 403 where the caller may know the resource
(or the role may not use the route at all, which reveals nothing about any resource); 404 for a
resource the caller may not know exists. A route the app serves without an entry here fails
`test_every_route_has_an_entry`, so a new route cannot ship unreviewed.

"Own" per role: admin — everything; district officer (渝中区) — institution T1; supervisor —
sitting OWN-1 (assigned now); institution — T1; camera host — camera T1-S1-R1-F. "Foreign" is
institution T2 in 江北区 (sitting FAR-1, cameras T2-C1/T2-C2).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.access.people import assign
from services.access.scopes import Subject
from services.access.tokens import create_token
from services.context import Services
from services.demo.footage import classroom_scene, write_recording
from services.evidence.findings import FindingCategory, FindingDraft, record_finding, set_review
from services.health.sampling import encode_jpeg
from services.retention.holds import HoldRequest, place_hold
from storage.models import Segment, Sitting, User
from tests.api.conftest import (
    FOREIGN_CAMERAS,
    PASSWORD,
    START,
    assign_now,
    ingest_file,
    login,
    make_user,
    sitting_row,
)
from tests.conftest import CAMERA_FRONT, REGISTRY, ROOM

ROLES = ("anonymous", "admin", "district_officer", "supervisor", "institution", "camera_host")
OK = "ok"
Expected = str | int
Request = tuple[str, str, dict[str, Any]]
OWN_SITTING, FOREIGN_SITTING = "OWN-1", "FAR-1"
OWN_CAMERA, FOREIGN_CAMERA = CAMERA_FRONT, FOREIGN_CAMERAS[0]
PERSON = {"district_officer": "m-wang", "supervisor": "m-zhang", "institution": "m-jigou"}


@dataclass
class Ctx:
    client: TestClient
    services: Services
    videos: Path
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    supervisor_id: int | None = None
    counter: Iterator[int] = field(default_factory=itertools.count)

    def fresh(self, stem: str) -> str:
        return f"{stem}-{next(self.counter)}"

    def sitting(self, which: str) -> str:
        return OWN_SITTING if which == "own" else FOREIGN_SITTING

    def camera(self, which: str) -> str:
        return OWN_CAMERA if which == "own" else FOREIGN_CAMERA

    def subject_actor(self, role: str) -> str:
        return "admin:centre" if role == "admin" else f"{role}:{PERSON.get(role, '?')}"


Build = Callable[[Ctx, str, str], Request]


@dataclass(frozen=True)
class Rule:
    build: Build
    expect: Mapping[str, tuple[Expected, Expected]]


def _expect(
    **answers: Expected | tuple[Expected, Expected],
) -> dict[str, tuple[Expected, Expected]]:
    """Per role (own, foreign); a single value means the same for both."""
    table: dict[str, tuple[Expected, Expected]] = {}
    for role in ROLES:
        answer = answers[role]
        table[role] = answer if isinstance(answer, tuple) else (answer, answer)
    return table


def _public() -> dict[str, tuple[Expected, Expected]]:
    return _expect(**dict.fromkeys(ROLES, OK))


def _admin_only() -> dict[str, tuple[Expected, Expected]]:
    return _expect(
        anonymous=401,
        admin=OK,
        district_officer=403,
        supervisor=403,
        institution=403,
        camera_host=403,
    )


def _everyone_but_hosts() -> dict[str, tuple[Expected, Expected]]:
    return _expect(
        anonymous=401,
        admin=OK,
        district_officer=OK,
        supervisor=OK,
        institution=OK,
        camera_host=403,
    )


def _sitting_readers(institution: Expected = OK) -> dict[str, tuple[Expected, Expected]]:
    return _expect(
        anonymous=401,
        admin=OK,
        district_officer=(OK, 404),
        supervisor=(OK, 404),
        institution=(institution, 404),
        camera_host=403,
    )


def _footage_readers() -> dict[str, tuple[Expected, Expected]]:
    return _sitting_readers(institution=403)


def _finding_authors() -> dict[str, tuple[Expected, Expected]]:
    return _expect(
        anonymous=401,
        admin=OK,
        district_officer=(403, 404),
        supervisor=(OK, 404),
        institution=(403, 404),
        camera_host=403,
    )


def _review_closers() -> dict[str, tuple[Expected, Expected]]:
    return _expect(
        anonymous=401,
        admin=OK,
        district_officer=(403, 404),
        supervisor=(403, 404),
        institution=(403, 404),
        camera_host=403,
    )


def _get(url: str) -> Build:
    return lambda ctx, role, which: ("GET", url, {})


def _jpeg() -> bytes:
    picture = np.full((120, 160), 128, dtype=np.uint8)
    return encode_jpeg(picture)


def _video(ctx: Ctx, start: datetime) -> Path:
    path = ctx.videos / f"{start:%Y%m%dT%H%M%S}Z.mp4"
    return write_recording(
        path, seconds=2.0, fps=5, width=160, height=120, scene=classroom_scene(160, 120, seed=3)
    )


def _push(ctx: Ctx, role: str, which: str) -> Request:
    start = START + timedelta(hours=3, seconds=10 * next(ctx.counter))
    path = _video(ctx, start)
    return (
        "PUT",
        f"/api/v1/ingest/{ctx.camera(which)}/{path.name}",
        {"content": path.read_bytes()},
    )


def _upload_status(ctx: Ctx, role: str, which: str) -> Request:
    """A staged upload waiting for a worker: "own" pushed by the camera host for its camera,
    "foreign" by another host for a foreign camera. Its status URL answers 202 to its own."""
    upload_id = f"{next(ctx.counter):032x}"
    incoming = ctx.services.settings.incoming_dir
    incoming.mkdir(parents=True, exist_ok=True)
    # The matrix's camera host token is named m-host (the fixture below).
    actor = "camera_host:m-host" if which == "own" else "camera_host:elsewhere"
    sidecar = {"camera": ctx.camera(which), "actor": actor, "sha256": "0" * 64}
    (incoming / f"{upload_id}.json").write_text(json.dumps(sidecar), encoding="utf-8")
    (incoming / f"{upload_id}.bin").write_bytes(b"waiting for a worker")
    return ("GET", f"/api/v1/uploads/{upload_id}", {})


def _finding_by(ctx: Ctx, role: str, which: str) -> int:
    """A finding on the sitting, authored by the caller if a supervisor, else by the centre."""
    author = (
        Subject(name=PERSON["supervisor"], role="supervisor", user_id=ctx.supervisor_id)
        if role == "supervisor"
        else Subject(name="centre", role="admin")
    )
    draft = FindingDraft(
        camera=ctx.camera(which),
        category=FindingCategory.other,
        observed_from=START + timedelta(minutes=5),
        observed_until=None,
        text="matrix",
    )

    def work(session: Session) -> int:
        sitting = session.scalars(select(Sitting).where(Sitting.code == ctx.sitting(which))).one()
        return record_finding(session, sitting, draft, author, ctx.services.settings).id

    return ctx.services.db.run_write(work)


def _finding_body(ctx: Ctx, which: str) -> dict[str, Any]:
    return {
        "camera": ctx.camera(which),
        "category": "camera_blocked",
        "observed_from": (START + timedelta(minutes=7)).isoformat(),
        "text": "镜头被遮挡",
    }


def _set_review(ctx: Ctx, code: str, closed: bool) -> None:
    def work(session: Session) -> None:
        sitting = session.scalars(select(Sitting).where(Sitting.code == code)).one()
        if (sitting.review_closed_at is not None) != closed:
            set_review(session, sitting, closed=closed, actor="test", reason="matrix")

    ctx.services.db.run_write(work)


def _review(action: str) -> Build:
    def build(ctx: Ctx, role: str, which: str) -> Request:
        code = "OWN-2" if which == "own" and role == "admin" else ctx.sitting(which)
        _set_review(ctx, code, closed=action == "reopen")
        return ("POST", f"/api/v1/sittings/{code}/review/{action}", {"json": {"reason": "m"}})

    return build


def _hold(ctx: Ctx, which: str) -> int:
    request = HoldRequest(reason="matrix", sitting_code=ctx.sitting(which))
    return ctx.services.db.run_write(
        lambda s: place_hold(s, ctx.services.store, ctx.services.settings, request, actor="test").id
    )


def _new_user(ctx: Ctx) -> str:
    name = ctx.fresh("m-user")
    make_user(ctx.services, name, "supervisor")
    return name


def _assignment(ctx: Ctx, which: str) -> int:
    name = _new_user(ctx)
    now = datetime.now(UTC)
    return ctx.services.db.run_write(
        lambda s: (
            assign(
                s,
                user_name=name,
                sitting_code=ctx.sitting(which),
                valid_from=now,
                valid_until=now + timedelta(hours=1),
                actor="test",
            ).id
        )
    )


def _token(ctx: Ctx) -> int:
    row, _ = ctx.services.db.run_write(
        lambda s: create_token(s, role="admin", name=ctx.fresh("m-token"), actor="test")
    )
    return row.id


def _logout(ctx: Ctx, role: str, which: str) -> Request:
    """Log out a fresh session of the role, so the role's main credentials stay valid."""
    if role == "anonymous":
        return ("POST", "/api/v1/auth/logout", {})
    if role in PERSON:
        headers = login(ctx.client, PERSON[role])
    else:
        cameras = [OWN_CAMERA] if role == "camera_host" else None
        _, secret = ctx.services.db.run_write(
            lambda s: create_token(
                s, role=role, name=ctx.fresh("m-logout"), cameras=cameras, actor="test"
            )
        )
        headers = {"Authorization": f"Bearer {secret}"}
    return ("POST", "/api/v1/auth/logout", {"headers": headers})


def _new_sitting(ctx: Ctx) -> dict[str, str]:
    number = next(ctx.counter)
    return sitting_row(f"NEW-{number}", ROOM, START + timedelta(days=10 + number))


def _segment(ctx: Ctx, which: str) -> int:
    return ctx.segments[which]


MATRIX: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): Rule(_get("/healthz"), _public()),
    ("GET", "/readyz"): Rule(_get("/readyz"), _public()),
    # Off without EXAMVAULT_METRICS_TOKEN, and no person's or host's token ever opens it
    # (the scraper's token: tests/api/test_metrics_and_docs.py).
    ("GET", "/metrics"): Rule(_get("/metrics"), _expect(**dict.fromkeys(ROLES, 404))),
    ("PUT", "/api/v1/ingest/{camera_code}/{file_name}"): Rule(
        _push,
        _expect(
            anonymous=401,
            admin=OK,
            district_officer=403,
            supervisor=403,
            institution=403,
            camera_host=(OK, 403),
        ),
    ),
    ("GET", "/api/v1/uploads/{upload_id}"): Rule(
        _upload_status,
        _expect(
            anonymous=401,
            admin=OK,
            district_officer=403,
            supervisor=403,
            institution=403,
            camera_host=(OK, 404),
        ),
    ),
    ("GET", "/api/v1/sittings"): Rule(_get("/api/v1/sittings"), _everyone_but_hosts()),
    ("GET", "/api/v1/sitting-choices"): Rule(
        _get("/api/v1/sitting-choices"), _everyone_but_hosts()
    ),
    ("PUT", "/api/v1/sittings"): Rule(
        lambda ctx, role, which: (
            "PUT",
            "/api/v1/sittings",
            {"json": {"sittings": [_new_sitting(ctx)]}},
        ),
        _admin_only(),
    ),
    ("GET", "/api/v1/sittings/{code}"): Rule(
        lambda ctx, role, which: ("GET", f"/api/v1/sittings/{ctx.sitting(which)}", {}),
        _sitting_readers(),
    ),
    ("GET", "/api/v1/sittings/{code}/coverage"): Rule(
        lambda ctx, role, which: ("GET", f"/api/v1/sittings/{ctx.sitting(which)}/coverage", {}),
        _sitting_readers(),
    ),
    ("PUT", "/api/v1/cameras/{code}/reference"): Rule(
        lambda ctx, role, which: (
            "PUT",
            f"/api/v1/cameras/{ctx.camera(which)}/reference",
            {"content": _jpeg(), "headers": {"Content-Type": "image/jpeg"}},
        ),
        _admin_only(),
    ),
    ("GET", "/api/v1/cameras/{code}/reference"): Rule(
        lambda ctx, role, which: ("GET", f"/api/v1/cameras/{ctx.camera(which)}/reference", {}),
        _admin_only(),
    ),
    ("POST", "/api/v1/cameras/{code}/reference/from-footage"): Rule(
        lambda ctx, role, which: (
            "POST",
            f"/api/v1/cameras/{ctx.camera(which)}/reference/from-footage",
            {"json": {"at": (START + timedelta(minutes=5, seconds=1)).isoformat()}},
        ),
        _admin_only(),
    ),
    ("GET", "/api/v1/holds"): Rule(
        _get("/api/v1/holds"),
        _expect(
            anonymous=401,
            admin=OK,
            district_officer=OK,
            supervisor=403,
            institution=403,
            camera_host=403,
        ),
    ),
    ("POST", "/api/v1/holds"): Rule(
        lambda ctx, role, which: (
            "POST",
            "/api/v1/holds",
            {"json": {"reason": "matrix", "sitting": ctx.sitting(which)}},
        ),
        _expect(
            anonymous=401,
            admin=OK,
            district_officer=(OK, 404),
            supervisor=403,
            institution=403,
            camera_host=403,
        ),
    ),
    ("POST", "/api/v1/holds/{hold_id}/release"): Rule(
        lambda ctx, role, which: (
            "POST",
            f"/api/v1/holds/{_hold(ctx, which)}/release",
            {"json": {"reason": "matrix"}},
        ),
        _admin_only(),
    ),
    ("GET", "/api/v1/ledger/key"): Rule(_get("/api/v1/ledger/key"), _everyone_but_hosts()),
    ("GET", "/api/v1/ledger/checkpoint"): Rule(
        _get("/api/v1/ledger/checkpoint"), _everyone_but_hosts()
    ),
    ("GET", "/api/v1/ledger/proof/inclusion"): Rule(
        _get("/api/v1/ledger/proof/inclusion?seq=1"), _everyone_but_hosts()
    ),
    ("GET", "/api/v1/ledger/proof/consistency"): Rule(
        _get("/api/v1/ledger/proof/consistency?old=1"), _everyone_but_hosts()
    ),
    ("GET", "/api/v1/ledger/entries"): Rule(_get("/api/v1/ledger/entries"), _admin_only()),
    ("POST", "/api/v1/auth/token"): Rule(
        lambda ctx, role, which: (
            "POST",
            "/api/v1/auth/token",
            {"data": {"username": PERSON["supervisor"], "password": PASSWORD}},
        ),
        _public(),
    ),
    ("POST", "/api/v1/auth/logout"): Rule(
        _logout,
        _expect(
            anonymous=401,
            admin=OK,
            district_officer=OK,
            supervisor=OK,
            institution=OK,
            camera_host=OK,
        ),
    ),
    ("GET", "/api/v1/me"): Rule(
        _get("/api/v1/me"),
        _expect(
            anonymous=401,
            admin=OK,
            district_officer=OK,
            supervisor=OK,
            institution=OK,
            camera_host=OK,
        ),
    ),
    ("GET", "/api/v1/users"): Rule(_get("/api/v1/users"), _admin_only()),
    ("POST", "/api/v1/users"): Rule(
        lambda ctx, role, which: (
            "POST",
            "/api/v1/users",
            {"json": {"name": ctx.fresh("m-new"), "role": "supervisor", "password": PASSWORD}},
        ),
        _admin_only(),
    ),
    ("POST", "/api/v1/users/{name}/disable"): Rule(
        lambda ctx, role, which: (
            "POST",
            f"/api/v1/users/{_new_user(ctx)}/disable",
            {"json": {"reason": "matrix"}},
        ),
        _admin_only(),
    ),
    ("POST", "/api/v1/users/{name}/password"): Rule(
        lambda ctx, role, which: ("POST", f"/api/v1/users/{_new_user(ctx)}/password", {}),
        _admin_only(),
    ),
    ("POST", "/api/v1/imports/registry"): Rule(
        lambda ctx, role, which: (
            "POST",
            "/api/v1/imports/registry?dry_run=true",
            {"content": json.dumps(REGISTRY).encode("utf-8")},
        ),
        _admin_only(),
    ),
    ("POST", "/api/v1/imports/schedule"): Rule(
        lambda ctx, role, which: (
            "POST",
            "/api/v1/imports/schedule?dry_run=true",
            {"content": b"sitting_code,room_code,kind,occupation,level,starts_at,ends_at\n"},
        ),
        _admin_only(),
    ),
    ("GET", "/api/v1/assignments"): Rule(_get("/api/v1/assignments"), _admin_only()),
    ("POST", "/api/v1/assignments"): Rule(
        lambda ctx, role, which: (
            "POST",
            "/api/v1/assignments",
            {
                "json": {
                    "user": _new_user(ctx),
                    "sitting": ctx.sitting(which),
                    "valid_from": datetime.now(UTC).isoformat(),
                    "valid_until": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                }
            },
        ),
        _admin_only(),
    ),
    ("POST", "/api/v1/assignments/{assignment_id}/revoke"): Rule(
        lambda ctx, role, which: (
            "POST",
            f"/api/v1/assignments/{_assignment(ctx, which)}/revoke",
            {"json": {"reason": "matrix"}},
        ),
        _admin_only(),
    ),
    ("GET", "/api/v1/tokens"): Rule(_get("/api/v1/tokens"), _admin_only()),
    ("POST", "/api/v1/tokens"): Rule(
        lambda ctx, role, which: (
            "POST",
            "/api/v1/tokens",
            {
                "json": {
                    "name": ctx.fresh("m-host"),
                    "role": "camera_host",
                    "cameras": [ctx.camera(which)],
                }
            },
        ),
        _admin_only(),
    ),
    ("POST", "/api/v1/tokens/{token_id}/revoke"): Rule(
        lambda ctx, role, which: (
            "POST",
            f"/api/v1/tokens/{_token(ctx)}/revoke",
            {"json": {"reason": "matrix"}},
        ),
        _admin_only(),
    ),
    # Across sittings: the centre and district officers (a foreign sitting narrows to nothing,
    # tests/api/test_player.py checks the rows); supervisors read per sitting only.
    # The centre's records (retention plan, purge runs, tombstones, camera hosts, ledger status
    # and bounded checks): the centre only; a host reports its own backlog and nothing else.
    ("GET", "/api/v1/retention/plan"): Rule(
        _get("/api/v1/retention/plan?date=2029-11-21"), _admin_only()
    ),
    ("GET", "/api/v1/retention/runs"): Rule(_get("/api/v1/retention/runs"), _admin_only()),
    ("GET", "/api/v1/retention/tombstones"): Rule(
        _get("/api/v1/retention/tombstones"), _admin_only()
    ),
    ("GET", "/api/v1/machines"): Rule(_get("/api/v1/machines"), _admin_only()),
    ("PUT", "/api/v1/hosts/report"): Rule(
        lambda ctx, role, which: (
            "PUT",
            "/api/v1/hosts/report",
            {"json": {"backlog_files": 1, "backlog_bytes": 10}},
        ),
        _expect(
            anonymous=401,
            admin=403,
            district_officer=403,
            supervisor=403,
            institution=403,
            camera_host=OK,
        ),
    ),
    ("GET", "/api/v1/ledger/status"): Rule(_get("/api/v1/ledger/status"), _admin_only()),
    ("POST", "/api/v1/ledger/checks"): Rule(
        lambda ctx, role, which: ("POST", "/api/v1/ledger/checks", {"json": {"entries": 10}}),
        _admin_only(),
    ),
    ("GET", "/api/v1/findings"): Rule(
        lambda ctx, role, which: ("GET", f"/api/v1/findings?sitting={ctx.sitting(which)}", {}),
        _expect(
            anonymous=401,
            admin=OK,
            district_officer=OK,
            supervisor=403,
            institution=403,
            camera_host=403,
        ),
    ),
    ("GET", "/api/v1/sittings/{code}/findings"): Rule(
        lambda ctx, role, which: ("GET", f"/api/v1/sittings/{ctx.sitting(which)}/findings", {}),
        _footage_readers(),
    ),
    ("POST", "/api/v1/sittings/{code}/findings"): Rule(
        lambda ctx, role, which: (
            "POST",
            f"/api/v1/sittings/{ctx.sitting(which)}/findings",
            {"json": _finding_body(ctx, which)},
        ),
        _finding_authors(),
    ),
    ("PUT", "/api/v1/sittings/{code}/findings/{finding_id}"): Rule(
        lambda ctx, role, which: (
            "PUT",
            f"/api/v1/sittings/{ctx.sitting(which)}/findings/{_finding_by(ctx, role, which)}",
            {"json": _finding_body(ctx, which)},
        ),
        _finding_authors(),
    ),
    ("POST", "/api/v1/sittings/{code}/findings/{finding_id}/withdraw"): Rule(
        lambda ctx, role, which: (
            "POST",
            f"/api/v1/sittings/{ctx.sitting(which)}/findings/"
            f"{_finding_by(ctx, role, which)}/withdraw",
            {"json": {"reason": "matrix"}},
        ),
        _finding_authors(),
    ),
    ("GET", "/api/v1/sittings/{code}/exports/download"): Rule(
        lambda ctx, role, which: (
            "GET",
            f"/api/v1/sittings/{ctx.sitting(which)}/exports/download",
            {"params": {"reason": "matrix"}},
        ),
        _footage_readers(),
    ),
    ("POST", "/api/v1/sittings/{code}/exports"): Rule(
        lambda ctx, role, which: (
            "POST",
            f"/api/v1/sittings/{ctx.sitting(which)}/exports",
            {"json": {"reason": "matrix"}},
        ),
        _footage_readers(),
    ),
    ("GET", "/api/v1/sittings/{code}/segments"): Rule(
        lambda ctx, role, which: ("GET", f"/api/v1/sittings/{ctx.sitting(which)}/segments", {}),
        _sitting_readers(),  # metadata, not footage: institutions may list their own
    ),
    ("GET", "/api/v1/segments/{segment_id}/content"): Rule(
        lambda ctx, role, which: (
            "GET",
            f"/api/v1/segments/{_segment(ctx, which)}/content",
            {"headers": {"Range": "bytes=0-99"}},
        ),
        _footage_readers(),
    ),
    ("GET", "/api/v1/cameras/{code}/playback"): Rule(
        lambda ctx, role, which: (
            "GET",
            f"/api/v1/cameras/{ctx.camera(which)}/playback",
            {
                "params": {
                    "start": (START + timedelta(minutes=5)).isoformat(),
                    "end": (START + timedelta(minutes=5, seconds=2)).isoformat(),
                }
            },
        ),
        _footage_readers(),
    ),
    ("GET", "/api/v1/sittings/{code}/playback"): Rule(
        lambda ctx, role, which: (
            "GET",
            f"/api/v1/sittings/{ctx.sitting(which)}/playback",
            {"params": {"camera": ctx.camera(which), "format": "json"}},
        ),
        _footage_readers(),
    ),
    ("GET", "/api/v1/sittings/{code}/cameras/{camera}/thumbnails"): Rule(
        lambda ctx, role, which: (
            "GET",
            f"/api/v1/sittings/{ctx.sitting(which)}/cameras/{ctx.camera(which)}/thumbnails",
            {"params": {"every": 600}},
        ),
        _footage_readers(),
    ),
    ("POST", "/api/v1/footage/links"): Rule(
        lambda ctx, role, which: (
            "POST",
            "/api/v1/footage/links",
            {"json": {"url": f"/api/v1/segments/{_segment(ctx, which)}/content"}},
        ),
        # Minting grants nothing: the footage route checks scope when the link is opened.
        _everyone_but_hosts(),
    ),
    # Last: closing a review makes the sitting's findings final for the rest of the walk.
    ("POST", "/api/v1/sittings/{code}/review/close"): Rule(_review("close"), _review_closers()),
    ("POST", "/api/v1/sittings/{code}/review/reopen"): Rule(_review("reopen"), _review_closers()),
}


def _served_routes(client: TestClient) -> set[tuple[str, str]]:
    paths = client.get("/openapi.json").json()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


@pytest.fixture
def ctx(world: tuple[TestClient, Services], admin_token: str, tmp_path: Path) -> Ctx:
    client, services = world
    videos = tmp_path / "matrix-videos"
    videos.mkdir()
    context = Ctx(client, services, videos)
    context.headers["anonymous"] = {}
    context.headers["admin"] = {"Authorization": f"Bearer {admin_token}"}
    make_user(services, PERSON["district_officer"], "district_officer", district="渝中区")
    make_user(services, PERSON["supervisor"], "supervisor")
    make_user(services, PERSON["institution"], "institution", institution_code="T1")
    assign_now(services, PERSON["supervisor"], OWN_SITTING, hours=2)
    for role, name in PERSON.items():
        context.headers[role] = login(client, name)
    with services.db.read() as session:
        context.supervisor_id = session.scalar(
            select(User.id).where(User.name == PERSON["supervisor"])
        )
    _, host = services.db.run_write(
        lambda s: create_token(
            s, role="camera_host", name="m-host", cameras=[OWN_CAMERA], actor="t"
        )
    )
    context.headers["camera_host"] = {"Authorization": f"Bearer {host}"}
    for which, camera in (("own", OWN_CAMERA), ("foreign", FOREIGN_CAMERA)):
        path = _video(context, START + timedelta(minutes=5))
        ingest_file(services, camera, path)
        with services.db.read() as session:
            context.segments[which] = session.scalars(
                select(Segment.id).order_by(Segment.id.desc())
            ).first()
    return context


def test_every_route_has_an_entry(world: tuple[TestClient, Services]) -> None:
    client, _ = world
    served = _served_routes(client)
    assert sorted(served - set(MATRIX)) == [], "routes without an authorization entry"
    assert sorted(set(MATRIX) - served) == [], "entries for routes the app does not serve"


def _verdict(status: int) -> Expected:
    return OK if 200 <= status < 400 else status


@pytest.mark.slow
def test_authorization_matrix(ctx: Ctx) -> None:
    wrong: list[str] = []
    for (method, path), rule in MATRIX.items():
        for role in ROLES:
            for index, which in enumerate(("own", "foreign")):
                verb, url, options = rule.build(ctx, role, which)
                assert verb == method
                headers = {**ctx.headers[role], **options.pop("headers", {})}
                if role == "anonymous":
                    headers.pop("Authorization", None)
                response = ctx.client.request(verb, url, headers=headers, **options)
                got, want = _verdict(response.status_code), rule.expect[role][index]
                if got != want:
                    wrong.append(
                        f"{method} {path} as {role} ({which}): want {want}, got {got} "
                        f"{response.text[:160]}"
                    )
                elif got != OK:
                    assert response.json()["code"], f"{method} {path}: error without a code"
    assert wrong == [], "\n".join(wrong)


def test_denials_say_why_in_both_languages(ctx: Ctx) -> None:
    refused = ctx.client.get("/api/v1/users", headers=ctx.headers["supervisor"])
    body = refused.json()
    assert refused.status_code == 403 and body["code"] == "forbidden"
    assert body["message"] and body["message_zh"] != body["message"]
    hidden = ctx.client.get(
        f"/api/v1/sittings/{FOREIGN_SITTING}", headers=ctx.headers["supervisor"]
    )
    missing = ctx.client.get("/api/v1/sittings/NO-SUCH", headers=ctx.headers["supervisor"])
    # A foreign sitting and a non-existent one are indistinguishable.
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["code"] == missing.json()["code"]
