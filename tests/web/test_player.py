"""The supervisors' player and the findings page in Chromium: speed buttons run both cameras at
the chosen rate, "next gap" moves both pictures to the gap's start, keyboard shortcuts do the
same and stay quiet while typing a finding; a district officer sees the findings of their own
district only; both pages pass axe-core and are kept as screenshots.

The world (tests/api/conftest.py): OWN-1 in 渝中区 (T1, 测试鉴定所), FAR-1 in 江北区 (T2); the
footage fixture gives OWN-1 a minute of footage from 09:00:00, the back camera missing
09:00:20-09:00:40."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from services.context import Services
from tests.api.conftest import FOREIGN_CAMERAS, START, assign_now, make_user
from tests.conftest import CAMERA_BACK, CAMERA_FRONT
from tests.web.a11y import assert_accessible
from tests.web.artifacts import screenshots
from tests.web.conftest import log_in

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api").expect

World = tuple[TestClient, Services]
GAP_START = START + timedelta(seconds=20)
CAMERAS = (CAMERA_FRONT, CAMERA_BACK)


def _open_as_supervisor(page: Page, server: str, services: Services) -> None:
    make_user(services, "zhang", "supervisor")
    assign_now(services, "zhang", "OWN-1")
    log_in(page, server, "zhang")
    page.locator("#sittings-table tbody tr[data-sitting='OWN-1'] a").click()
    page.locator("#player-controls").wait_for()


def _wait_playing(page: Page, camera: str) -> None:
    page.wait_for_function(
        """camera => {
            const video = document.querySelector(`video[data-camera="${camera}"]`);
            return video && video.readyState >= 2 && video.currentTime > 0.2;
        }""",
        arg=camera,
    )


def _rates(page: Page) -> list[float]:
    return [
        page.locator(f"video[data-camera='{camera}']").evaluate("v => v.playbackRate")
        for camera in CAMERAS
    ]


def _wall(page: Page, camera: str) -> datetime:
    shown = page.locator(f"output.clock[data-camera='{camera}']").get_attribute("data-wall")
    assert shown is not None
    return datetime.fromisoformat(shown)


def _play_at_between(page: Page, earliest: str, latest: str) -> None:
    """The time the page last asked both players for (shown in the play-at field)."""
    page.wait_for_function(
        """([earliest, latest]) => {
            const value = document.getElementById("play-at").value;
            return value >= earliest && value <= latest;
        }""",
        arg=[earliest, latest],
    )


def _pressed(page: Page) -> list[str]:
    return page.locator("button.player-speed[aria-pressed='true']").all_inner_texts()


def test_speed_buttons_run_both_cameras_and_next_gap_moves_the_clock_to_its_start(
    world: World, footage: Services, server: str, page: Page
) -> None:
    _open_as_supervisor(page, server, footage)
    # Names beside the codes in the header.
    where = page.locator("#sitting-where").inner_text()
    assert "测试鉴定所" in where and "T1-S1-R1" in where and "测试路1号" in where

    page.get_by_label("从该时刻播放（时:分:秒）").fill("09:00:02")
    page.get_by_role("button", name="播放", exact=True).click()
    for camera in CAMERAS:
        _wait_playing(page, camera)
    assert _pressed(page) == ["1×"] and _rates(page) == [1, 1]

    page.get_by_role("button", name="4×").click()
    assert _pressed(page) == ["4×"] and _rates(page) == [4, 4]
    assert page.get_by_role("button", name="1×").get_attribute("aria-pressed") == "false"

    page.get_by_role("button", name="下一个缺口").click()
    expect(page.locator("#play-at")).to_have_value("09:00:20")
    expect(page.locator("#jump-status")).to_contain_text("缺口 09:00:20–09:00:40")
    assert page.locator("#jump-status").get_attribute("data-target") == GAP_START.astimezone(
        _wall(page, CAMERA_FRONT).tzinfo
    ).isoformat(timespec="milliseconds")
    # The new streams start at the gap (the front camera at the keyframe before it, the back
    # one after it, held until the front gets there) and keep the chosen speed.
    page.wait_for_function(
        """([camera, start]) => {
            const clock = document.querySelector(`output.clock[data-camera="${camera}"]`);
            return clock && clock.dataset.wall && Date.parse(clock.dataset.wall) >= start - 3000
                && Date.parse(clock.dataset.wall) <= start + 3000;
        }""",
        arg=[CAMERA_FRONT, GAP_START.timestamp() * 1000],
    )
    for camera in CAMERAS:
        _wait_playing(page, camera)
    assert _rates(page) == [4, 4]
    assert _wall(page, CAMERA_BACK) >= START + timedelta(seconds=39)

    # Before the first gap there is none to go back to.
    page.get_by_role("button", name="上一个缺口").click()
    expect(page.locator("#jump-status")).to_have_text("此前没有缺口。")


def test_keyboard_shortcuts_play_seek_jump_and_set_speed_but_not_while_typing(
    world: World, footage: Services, server: str, page: Page
) -> None:
    _open_as_supervisor(page, server, footage)
    help_box = page.locator("#shortcuts")
    assert help_box.locator("summary").inner_text() == "键盘快捷键"
    page.locator("#play-heading").click()  # focus on the page, not on a field

    page.keyboard.press("3")
    assert _pressed(page) == ["4×"]
    page.keyboard.press("1")
    assert _pressed(page) == ["1×"]

    page.keyboard.press(" ")  # nothing playing yet: both start at the typed time
    for camera in CAMERAS:
        _wait_playing(page, camera)
    page.keyboard.press(" ")
    page.wait_for_function(
        "() => [...document.querySelectorAll('video.player-video')].every(v => v.paused)"
    )
    page.keyboard.press(" ")
    page.wait_for_function(
        "() => [...document.querySelectorAll('video.player-video')].every(v => !v.paused)"
    )

    page.keyboard.press("]")  # the next gap, problem or finding: the back camera's gap
    expect(page.locator("#play-at")).to_have_value("09:00:20")
    # (The back camera's stream starts after its gap and waits there for the front one.)
    _wait_playing(page, CAMERA_FRONT)
    page.keyboard.press("Shift+ArrowRight")  # 30 s on from where the picture is
    _play_at_between(page, "09:00:50", "09:00:54")
    page.keyboard.press("ArrowLeft")  # 5 s back
    _play_at_between(page, "09:00:45", "09:00:50")
    page.keyboard.press("[")
    expect(page.locator("#play-at")).to_have_value("09:00:20")

    page.keyboard.press("?")
    expect(help_box).to_have_attribute("open", "")

    # In the finding's text field every key is text: no speed, no play, no jump.
    before = page.locator("#play-at").input_value()
    text = page.get_by_label("说明")
    text.click()
    text.press_sequentially("4 ] [ 2")
    assert text.input_value() == "4 ] [ 2"
    assert _pressed(page) == ["1×"]
    assert page.locator("#play-at").input_value() == before


def _record(client: TestClient, admin: dict[str, str], sitting: str, camera: str, text: str) -> Any:
    answer = client.post(
        f"/api/v1/sittings/{sitting}/findings",
        json={
            "camera": camera,
            "category": "camera_blocked",
            "observed_from": (START + timedelta(seconds=30)).isoformat(),
            "text": text,
        },
        headers=admin,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_district_officer_sees_the_findings_of_their_district_only(
    world: World, admin_token: str, server: str, page: Page
) -> None:
    client, services = world
    admin = {"Authorization": f"Bearer {admin_token}"}
    _record(client, admin, "OWN-1", CAMERA_FRONT, "前置摄像机被遮挡")
    _record(client, admin, "FAR-1", FOREIGN_CAMERAS[0], "江北区的记录")
    make_user(services, "li", "district_officer", district="渝中区")

    log_in(page, server, "li")
    page.locator("#pages").get_by_role("link", name="督导记录").click()
    table = page.locator("#findings-page-table")
    table.wait_for()
    rows = table.locator("tbody tr")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.sitting)") == ["OWN-1"]
    assert "前置摄像机被遮挡" in rows.first.inner_text()
    assert "江北区的记录" not in page.locator("main").inner_text()
    assert "测试鉴定所" in rows.first.inner_text()
    assert_accessible(page, "the findings page")
    assert all(path.stat().st_size > 0 for path in screenshots(page, "findings-district"))

    # A forged link to the other district shows nothing of it.
    page.goto(f"{server}/#/findings?district=%E6%B1%9F%E5%8C%97%E5%8C%BA")
    expect(page.locator("#findings-page-empty")).to_be_visible()
    assert "江北区的记录" not in page.locator("main").inner_text()

    # From the list to the footage at the finding's instant.
    page.goto(f"{server}/#/findings")
    page.locator("#findings-page-table a.findings-page-view").first.click()
    expect(page.locator("#play-at")).to_have_value("09:00:30")


def test_the_centre_filters_findings_and_the_player_passes_axe(
    world: World, footage: Services, admin_token: str, server: str, page: Page
) -> None:
    client, services = world
    admin = {"Authorization": f"Bearer {admin_token}"}
    _record(client, admin, "OWN-1", CAMERA_FRONT, "前置摄像机被遮挡")
    _record(client, admin, "FAR-1", FOREIGN_CAMERAS[0], "江北区的记录")
    make_user(services, "centre", "admin")

    log_in(page, server, "centre")
    page.locator("#pages").get_by_role("link", name="督导记录").click()
    page.locator("#findings-page-table").wait_for()
    assert page.locator("#findings-page-table tbody tr").count() == 2
    page.get_by_label("区县").select_option("江北区")
    page.get_by_role("button", name="筛选").click()
    expect(page.locator("#findings-page-table tbody tr")).to_have_count(1)
    assert "district=" in page.url  # the filter is in the address, for a link to share
    assert page.locator("#findings-page-table tbody tr").get_attribute("data-sitting") == "FAR-1"
    assert_accessible(page, "the findings page, filtered")
    screenshots(page, "findings-centre")

    page.goto(f"{server}/#/sittings/OWN-1")
    page.locator("#player-controls").wait_for()
    page.get_by_role("button", name="下一条督导记录").click()
    expect(page.locator("#play-at")).to_have_value("09:00:30")
    for camera in CAMERAS:
        _wait_playing(page, camera)
    page.locator("#shortcuts summary").click()
    assert_accessible(page, "the player")
    assert all(path.stat().st_size > 0 for path in screenshots(page, "player"))
