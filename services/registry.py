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

from storage import ledger
from storage.models import Camera, Institution, Room, Site

CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ROOM_KINDS = ("theory", "practical")
MIN_CAMERAS_PER_ROOM = 2


class RegistryError(ValueError):
    """A registry file that is refused whole; the message names the line or field."""


@dataclass
class ImportSummary:
    institutions: int = 0
    sites: int = 0
    rooms: int = 0
    cameras: int = 0
    retired_cameras: list[str] = field(default_factory=list)


def parse_registry(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(
            f"line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"
        ) from exc
    _validate(document)
    return document


def _require(value: Any, where: str, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RegistryError(
            f"{where}: expected {what}, found {json.dumps(value, ensure_ascii=False)}"
        )
    return value


def _text(node: dict[str, Any], key: str, where: str) -> str:
    if key not in node:
        raise RegistryError(f"{where}.{key}: missing")
    value = _require(node[key], f"{where}.{key}", str, "a string")
    if not value.strip():
        raise RegistryError(f"{where}.{key}: must not be empty")
    return value


def _code(node: dict[str, Any], where: str, seen: set[str]) -> str:
    code = _text(node, "code", where)
    if not CODE.match(code):
        raise RegistryError(f"{where}.code: {code!r} must be 1-64 letters, digits, '_', '.' or '-'")
    if code in seen:
        raise RegistryError(f"{where}.code: {code!r} appears twice in the file")
    seen.add(code)
    return code


def _list(node: dict[str, Any], key: str, where: str) -> list[Any]:
    if key not in node:
        raise RegistryError(f"{where}.{key}: missing")
    return _require(node[key], f"{where}.{key}", list, "a list")


def _validate(document: Any) -> None:
    _require(document, "(top level)", dict, 'an object with "institutions"')
    seen: dict[str, set[str]] = {
        "institution": set(),
        "site": set(),
        "room": set(),
        "camera": set(),
    }
    for i, inst in enumerate(_list(document, "institutions", "(top level)")):
        where = f"institutions[{i}]"
        _require(inst, where, dict, "an object")
        _code(inst, where, seen["institution"])
        _text(inst, "name", where)
        _text(inst, "district", where)
        if inst.get("filing_expires") is not None:
            try:
                date.fromisoformat(_text(inst, "filing_expires", where))
            except ValueError as exc:
                raise RegistryError(f"{where}.filing_expires: not a YYYY-MM-DD date") from exc
        for s, site in enumerate(_list(inst, "sites", where)):
            site_where = f"{where}.sites[{s}]"
            _require(site, site_where, dict, "an object")
            _code(site, site_where, seen["site"])
            _text(site, "address", site_where)
            for r, room in enumerate(_list(site, "rooms", site_where)):
                room_where = f"{site_where}.rooms[{r}]"
                _require(room, room_where, dict, "an object")
                _code(room, room_where, seen["room"])
                if room.get("kind") not in ROOM_KINDS:
                    raise RegistryError(f"{room_where}.kind: must be 'theory' or 'practical'")
                if room.get("name") is not None and len(_text(room, "name", room_where)) > 200:
                    raise RegistryError(f"{room_where}.name: at most 200 characters")
                cameras = _list(room, "cameras", room_where)
                if len(cameras) < MIN_CAMERAS_PER_ROOM:
                    raise RegistryError(
                        f"{room_where}.cameras: a room needs at least {MIN_CAMERAS_PER_ROOM} "
                        f"cameras (front and back), found {len(cameras)}"
                    )
                for c, camera in enumerate(cameras):
                    camera_where = f"{room_where}.cameras[{c}]"
                    _require(camera, camera_where, dict, "an object")
                    _code(camera, camera_where, seen["camera"])
                    _text(camera, "position", camera_where)


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
    summary = ImportSummary()
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
