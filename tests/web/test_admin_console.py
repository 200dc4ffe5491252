"""The centre's console in a real browser: import a schedule with an error, see the error with
its line and field, fix it, import, see what was created, updated and left unchanged; create a
supervisor, reset their password, assign them to a sitting and find them by it; place a hold and
release it with a reason. Every page passes axe-core and is photographed at both sizes. A
district officer gets the holds page (no release) and none of the centre's other pages."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from services.context import Services
from tests.api.conftest import make_user
from tests.web.a11y import assert_accessible
from tests.web.artifacts import screenshots
from tests.web.conftest import log_in

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api").expect

HEADER = "sitting_code,room_code,kind,occupation,level,starts_at,ends_at\n"
# OWN-1 as the world has it (unchanged), OWN-2 an hour later (updated), NEW-1 new; the first
# version has a bad kind on line 3 and a time that is no time on line 4.
BROKEN = (
    HEADER
    + "OWN-1,T1-S1-R1,theory,电工,四级,2026-11-20T09:00:00+08:00,2026-11-20T10:00:00+08:00\n"
    + "OWN-2,T1-S1-R1,lab,电工,四级,2026-11-21T10:00:00+08:00,2026-11-21T11:00:00+08:00\n"
    + "NEW-1,T1-S1-R1,theory,焊工,三级,明天上午,2026-11-22T11:00:00+08:00\n"
)
FIXED = BROKEN.replace(",lab,", ",theory,").replace("明天上午", "2026-11-22T09:00:00+08:00")

World = tuple[object, Services]


def _choose(page: Page, text: str) -> None:
    page.locator("#import-file").set_input_files(
        files=[{"name": "schedule.csv", "mimeType": "text/csv", "buffer": text.encode("utf-8")}]
    )


def _give_reason(page: Page, reason: str) -> None:
    dialog = page.locator("#reason-dialog")
    dialog.locator("#reason-input").fill(reason)
    dialog.get_by_role("button", name="确定").click()


def test_the_centre_imports_assigns_and_holds(
    world: World, footage: Services, server: str, page: Page
) -> None:
    services = footage
    make_user(services, "centre", "admin")
    log_in(page, server, "centre")
    menu = page.locator("#pages")
    expect(menu.get_by_role("link", name="导入")).to_be_visible()
    expect(menu.get_by_role("link", name="人员与分派")).to_be_visible()
    expect(menu.get_by_role("link", name="保全")).to_be_visible()

    # Import: the broken file is refused with every problem, each with its line and field.
    menu.get_by_role("link", name="导入").click()
    expect(page.locator("#import-heading")).to_have_text("导入登记数据与场次")
    _choose(page, BROKEN)
    page.get_by_role("button", name="检查文件").click()
    problems = page.locator("#import-problems tbody tr")
    expect(problems).to_have_count(2)
    expect(page.locator("#import-problems [role=alert]")).to_contain_text("发现 2 个问题")
    first, second = problems.nth(0).locator("td"), problems.nth(1).locator("td")
    assert [first.nth(0).inner_text(), first.nth(1).inner_text()] == ["3", "kind"]
    assert [second.nth(0).inner_text(), second.nth(1).inner_text()] == ["4", "starts_at"]
    expect(first.nth(2)).to_have_text("第 3 行，kind：须为 theory（理论）或 practical（实操）")
    expect(second.nth(2)).to_contain_text("'明天上午' 不是 ISO 8601 / RFC 3339 日期时间")
    expect(page.locator("#import-confirm")).to_have_count(0)
    assert_accessible(page, "import problems")
    screenshots(page, "admin-import-problems")

    # Fixed: the preview says what will change, the import does it.
    _choose(page, FIXED)
    page.get_by_role("button", name="检查文件").click()
    preview = page.locator("#import-preview")
    expect(preview).to_be_visible()

    def counts(where: str) -> list[str]:
        row = page.locator(f"{where} tr[data-kind=sitting] .import-count")
        return [row.nth(i).inner_text() for i in range(3)]

    assert counts("#import-preview") == ["1", "1", "1"]
    page.get_by_role("button", name="确认导入").click()
    expect(page.locator("#import-done")).to_be_visible()
    assert counts("#import-done") == ["1", "1", "1"]
    done = page.locator("#import-done tr[data-kind=sitting]")
    done.locator("[data-status=created] summary").click()
    expect(done.locator("[data-status=created] details p")).to_have_text("NEW-1")
    done.locator("[data-status=updated] summary").click()
    expect(done.locator("[data-status=updated] details p")).to_have_text("OWN-2")
    assert_accessible(page, "import done")
    screenshots(page, "admin-import-done")

    # People: a new supervisor, a password reset shown once, an assignment to NEW-1.
    menu.get_by_role("link", name="人员与分派").click()
    page.locator("#people-name").fill("wang")
    page.locator("#people-role").select_option("supervisor")
    page.locator("#people-password").fill("a long enough password")
    page.locator("#people-create").get_by_role("button", name="创建").click()
    expect(page.locator("#people-table tr[data-user=wang]")).to_be_visible()
    # Nobody locks themselves out from here.
    expect(page.locator("#people-table tr[data-user=centre] button")).to_have_count(0)
    page.locator("#people-table tr[data-user=wang]").get_by_role("button", name="重置密码").click()
    new_password = page.locator("#people-new-password")
    expect(new_password).to_be_visible()
    assert len(new_password.inner_text()) == 16

    page.locator("#assign-user").select_option("wang")
    page.locator("#assign-target").select_option("sitting")
    page.locator("#assign-sitting").fill("NEW-1")
    page.locator("#assign-form").get_by_role("button", name="分派").click()
    expect(page.locator("#assignments-table tr[data-user=wang]")).to_have_count(1)
    page.locator("#assignments-by").select_option("sitting")
    page.locator("#assignments-value").fill("NEW-1")
    page.locator("#assignments-filter").get_by_role("button", name="查询").click()
    rows = page.locator("#assignments-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("wang")
    expect(rows.first).to_contain_text("有效")
    assert_accessible(page, "people")
    screenshots(page, "admin-people")

    # Holds: place one on OWN-1 with a case number, see what it protects, release it.
    menu.get_by_role("link", name="保全").click()
    expect(page.locator("#holds-heading")).to_be_visible()
    page.locator("#hold-scope").select_option("sitting")
    page.locator("#hold-sitting").fill("OWN-1")
    page.locator("#hold-reason").fill("考生投诉调查")
    page.locator("#hold-case").fill("渝人社投〔2026〕12号")
    page.locator("#hold-form").get_by_role("button", name="保全").click()
    row = page.locator("#holds-table tbody tr").first
    expect(row).to_contain_text("场次 OWN-1")
    expect(row).to_contain_text("渝人社投〔2026〕12号")
    # OWN-1's footage: four segments (conftest.FOOTAGE), kept beyond their three years.
    expect(row.locator(".holds-protects")).to_contain_text("4 个片段")
    expect(row.locator(".holds-protects")).to_contain_text("正常保存期至 2029-11-21 00:00:00")
    expect(row.locator(".holds-protects")).to_contain_text("保全至解除为止")
    assert_accessible(page, "holds")
    screenshots(page, "admin-holds")

    row.get_by_role("button", name="解除").click()
    _give_reason(page, "案件已结案")
    expect(page.locator("#holds-list")).to_contain_text("没有保全")
    page.locator("#holds-all").check()
    released = page.locator("#holds-table tbody tr").first
    expect(released).to_contain_text("已解除")
    expect(released).to_contain_text("案件已结案")
    assert_accessible(page, "holds released")
    screenshots(page, "admin-holds-released")


def test_a_district_officer_sees_holds_but_not_the_centres_pages(
    world: World, server: str, page: Page
) -> None:
    _, services = world
    make_user(services, "officer", "district_officer", district="渝中区")
    log_in(page, server, "officer")
    menu = page.locator("#pages")
    expect(menu.get_by_role("link", name="保全")).to_be_visible()
    expect(menu.get_by_role("link", name="导入")).to_have_count(0)
    expect(menu.get_by_role("link", name="人员与分派")).to_have_count(0)
    menu.get_by_role("link", name="保全").click()
    page.locator("#hold-sitting").fill("OWN-1")
    page.locator("#hold-reason").fill("区县核查")
    page.locator("#hold-form").get_by_role("button", name="保全").click()
    row = page.locator("#holds-table tbody tr")
    expect(row).to_have_count(1)
    expect(row.get_by_role("button", name="解除")).to_have_count(0)
    # Another district's sitting is unknown to them.
    page.locator("#hold-sitting").fill("FAR-1")
    page.locator("#hold-reason").fill("越权")
    page.locator("#hold-form").get_by_role("button", name="保全").click()
    expect(page.locator("#hold-form .error")).to_be_visible()
    expect(row).to_have_count(1)
    # Typing the centre's page into the address bar lands on the list, not the import form.
    page.goto(f"{server}/#/admin/import")
    expect(page.locator("#import-heading")).to_have_count(0)
    assert_accessible(page, "district holds")
