"""The day view in a real browser: a district officer sees only their district (a shared link
naming another district shows nothing of it), an institution sees exactly what is missing and
cannot reach footage, and the filters, pages, URL state and CSV download work. Each view passes
axe and is photographed at both screen sizes."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

from services.context import Services
from storage.models import Segment
from tests.api.conftest import ROOM, START, make_user
from tests.web.a11y import assert_accessible
from tests.web.artifacts import screenshots
from tests.web.conftest import WORLD_DAY, log_in

if TYPE_CHECKING:
    from fastapi.testclient import TestClient
    from playwright.sync_api import Page

pytest.importorskip("playwright")
from playwright.sync_api import expect

World = tuple["TestClient", Services]


def _codes(page: Page) -> list[str]:
    page.locator("#sittings-table").wait_for()
    return page.locator("#sittings-table tbody tr[data-sitting]").evaluate_all(
        "rows => rows.map(row => row.dataset.sitting)"
    )


def _options(page: Page, select: str) -> list[str]:
    return page.locator(f"{select} option").evaluate_all(
        "options => options.map(option => option.value).filter(Boolean)"
    )


def test_a_district_officer_sees_only_their_district_even_from_a_shared_link(
    world: World, server: str, page: Page
) -> None:
    _, services = world
    make_user(services, "yuzhong", "district_officer", district="渝中区")
    log_in(page, server, "yuzhong")
    expect(page.locator("#days-status")).to_contain_text("共 1 个场次")
    assert _codes(page) == ["OWN-1"]
    assert _options(page, "#days-district") == ["渝中区"]
    assert _options(page, "#days-institution") == ["T1"]
    row = page.locator("#sittings-table tbody tr[data-sitting='OWN-1']")
    expect(row).to_contain_text("测试鉴定所")  # the name beside the code
    expect(row).to_contain_text("测试路1号")
    assert_accessible(page, "the day view (district officer)")
    screenshots(page, "dayview-district")

    # A link shared from the centre, naming another district: nothing of it is shown.
    page.goto(f"{server}/#/?date={WORLD_DAY}&district=江北区")
    expect(page.locator("#days-status")).to_have_text("没有符合条件的场次。")
    assert _codes(page) == []
    expect(page.locator("#days-district")).to_have_value("江北区")
    expect(page.locator("main")).not_to_contain_text("FAR-1")
    expect(page.locator("main")).not_to_contain_text("T2")
    expect(page.locator(".days-count[data-verdict='all']")).to_have_text("全部 0")
    assert_accessible(page, "the day view with a forged district")


def test_an_institution_sees_what_is_missing_with_the_deadline_and_no_footage(
    world: World, footage: Services, server: str, page: Page
) -> None:
    make_user(footage, "t1tech", "institution", institution_code="T1")
    log_in(page, server, "t1tech")
    expect(page.locator("h1")).to_have_text("本机构场次")
    assert _codes(page) == ["OWN-1"]
    row = page.locator("#sittings-table tbody tr[data-sitting='OWN-1']")
    lines = row.locator(".days-gap").all_inner_texts()
    # The back camera missed 20 s after its first recording; both stop after one minute of
    # the hour. The deadline is the sitting's end (10:00) plus the 24 h upload grace.
    assert "后置摄像机 09:00:20–09:00:40 未收到录像，补传截止 11-21 10:00" in lines
    assert "前置摄像机 09:01–10:00 未收到录像，补传截止 11-21 10:00" in lines
    assert "后置摄像机 09:01–10:00 未收到录像，补传截止 11-21 10:00" in lines
    expect(row.locator(".days-missing-head")).to_contain_text("补传期已过")
    expect(row.locator(".days-flag-missing").first).to_contain_text("前置摄像机 缺录 59 分钟")
    assert_accessible(page, "the day view (institution)")
    screenshots(page, "dayview-institution")

    # English, for the technician who reads it.
    page.get_by_role("button", name="English").click()
    expect(row.locator(".days-gap").first).to_contain_text("upload by 11-21 10:00")
    page.get_by_role("button", name="中文").click()

    # No footage: the sitting page shows verdicts only, and the API refuses the bytes.
    row.get_by_role("link", name="OWN-1").click()
    page.locator("#coverage-heading").wait_for()
    expect(page.locator("#export-button")).to_have_count(0)
    page.get_by_label("从该时刻播放（时:分:秒）").fill("09:00:05")
    page.get_by_role("button", name="播放", exact=True).click()
    expect(page.locator("main .error").first).to_contain_text("不能查看录像")
    assert page.evaluate(
        "() => [...document.querySelectorAll('video')].every(v => v.readyState === 0)"
    )
    with footage.db.read() as session:
        segment = session.scalar(select(func.min(Segment.id)))
    status = page.evaluate(
        """async id => {
            const token = sessionStorage.getItem("examvault.token");
            const response = await fetch(`/api/v1/segments/${id}/content`,
                                         { headers: { Authorization: `Bearer ${token}` } });
            return response.status;
        }""",
        segment,
    )
    assert status == 403


def test_filters_pages_url_state_and_csv(
    world: World, admin_token: str, server: str, page: Page
) -> None:
    client, services = world
    rows = [
        {
            "sitting_code": f"DAY-{n:03d}",
            "room_code": ROOM,
            "kind": "theory",
            "occupation": "焊工" if n % 2 else "电工",
            "level": "四级",
            "starts_at": (START + timedelta(minutes=60 + 5 * n)).isoformat(),
            "ends_at": (START + timedelta(minutes=60 + 5 * n + 4)).isoformat(),
        }
        for n in range(1, 61)
    ]
    pushed = client.put(
        "/api/v1/sittings",
        json={"sittings": rows},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert pushed.status_code == 200, pushed.text
    make_user(services, "centre", "admin")
    log_in(page, server, "centre")
    expect(page.locator("#days-status")).to_have_text("第 1–50 个，共 62 个场次")
    assert len(_codes(page)) == 50
    expect(page.locator("#days-page")).to_have_text("第 1 / 2 页")
    assert_accessible(page, "the day view (centre)")
    screenshots(page, "dayview-centre")

    page.locator("#days-next").click()
    expect(page).to_have_url(f"{server}/#/?date={WORLD_DAY}&page=2")
    expect(page.locator("#days-status")).to_have_text("第 51–62 个，共 62 个场次")
    assert len(_codes(page)) == 12
    page.go_back()
    expect(page.locator("#days-status")).to_have_text("第 1–50 个，共 62 个场次")

    page.locator("#days-occupation").select_option("焊工")
    expect(page).to_have_url(f"{server}/#/?date={WORLD_DAY}&occupation=%E7%84%8A%E5%B7%A5")
    expect(page.locator("#days-status")).to_have_text("第 1–30 个，共 30 个场次")
    page.locator("#days-sort").select_option("institution")
    page.locator("#days-institution").select_option("T1")
    expect(page.locator("#days-status")).to_have_text("第 1–30 个，共 30 个场次")
    assert page.url.endswith("&institution=T1&occupation=%E7%84%8A%E5%B7%A5&sort=institution")
    # The counts are per verdict over the filtered set; a chip filters by its verdict.
    page.locator(".days-count[data-verdict='missing']").click()
    expect(page.locator(".days-count[data-verdict='missing']")).to_have_attribute(
        "aria-pressed", "true"
    )
    assert "status=missing" in page.url

    # The state is the URL's: a reload (or a shared link) shows the same view.
    page.reload()
    expect(page.locator("#days-occupation")).to_have_value("焊工")
    expect(page.locator("#days-institution")).to_have_value("T1")
    expect(page.locator("#days-verdict")).to_have_value("missing")
    expect(page.locator("#days-sort")).to_have_value("institution")
    shown = _codes(page)

    with page.expect_download() as download:
        page.locator("#days-csv").click()
    content = download.value.path().read_bytes()
    assert content.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert table[0][0] == "场次编号 sitting"
    assert [line[0] for line in table[1:]] == shown
    assert download.value.suggested_filename == f"sittings-{WORLD_DAY}.csv"

    # A range of days, and back to one day with "clear".
    page.locator("#days-clear").click()
    expect(page).to_have_url(f"{server}/#/?date={WORLD_DAY}&sort=institution")
    page.locator("#days-to").fill("2026-11-21")
    page.locator("#days-to").dispatch_event("change")
    expect(page.locator("#days-status")).to_have_text("第 1–50 个，共 63 个场次")
    assert "from=2026-11-20&to=2026-11-21" in page.url

    # A sitting's back link (a bare "#/") returns to the same view, not to today's.
    page.locator("#sittings-table tbody tr[data-sitting] a").first.click()
    page.locator("#coverage-heading").wait_for()
    page.get_by_role("link", name="← 返回场次列表").click()
    expect(page.locator("#days-status")).to_have_text("第 1–50 个，共 63 个场次")
    assert "from=2026-11-20&to=2026-11-21" in page.url
