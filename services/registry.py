"""The registry: institutions, sites, rooms and cameras, imported from the JSON of SPEC.md.

An import is checked whole before anything is written; one error names the field at fault
(`institutions[0].sites[0].rooms[1].cameras[0].code`) and nothing is stored. A second import
updates by code. A camera that disappears from its room is retired, not deleted, so the
sittings it filmed keep requiring it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.exchange import (
    MAX_PROBLEMS,
    JsonLines,
    Problem,
    has_control_characters,
    parse_json_with_lines,
    quoted,
    summary_text,
)
from storage import ledger
from storage.models import Camera, Institution, Room, Site

CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ROOM_KINDS = ("theory", "practical")
MIN_CAMERAS_PER_ROOM = 2


class RegistryError(ValueError):
    """A registry file that is refused whole; the message names the line or field, and
    `problems` lists every problem found (each with its line and field)."""

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems = problems
        super().__init__(summary_text(problems))


KINDS = ("institution", "site", "room", "camera")


def _by_kind() -> dict[str, list[str]]:
    return {kind: [] for kind in KINDS}


@dataclass
class ImportSummary:
    institutions: int = 0
    sites: int = 0
    rooms: int = 0
    cameras: int = 0
    retired_cameras: list[str] = field(default_factory=list)
    # Codes per kind (institution, site, room, camera) by what the import did, or in a
    # preview would do, to them.
    created: dict[str, list[str]] = field(default_factory=_by_kind)
    updated: dict[str, list[str]] = field(default_factory=_by_kind)
    unchanged: dict[str, list[str]] = field(default_factory=_by_kind)


def parse_registry(text: str) -> dict[str, Any]:
    """The document, or RegistryError listing every problem (each with its line and field)."""
    try:
        document, lines = parse_json_with_lines(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(
            [
                Problem(
                    f"line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})",
                    line=exc.lineno,
                    detail=f"not valid JSON (column {exc.colno}: {exc.msg})",
                )
            ]
        ) from exc
    except RecursionError as exc:
        raise RegistryError(
            [Problem("the JSON is nested too deeply", detail="the JSON is nested too deeply")]
        ) from exc
    except ValueError as exc:
        # Not JSONDecodeError (caught above): Python's own bound on a number's digits (4,300),
        # which json.loads hits after the syntax was fine. No registry field is a number.
        detail = f"a number in the JSON is too long to read ({exc})"
        raise RegistryError([Problem(detail, detail=detail)]) from exc
    problems = _Problems(lines)
    _validate(document, problems)
    if problems.found:
        raise RegistryError(problems.found)
    return document


class _Problems:
    """Collects problems with the line of the member they concern."""

    def __init__(self, lines: JsonLines) -> None:
        self.lines = lines
        self.found: list[Problem] = []

    def add(self, where: str, message: str, container: object, member: object = None) -> None:
        if len(self.found) >= MAX_PROBLEMS:
            return
        line = self.lines.of(container, member)
        prefix = f"line {line}, " if line is not None else ""
        self.found.append(
            Problem(f"{prefix}{where}: {message}", line=line, field=where, detail=message)
        )


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)[:80]


def _text(node: dict[str, Any], key: str, where: str, problems: _Problems) -> str | None:
    if key not in node:
        problems.add(f"{where}.{key}", "missing", node)
        return None
    value = node[key]
    if not _is(value, str):
        problems.add(f"{where}.{key}", f"expected a string, found {_shown(value)}", node, key)
        return None
    if not value.strip():
        problems.add(f"{where}.{key}", "must not be empty", node, key)
        return None
    if has_control_characters(value):
        problems.add(f"{where}.{key}", "must not contain control characters", node, key)
        return None
    return value


def _code(node: dict[str, Any], where: str, seen: dict[str, str], problems: _Problems) -> None:
    code = _text(node, "code", where, problems)
    if code is None:
        return
    if not CODE.match(code):
        problems.add(
            f"{where}.code",
            f"{quoted(code)} must be 1-64 letters, digits, '_', '.' or '-'",
            node,
            "code",
        )
    elif code in seen:
        problems.add(
            f"{where}.code",
            f"{code!r} appears twice in the file (first at {seen[code]})",
            node,
            "code",
        )
    else:
        seen[code] = where


def _list(node: dict[str, Any], key: str, where: str, problems: _Problems) -> list[Any]:
    if key not in node:
        problems.add(f"{where}.{key}", "missing", node)
        return []
    value = node[key]
    if not _is(value, list):
        problems.add(f"{where}.{key}", f"expected a list, found {_shown(value)}", node, key)
        return []
    return list(value)


def _object(value: Any, where: str, parent: object, index: int, problems: _Problems) -> bool:
    if _is(value, dict):
        return True
    problems.add(where, f"expected an object, found {_shown(value)}", parent, index)
    return False


def _validate(document: Any, problems: _Problems) -> None:
    if not _is(document, dict):
        problems.add("(top level)", 'expected an object with "institutions"', document)
        return
    seen: dict[str, dict[str, str]] = {
        "institution": {},
        "site": {},
        "room": {},
        "camera": {},
    }
    institutions = _list(document, "institutions", "(top level)", problems)
    for i, inst in enumerate(institutions):
        where = f"institutions[{i}]"
        if not _object(inst, where, document["institutions"], i, problems):
            continue
        _code(inst, where, seen["institution"], problems)
        _text(inst, "name", where, problems)
        _text(inst, "district", where, problems)
        if inst.get("filing_expires") is not None:
            expires = _text(inst, "filing_expires", where, problems)
            try:
                if expires is not None:
                    date.fromisoformat(expires)
            except ValueError:
                problems.add(
                    f"{where}.filing_expires", "not a YYYY-MM-DD date", inst, "filing_expires"
                )
        for s, site in enumerate(_list(inst, "sites", where, problems)):
            site_where = f"{where}.sites[{s}]"
            if not _object(site, site_where, inst["sites"], s, problems):
                continue
            _code(site, site_where, seen["site"], problems)
            _text(site, "address", site_where, problems)
            for r, room in enumerate(_list(site, "rooms", site_where, problems)):
                room_where = f"{site_where}.rooms[{r}]"
                if not _object(room, room_where, site["rooms"], r, problems):
                    continue
                _code(room, room_where, seen["room"], problems)
                if room.get("kind") not in ROOM_KINDS:
                    problems.add(
                        f"{room_where}.kind", "must be 'theory' or 'practical'", room, "kind"
                    )
                if room.get("name") is not None:
                    name = _text(room, "name", room_where, problems)
                    if name is not None and len(name) > 200:
                        problems.add(f"{room_where}.name", "at most 200 characters", room, "name")
                cameras = _list(room, "cameras", room_where, problems)
                if (
                    "cameras" in room
                    and _is(room["cameras"], list)
                    and (len(cameras) < MIN_CAMERAS_PER_ROOM)
                ):
                    problems.add(
                        f"{room_where}.cameras",
                        f"a room needs at least {MIN_CAMERAS_PER_ROOM} cameras (front and "
                        f"back), found {len(cameras)}",
                        room,
                        "cameras",
                    )
                for c, camera in enumerate(cameras):
                    camera_where = f"{room_where}.cameras[{c}]"
                    if not _object(camera, camera_where, room["cameras"], c, problems):
                        continue
                    _code(camera, camera_where, seen["camera"], problems)
                    _text(camera, "position", camera_where, problems)


def _plan(session: Session, document: dict[str, Any]) -> ImportSummary:
    """What importing `document` does to each code, read from the database without writing:
    the preview the centre confirms, and the summary the import answers."""
    institutions = {row.code: row for row in session.scalars(select(Institution))}
    sites = {row.code: row for row in session.scalars(select(Site))}
    rooms = {row.code: row for row in session.scalars(select(Room))}
    cameras = {row.code: row for row in session.scalars(select(Camera))}
    institution_code = {row.id: code for code, row in institutions.items()}
    site_code = {row.id: code for code, row in sites.items()}
    room_code = {row.id: code for code, row in rooms.items()}
    cameras_in: dict[int, list[Camera]] = {}
    for camera_row in cameras.values():
        cameras_in.setdefault(camera_row.room_id, []).append(camera_row)
    summary = ImportSummary()

    def judge(kind: str, code: str, row: Any, now: dict[str, Any], then: dict[str, Any]) -> None:
        if row is None:
            summary.created[kind].append(code)
        elif now != then:
            summary.updated[kind].append(code)
        else:
            summary.unchanged[kind].append(code)

    for inst in document["institutions"]:
        expires = inst.get("filing_expires")
        row = institutions.get(inst["code"])
        judge(
            "institution",
            inst["code"],
            row,
            {
                "name": inst["name"],
                "district": inst["district"],
                "filing_expires": date.fromisoformat(expires) if expires else None,
            },
            {"name": row.name, "district": row.district, "filing_expires": row.filing_expires}
            if row
            else {},
        )
        summary.institutions += 1
        for site_doc in inst["sites"]:
            site = sites.get(site_doc["code"])
            judge(
                "site",
                site_doc["code"],
                site,
                {"institution": inst["code"], "address": site_doc["address"]},
                {"institution": institution_code.get(site.institution_id), "address": site.address}
                if site
                else {},
            )
            summary.sites += 1
            for room_doc in site_doc["rooms"]:
                room = rooms.get(room_doc["code"])
                judge(
                    "room",
                    room_doc["code"],
                    room,
                    {"site": site_doc["code"], "kind": room_doc["kind"]},
                    {"site": site_code.get(room.site_id), "kind": room.kind} if room else {},
                )
                summary.rooms += 1
                listed = {camera["code"] for camera in room_doc["cameras"]}
                for camera_doc in room_doc["cameras"]:
                    camera = cameras.get(camera_doc["code"])
                    judge(
                        "camera",
                        camera_doc["code"],
                        camera,
                        {"room": room_doc["code"], "position": camera_doc["position"], "on": True},
                        {
                            "room": room_code.get(camera.room_id),
                            "position": camera.position,
                            "on": camera.retired_at is None,
                        }
                        if camera
                        else {},
                    )
                    summary.cameras += 1
                if room is not None:
                    summary.retired_cameras.extend(
                        camera.code
                        for camera in cameras_in.get(room.id, [])
                        if camera.code not in listed and camera.retired_at is None
                    )
    return summary


def preview_registry(session: Session, text: str) -> ImportSummary:
    """Every problem of the file (RegistryError), or what importing it would do; writes
    nothing."""
    return _plan(session, parse_registry(text))


def _upsert(session: Session, model: type[Any], code: str, **values: Any) -> tuple[Any, bool]:
    row = session.scalar(select(model).where(model.code == code))
    created = row is None
    if row is None:
        row = model(code=code, **values)
        session.add(row)
    else:
        for key, value in values.items():
            setattr(row, key, value)
    session.flush()
    return row, created


def import_registry(
    session: Session, text: str, *, actor: str, now: datetime | None = None
) -> ImportSummary:
    """Validate the whole file, then upsert it inside the caller's transaction."""
    document = parse_registry(text)
    now = now or datetime.now(UTC)
    summary = _plan(session, document)
    summary.institutions = summary.sites = summary.rooms = summary.cameras = 0
    summary.retired_cameras = []
    for inst in document["institutions"]:
        expires = inst.get("filing_expires")
        institution, _ = _upsert(
            session,
            Institution,
            inst["code"],
            name=inst["name"],
            district=inst["district"],
            filing_expires=date.fromisoformat(expires) if expires else None,
        )
        summary.institutions += 1
        for site_doc in inst["sites"]:
            site, _ = _upsert(
                session,
                Site,
                site_doc["code"],
                institution_id=institution.id,
                address=site_doc["address"],
            )
            summary.sites += 1
            for room_doc in site_doc["rooms"]:
                room, room_is_new = _upsert(
                    session,
                    Room,
                    room_doc["code"],
                    site_id=site.id,
                    kind=room_doc["kind"],
                    name=room_doc.get("name"),
                )
                summary.rooms += 1
                listed = {camera["code"] for camera in room_doc["cameras"]}
                for camera_doc in room_doc["cameras"]:
                    camera, created = _upsert(
                        session,
                        Camera,
                        camera_doc["code"],
                        room_id=room.id,
                        position=camera_doc["position"],
                    )
                    # A room's first cameras are taken as there all along; a camera added to an
                    # existing room starts now, so older sittings do not require it.
                    if created and not room_is_new:
                        camera.active_from = now
                    camera.retired_at = None
                    summary.cameras += 1
                for camera in session.scalars(select(Camera).where(Camera.room_id == room.id)):
                    if camera.code not in listed and camera.retired_at is None:
                        camera.retired_at = now
                        summary.retired_cameras.append(camera.code)
    ledger.append(
        session,
        actor=actor,
        action="registry.imported",
        subject_type="registry",
        subject_id=hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
        details={
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "institutions": summary.institutions,
            "sites": summary.sites,
            "rooms": summary.rooms,
            "cameras": summary.cameras,
            "retired_cameras": summary.retired_cameras,
        },
        recorded_at=now,
    )
    return summary
