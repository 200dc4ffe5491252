"""The supervisors' web page in Chromium: log in through the form, see the sitting and its
verdict, play both cameras from a wall-clock instant, record a finding, switch to English; and a
supervisor never sees a sitting that is not theirs."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

from services.context import Services
from services.evidence.package import verify_package
from tests.api.conftest import PASSWORD, START, assign_now, make_user
from tests.conftest import CAMERA_BACK, CAMERA_FRONT
from tests.web.conftest import log_in

if TYPE_CHECKING:
    from playwright.sync_api import Page, Response

# Without Playwright the module skips (and CI's strict mode turns the skip into a failure).
expect = pytest.importorskip("playwright.sync_api").expect

World = tuple[TestClient, Services]
VERDICT_ZH = {"complete": "完整", "incomplete": "不完整", "missing": "缺失", "pending": "待定"}


def _supervisor(services: Services, name: str, sitting: str) -> None:
    make_user(services, name, "supervisor")
    assign_now(services, name, sitting)


def _verdict(client: TestClient, admin_token: str, code: str) -> str:
    """The verdict as the API states it (it depends on today's date and the upload grace)."""
    response = client.get(
        f"/api/v1/sittings/{code}", headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def _open_sitting(page: Page, base_url: str, code: str) -> None:
    log_in(page, base_url, "zhang")
    page.locator(f"#sittings-table tbody tr[data-sitting='{code}']").get_by_role(
        "link", name=code
    ).click()
    page.locator(".timeline").first.wait_for()


def _play_both_from(page: Page, clock: str) -> None:
    page.get_by_label("从该时刻播放（时:分:秒）").fill(clock)
    page.get_by_role("button", name="播放", exact=True).click()
    for camera in (CAMERA_FRONT, CAMERA_BACK):
        page.wait_for_function(
            """camera => {
                const video = document.querySelector(`video[data-camera="${camera}"]`);
                return video && video.readyState >= 2 && video.currentTime > 0.5;
            }""",
            arg=camera,
        )


def test_login_shows_the_api_message_then_the_sittings_with_their_verdict(
    world: World, admin_token: str, server: str, page: Page
) -> None:
    client, services = world
    _supervisor(services, "zhang", "OWN-1")
    verdict = _verdict(client, admin_token, "OWN-1")

    log_in(page, server, "zhang", "not the password")
    expect(page.locator("#login-error")).to_have_text("用户名或密码错误。")

    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    row = page.locator("#sittings-table tbody tr[data-sitting='OWN-1']")
    row.wait_for()
    assert row.locator(".badge").inner_text() == VERDICT_ZH[verdict]
    assert row.locator(".badge").get_attribute("data-verdict") == verdict
    assert "2026-11-20 09:00:00 – 10:00:00 (+08:00)" in row.inner_text()


def test_the_timeline_paints_gaps_and_both_cameras_play_from_a_typed_instant(
    world: World, footage: Services, server: str, page: Page
) -> None:
    _, services = world
    _supervisor(services, "zhang", "OWN-1")
    _open_sitting(page, server, "OWN-1")
    assert page.locator(".timeline").count() == 2
    back_row = page.locator(f".coverage-row[data-camera='{CAMERA_BACK}']")
    assert back_row.locator(".timeline .gap").count() >= 1
    assert "09:00:20–09:00:40 未收到录像" in back_row.locator(".gap-list").inner_text()

    playback: list[Response] = []
    page.on(
        "response",
        lambda response: (
            playback.append(response)
            if "/playback?" in response.url and "format=json" not in response.url
            else None
        ),
    )
    _play_both_from(page, "09:00:10")

    assert [r.status for r in playback] == [200, 200]
    assert {r.headers["content-type"] for r in playback} == {"video/mp4"}
    for camera in (CAMERA_FRONT, CAMERA_BACK):
        wall = page.locator(f"output.clock[data-camera='{camera}']").get_attribute("data-wall")
        assert wall is not None
        shown = datetime.fromisoformat(wall)
        assert START + timedelta(seconds=10) <= shown <= START + timedelta(seconds=20), wall
    # The back camera's player names the gap its stream cuts out.
    gaps = page.locator(f"video[data-camera='{CAMERA_BACK}'] ~ .player-gaps").inner_text()
    assert "09:00:20–09:00:40" in gaps


def test_a_finding_recorded_through_the_form_is_listed_with_the_player_time(
    world: World, footage: Services, server: str, page: Page
) -> None:
    _, services = world
    _supervisor(services, "zhang", "OWN-1")
    _open_sitting(page, server, "OWN-1")
    _play_both_from(page, "09:00:10")

    # Pausing a player offers its picture's instant as the finding's start.
    page.locator(f"video[data-camera='{CAMERA_FRONT}']").evaluate("video => video.pause()")
    page.wait_for_function("() => document.getElementById('finding-from').value !== ''")
    prefilled = page.get_by_label("开始时刻（时:分:秒）").input_value()
    assert "09:00:10" <= prefilled <= "09:00:20", prefilled
    assert page.get_by_label("摄像机", exact=True).input_value() == CAMERA_FRONT
    page.get_by_label("类别").select_option(label="考评员缺席")
    page.get_by_label("说明").fill("考评员离开考场约两分钟")
    page.get_by_role("button", name="保存记录").click()

    finding = page.locator("#findings-list li.finding").first
    finding.wait_for()
    assert "考评员离开考场约两分钟" in finding.inner_text()
    assert finding.locator(".badge.category").inner_text() == "考评员缺席"
    assert f"2026-11-20 {prefilled}" in finding.inner_text()
    assert finding.get_by_role("button", name="撤回").is_visible()


def test_english_labels_after_the_switch_and_after_a_reload(
    world: World, server: str, page: Page
) -> None:
    _, services = world
    _supervisor(services, "zhang", "OWN-1")
    _open_sitting(page, server, "OWN-1")
    assert page.locator("#coverage-heading").inner_text() == "录像覆盖"

    page.locator("#lang-toggle").click()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#findings-heading").inner_text() == "Findings"
    assert page.locator("#play-heading").inner_text() == "Playback"
    assert page.locator("#sitting-verdict .badge").inner_text() in {
        "Complete",
        "Incomplete",
        "Missing",
        "Pending",
    }
    page.reload()
    page.locator("#coverage-heading").wait_for()
    assert page.locator("#coverage-heading").inner_text() == "Coverage"
    assert page.get_by_role("button", name="Log out").is_visible()


def test_supervisor_does_not_see_a_foreign_sitting(world: World, server: str, page: Page) -> None:
    _, services = world
    _supervisor(services, "wang", "OWN-1")
    log_in(page, server, "wang")
    page.locator("#sittings-table").wait_for()
    codes = page.locator("#sittings-table tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.sitting)"
    )
    assert codes == ["OWN-1"]
    # Typed into the address bar, a foreign sitting answers as a missing one.
    page.goto(f"{server}/#/sittings/FAR-1")
    expect(page.locator("main .error")).to_have_text("未找到请求的资源。")


def test_the_export_downloads_a_package_that_verifies(
    world: World, footage: Services, server: str, page: Page, tmp_path: Path
) -> None:
    _, services = world
    _supervisor(services, "zhang", "OWN-1")
    _open_sitting(page, server, "OWN-1")
    page.get_by_role("button", name="导出证据包").click()
    page.get_by_label("导出原因（将记入台账与清单）").fill("督导抽查")
    with page.expect_download() as started:
        page.locator("#reason-dialog").get_by_role("button", name="确定").click()
    saved = tmp_path / started.value.suggested_filename
    started.value.save_as(saved)
    assert saved.suffix == ".zip"
    verdict = verify_package(saved)
    assert verdict.intact, [check.line() for check in verdict.failed]


def test_a_camera_that_skips_a_gap_waits_for_the_other(
    world: World, footage: Services, server: str, page: Page
) -> None:
    _, services = world
    _supervisor(services, "zhang", "OWN-1")
    _open_sitting(page, server, "OWN-1")
    _play_both_from(page, "09:00:10")
    page.locator("video").evaluate_all("videos => videos.forEach(v => v.playbackRate = 4)")
    back = page.locator(f"video[data-camera='{CAMERA_BACK}']")
    front_clock = page.locator(f"output.clock[data-camera='{CAMERA_FRONT}']")
    back_clock = page.locator(f"output.clock[data-camera='{CAMERA_BACK}']")

    # Past 09:00:20 the back camera has no footage until 09:00:40: it holds there...
    page.wait_for_selector(f"video[data-camera='{CAMERA_BACK}'][data-held]")
    held_at = datetime.fromisoformat(str(back_clock.get_attribute("data-wall")))
    front_at = datetime.fromisoformat(str(front_clock.get_attribute("data-wall")))
    assert held_at >= START + timedelta(seconds=40) and front_at < held_at
    assert back.evaluate("video => video.paused")
    assert "等待另一路" in page.locator(f"figure[data-camera='{CAMERA_BACK}']").inner_text()

    # ...while the front camera plays on through those seconds, then both go on together.
    page.wait_for_function(
        f"""() => {{
            const video = document.querySelector("video[data-camera='{CAMERA_BACK}']");
            return !video.dataset.held && !video.paused;
        }}"""
    )
    front_at = datetime.fromisoformat(str(front_clock.get_attribute("data-wall")))
    back_at = datetime.fromisoformat(str(back_clock.get_attribute("data-wall")))
    assert front_at >= START + timedelta(seconds=39)
    assert abs((front_at - back_at).total_seconds()) < 3


def test_list_and_sitting_pages_pass_axe(server: str, page: Page, footage: Services) -> None:
    """The supervisor's list and sitting pages have no serious accessibility violation."""
    from tests.web.a11y import assert_accessible
    from tests.web.artifacts import screenshots

    _supervisor(footage, "axe-sup", "OWN-1")
    log_in(page, server, "axe-sup")
    expect(page.locator("#sittings-table")).to_be_visible()
    assert_accessible(page, "the sittings list")
    page.locator("a", has_text="OWN-1").click()
    expect(page.locator("h1", has_text="OWN-1")).to_be_visible()
    assert_accessible(page, "a sitting")
    assert all(path.stat().st_size > 0 for path in screenshots(page, "supervisor-sitting"))
