"""The centre's records pages in a real browser: the retention plan for a day with a held item
shown with its hold, a camera-host token made (shown once, then listed without its secret) and
revoked, and the ledger searched for a supervisor's footage views. Each page passes axe-core and
is saved as screenshots."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from services.context import Services
from tests.api.conftest import PASSWORD, START, assign_now, make_user
from tests.conftest import CAMERA_BACK, CAMERA_FRONT
from tests.web.a11y import assert_accessible
from tests.web.artifacts import screenshots
from tests.web.conftest import log_in

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def records(footage: Services, server: str) -> dict[str, str]:
    """The centre's login, a hold on OWN-1's back camera, and supervisor zhang's footage read."""
    services = footage
    make_user(services, "centre", "admin")
    make_user(services, "zhang", "supervisor")
    assign_now(services, "zhang", "OWN-1")
    with httpx.Client(base_url=server) as client:

        def token(name: str) -> dict[str, str]:
            answer = client.post(
                "/api/v1/auth/token", data={"username": name, "password": PASSWORD}
            )
            return {"Authorization": f"Bearer {answer.json()['access_token']}"}

        centre, zhang = token("centre"), token("zhang")
        hold = client.post(
            "/api/v1/holds",
            headers=centre,
            json={
                "camera": CAMERA_BACK,
                "from": START.isoformat(),
                "until": (START + timedelta(hours=1)).isoformat(),
                "reason": "考生投诉",
                "case_reference": "CQ-2029-001",
            },
        )
        assert hold.status_code == 201, hold.text
        segments = client.get("/api/v1/sittings/OWN-1/segments", headers=zhang).json()
        front = next(camera for camera in segments["cameras"] if camera["camera"] == CAMERA_FRONT)
        segment = front["segments"][0]["id"]
        read = client.get(f"/api/v1/segments/{segment}/content", headers=zhang)
        assert read.status_code == 200
        # A signed checkpoint, as the server's writer makes one every minute.
        assert client.get("/api/v1/ledger/checkpoint", headers=centre).status_code == 200
    return {"hold": str(hold.json()["id"]), "segment": str(segment)}


def test_the_centre_reviews_retention_machines_and_the_ledger(
    server: str, page: Page, records: dict[str, str]
) -> None:
    log_in(page, server, "centre")
    menu = page.locator("#pages")
    expect(menu.get_by_role("link", name="保存与清理")).to_be_visible()

    # Retention: the plan for the day OWN-1's footage expires; the back camera's is held.
    menu.get_by_role("link", name="保存与清理").click()
    expect(page.locator("#retention-readonly")).to_be_visible()
    page.get_by_label("清理日期").fill("2029-11-21")
    page.get_by_role("button", name="查看计划").click()
    expect(page.locator("#retention-plan-heading")).to_contain_text("2029-11-21")
    expect(page.locator("#retention-goes")).to_contain_text("2 个录像片段")
    groups = page.locator("#retention-groups tbody tr")
    expect(groups).to_have_count(1)
    expect(groups.first).to_contain_text(CAMERA_FRONT)
    expect(groups.first).to_contain_text("场次 OWN-1 结束后 3 年")
    held = page.locator("#retention-held tbody tr")
    expect(held).to_have_count(2)
    expect(held.first).to_contain_text(CAMERA_BACK)
    expect(held.first).to_contain_text(f"保全 #{records['hold']}：考生投诉")
    expect(held.first).to_contain_text("案号 CQ-2029-001")
    assert "date=2029-11-21" in page.url
    # No delete button anywhere on the page: the purge stays a job.
    expect(page.get_by_role("button", name="删除")).to_have_count(0)
    expect(page.get_by_role("button", name="执行清理")).to_have_count(0)
    expect(page.locator("#retention-runs")).to_contain_text("尚未运行过清理")
    assert_accessible(page, "the retention page")
    screenshots(page, "admin-retention")

    # Machines: a token for the front camera, shown once, then listed without its secret.
    menu.get_by_role("link", name="录像主机").click()
    page.get_by_label("主机名称").fill("R1 录像主机")
    page.get_by_label("摄像机（可多选）").select_option([CAMERA_FRONT])
    page.get_by_role("button", name="创建令牌").click()
    secret_field = page.locator("#machines-secret")
    expect(secret_field).to_have_value(re.compile(r"^evt_"))
    secret = secret_field.input_value()
    expect(page.locator(".machines-once")).to_contain_text("只显示这一次")
    row = page.locator("#machines-table tbody tr", has_text="R1 录像主机")
    expect(row).to_contain_text(CAMERA_FRONT)
    expect(row).to_contain_text("有效")
    expect(row).to_contain_text("未上报")
    assert_accessible(page, "the machines page with a new token shown")
    screenshots(page, "admin-machines-token-shown")
    page.get_by_role("button", name="我已保存，关闭").click()
    expect(secret_field).to_have_count(0)
    assert secret not in page.content()
    page.reload()
    expect(row).to_contain_text("有效")
    assert secret not in page.content()
    row.get_by_role("button", name="撤销").click()
    dialog = page.locator("#reason-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#reason-title")).to_contain_text("R1 录像主机")
    page.locator("#reason-input").fill("主机更换")
    page.locator("#reason-ok").click()
    expect(row).to_contain_text("已撤销")
    expect(row.get_by_role("button", name="撤销")).to_have_count(0)
    expect(page.locator("#machines-cameras-table tbody tr", has_text=CAMERA_FRONT)).to_contain_text(
        "无"
    )
    assert_accessible(page, "the machines page")
    screenshots(page, "admin-machines")

    # Ledger: who watched which footage: supervisor zhang's read of OWN-1's front camera.
    menu.get_by_role("link", name="台账").click()
    expect(page.locator("#ledger-size")).not_to_be_empty()
    expect(page.locator("#ledger-checkpoint")).to_contain_text("覆盖第 1–")
    expect(page.locator("#ledger-tree-root")).to_contain_text("一致")
    page.get_by_label("操作者（如 supervisor:zhang）").fill("supervisor:zhang")
    page.get_by_label("类别").select_option("footage")
    page.get_by_label("场次编号").fill("OWN-1")
    page.get_by_role("button", name="查找", exact=True).click()
    entries = page.locator("#ledger-entries tbody tr")
    expect(entries).to_have_count(1)
    expect(entries.first).to_contain_text("footage.content")
    expect(entries.first).to_contain_text(f"segment {records['segment']}")
    assert "actor=supervisor%3Azhang" in page.url and "sitting=OWN-1" in page.url
    # The filters survive a reload: the link can be shared.
    page.reload()
    expect(page.get_by_label("操作者（如 supervisor:zhang）")).to_have_value("supervisor:zhang")
    expect(page.locator("#ledger-entries tbody tr")).to_have_count(1)
    page.get_by_label("检查最新条目数").fill("100")
    page.get_by_role("button", name="立即检查").click()
    expect(page.locator("#ledger-last-recent")).to_contain_text("通过")
    assert_accessible(page, "the ledger page")
    screenshots(page, "admin-ledger")
    # English too, switched in place.
    page.locator("#lang-toggle").click()
    expect(page.locator("#ledger-heading")).to_have_text("Ledger (tamper-evident record)")
    expect(page.locator("#ledger-last-recent")).to_contain_text("passed")
    expect(page.locator("#pages").get_by_role("link", name="Camera hosts")).to_be_visible()


def test_the_records_pages_are_not_in_a_supervisors_menu(
    server: str, page: Page, records: dict[str, str]
) -> None:
    log_in(page, server, "zhang")
    expect(page.locator("#who")).to_contain_text("zhang")
    expect(page.locator("#pages").get_by_role("link", name="台账")).to_have_count(0)
    # Asked for by URL, the page is not drawn for them (the list is), and the API refuses.
    page.goto(f"{server}/#/admin/ledger?actor=supervisor:zhang")
    expect(page.locator("#ledger-heading")).to_have_count(0)
