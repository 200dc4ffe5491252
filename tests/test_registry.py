from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from services.context import Services
from services.registry import RegistryError, import_registry
from storage.models import Camera, Institution, LedgerEntry
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, REGISTRY


def _import(services: Services, document: Any) -> None:
    text = document if isinstance(document, str) else json.dumps(document, ensure_ascii=False)
    services.db.run_write(lambda session: import_registry(session, text, actor="test"))


def _count(services: Services, model: type) -> int:
    with services.db.read() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_import_is_idempotent_and_updates(services: Services) -> None:
    _import(services, REGISTRY)
    changed = copy.deepcopy(REGISTRY)
    changed["institutions"][0]["name"] = "改名后的鉴定所"
    _import(services, changed)
    assert _count(services, Institution) == 1
    assert _count(services, Camera) == 2
    with services.db.read() as session:
        assert session.scalar(select(Institution.name)) == "改名后的鉴定所"
        cameras = session.scalars(select(Camera)).all()
        assert all(camera.active_from is None and camera.retired_at is None for camera in cameras)


def test_a_camera_dropped_from_its_room_is_retired_not_deleted(services: Services) -> None:
    _import(services, REGISTRY)
    changed = copy.deepcopy(REGISTRY)
    room = changed["institutions"][0]["sites"][0]["rooms"][0]
    room["cameras"] = [room["cameras"][0], {"code": "T1-S1-R1-X", "position": "side"}]
    _import(services, changed)
    with services.db.read() as session:
        cameras = {camera.code: camera for camera in session.scalars(select(Camera))}
    assert cameras[CAMERA_BACK].retired_at is not None
    assert cameras[CAMERA_FRONT].retired_at is None
    assert cameras["T1-S1-R1-X"].active_from is not None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["institutions"][0].pop("name"), r"institutions\[0\]\.name: missing"),
        (
            lambda d: d["institutions"][0]["sites"][0]["rooms"][0].update(kind="lab"),
            r"rooms\[0\]\.kind",
        ),
        (
            lambda d: d["institutions"][0]["sites"][0]["rooms"][0]["cameras"].pop(),
            r"at least 2 cameras",
        ),
        (
            lambda d: d["institutions"][0]["sites"][0]["rooms"][0]["cameras"][1].update(
                code=CAMERA_FRONT
            ),
            r"cameras\[1\]\.code: .* appears twice",
        ),
        (
            lambda d: d["institutions"][0]["sites"][0]["rooms"][0]["cameras"][0].update(
                code="../etc"
            ),
            r"cameras\[0\]\.code",
        ),
        (lambda d: d["institutions"][0].update(filing_expires="2028-13-01"), r"filing_expires"),
    ],
)
def test_malformed_registry_is_refused_whole_naming_the_field(
    services: Services, mutate: Any, message: str
) -> None:
    document = copy.deepcopy(REGISTRY)
    # A valid second institution first, so a partial import would be visible.
    second = copy.deepcopy(REGISTRY["institutions"][0])
    second["code"] = "T0"
    second["sites"][0]["code"] = "T0-S1"
    room = second["sites"][0]["rooms"][0]
    room["code"] = "T0-S1-R1"
    room["cameras"] = [
        {"code": "T0-C1", "position": "front"},
        {"code": "T0-C2", "position": "back"},
    ]
    document["institutions"].insert(0, second)
    document["institutions"] = document["institutions"][::-1]
    mutate(document)
    with pytest.raises(RegistryError, match=message):
        _import(services, document)
    assert _count(services, Institution) == 0
    assert _count(services, LedgerEntry) == 0


def test_json_syntax_error_names_the_line(services: Services) -> None:
    with pytest.raises(RegistryError, match="line 3, column"):
        _import(services, '{"institutions": [\n  {"code": "X",\n  oops}\n]}')
