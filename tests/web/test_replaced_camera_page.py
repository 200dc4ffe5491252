"""A back camera replaced mid-sitting, on the page: the retired camera and its replacement each
get a row labelled with position and code, the retired one first, and each row's timeline shows
the part of the sitting its camera was not in service as a neutral band, not as footage or a gap.

The registry, schedule and footage go through the real import and ingest pipeline, as in
tests/coverage/test_replaced_camera.py, but over one minute so the browser test stays fast.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from services.context import Services
from services.demo.footage import classroom_scene
from services.registry import import_registry
from tests.api.conftest import assign_now, make_user
from tests.conftest import (
    CAMERA_BACK,
    CAMERA_FRONT,
    REGISTRY,
    ROOM,
    VideoFactory,
    import_sitting,
    ingest_file,
)
from tests.web.conftest import log_in

if TYPE_CHECKING:
    from playwright.sync_api import Page

# Without Playwright the module skips (and CI's strict mode turns the skip into a failure).
expect = pytest.importorskip("playwright.sync_api").expect

# 09:00:00-09:01:00 local on 18 November 2026 (past its upload grace); the back camera is swapped
# at 09:00:30.
START = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)
REPLACED_AT = START + timedelta(seconds=30)
END = START + timedelta(seconds=60)
SITTING = "REPL-1"
# Sorts before the retired camera's code, so the rows' order must come from the service times.
CAMERA_NEW_BACK = "T1-S1-R1-A2"
# Seconds after START. The old back camera misses 09:00:20-09:00:30, a real gap in its part.
FOOTAGE = {
    CAMERA_FRONT: [(0, 60)],
    CAMERA_BACK: [(0, 20)],
    CAMERA_NEW_BACK: [(30, 30)],
}


@pytest.fixture
def replaced(registered: Services, make_video: VideoFactory) -> Services:
    """SITTING in ROOM with its back camera retired at REPLACED_AT and a new one from then."""
    services = registered
    document = copy.deepcopy(REGISTRY)
    document["institutions"][0]["sites"][0]["rooms"][0]["cameras"] = [
        {"code": CAMERA_FRONT, "position": "front"},
        {"code": CAMERA_NEW_BACK, "position": "back"},
    ]
    services.db.run_write(
        lambda session: import_registry(
            session, json.dumps(document), actor="test", now=REPLACED_AT
        )
    )
    import_sitting(services, SITTING, START, END, room=ROOM)
    for seed, (camera, parts) in enumerate(FOOTAGE.items()):
        for offset, seconds in parts:
            start = START + timedelta(seconds=offset)
            path = make_video(
                f"{start:%Y%m%dT%H%M%S}Z_{seed}.mp4",
                seconds=seconds,
                fps=2,
                width=160,
                height=120,
                scene=classroom_scene(160, 120, seed=seed),
            )
            ingest_file(services, camera, path)
    make_user(services, "zhang", "supervisor")
    assign_now(services, "zhang", SITTING)
    return services


def _bands(page: Page, camera: str, kind: str) -> list[dict[str, object]]:
    """The row's `kind` spans as fractions of its timeline, with their data and tooltip."""
    return page.locator(f".coverage-row[data-camera='{camera}'] .timeline .{kind}").evaluate_all(
        """nodes => nodes.map(node => ({
            left: node.offsetLeft / node.parentElement.clientWidth,
            right: (node.offsetLeft + node.offsetWidth) / node.parentElement.clientWidth,
            start: node.dataset.start ?? null,
            end: node.dataset.end ?? null,
            title: node.title,
        }))"""
    )


def _close(actual: float | str, expected: float) -> bool:
    # Pixel rounding on a ~1200 px bar.
    return abs(float(actual) - expected) < 0.01


def test_a_replaced_camera_has_its_own_row_and_is_not_in_service_outside_its_part(
    replaced: Services, server: str, page: Page
) -> None:
    def local(moment: datetime) -> str:
        return moment.astimezone(replaced.settings.zone).isoformat(timespec="milliseconds")

    log_in(page, server, "zhang")
    page.locator("#sittings-table").wait_for()
    page.goto(f"{server}/#/sittings/{SITTING}")
    rows = page.locator(".coverage-row")
    expect(rows).to_have_count(3)

    # Position, then service: the retired back camera before its replacement.
    order = rows.evaluate_all("rows => rows.map(row => row.dataset.camera)")
    assert order == [CAMERA_FRONT, CAMERA_BACK, CAMERA_NEW_BACK]
    labels = [rows.nth(i).locator("h3").inner_text().split(" · ")[0] for i in range(3)]
    assert labels == [
        f"前置摄像机 {CAMERA_FRONT}",
        f"后置摄像机 {CAMERA_BACK}",
        f"后置摄像机 {CAMERA_NEW_BACK}",
    ]
    assert "在用 09:00:00–09:00:30" in rows.nth(1).locator("h3").inner_text()
    assert "在用 09:00:30–09:01:00" in rows.nth(2).locator("h3").inner_text()

    # The front camera served throughout; each back camera is out of service in the other's half.
    assert _bands(page, CAMERA_FRONT, "out-of-service") == []
    [old] = _bands(page, CAMERA_BACK, "out-of-service")
    [new] = _bands(page, CAMERA_NEW_BACK, "out-of-service")
    assert (old["start"], old["end"]) == (local(REPLACED_AT), local(END))
    assert _close(old["left"], 0.5) and _close(old["right"], 1.0), old
    assert old["title"] == "不在用 09:00:30–09:01:00（无需录像）"
    assert (new["start"], new["end"]) == (local(START), local(REPLACED_AT))
    assert _close(new["left"], 0.0) and _close(new["right"], 0.5), new
    assert new["title"] == "不在用 09:00:00–09:00:30（无需录像）"

    # The real hole in the old camera's part is still a gap, beside (not under) the band.
    [gap] = _bands(page, CAMERA_BACK, "gap")
    assert _close(gap["left"], 20 / 60) and _close(gap["right"], 0.5), gap
    assert _bands(page, CAMERA_NEW_BACK, "gap") == []
    assert "不在用" in page.locator("#coverage .legend").inner_text()

    # The segment tables follow the rows' order.
    tables = page.locator("#segments .segments-camera h3").all_text_contents()
    assert [text.split("：")[0] for text in tables] == [CAMERA_FRONT, CAMERA_BACK, CAMERA_NEW_BACK]

    page.locator("#lang-toggle").click()
    assert "not in service" in page.locator("#coverage .legend").inner_text()
    [old] = _bands(page, CAMERA_BACK, "out-of-service")
    assert old["title"] == "not in service 09:00:30–09:01:00 (no footage required)"
    assert (
        rows.nth(2)
        .locator("h3")
        .inner_text()
        .startswith(f"Back camera {CAMERA_NEW_BACK} · in service 09:00:30–09:01:00 · ")
    )
