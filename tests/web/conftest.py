"""The web page in a real browser: Debian's Chromium driven by Playwright, against a real uvicorn
server over the access tests' world (tests/api/conftest.py) with real PyAV footage.

These tests exercise the page, not the database: they run on SQLite only. Chromium is installed
by `make install` (apt); no browser is ever downloaded. Without it the tests skip, and under
EXAMVAULT_TEST_STRICT=1 (CI) they fail instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pytest

from services.context import Services
from services.demo.footage import classroom_scene, write_recording
from tests.api import conftest as api_fixtures
from tests.api.conftest import PASSWORD, START, ingest_file
from tests.conftest import CAMERA_BACK, CAMERA_FRONT, STRICT, serving

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# The access tests' world (OWN-1, OWN-2, foreign FAR-1) and its admin token, shared as fixtures.
world = api_fixtures.world
admin_token = api_fixtures.admin_token

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 10_000
# Two cameras, 160×120 at 5 fps: enough to play, cheap to encode. Seconds after START; the back
# camera misses 20 s, so the page has a gap to show.
FOOTAGE = {
    CAMERA_FRONT: [(0, 30), (30, 30)],
    CAMERA_BACK: [(0, 20), (40, 20)],
}


def _unavailable(reason: str) -> None:
    if STRICT:
        pytest.fail(f"{reason}; CI must run the browser tests (make install puts it there)")
    pytest.skip(reason)


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """SQLite only, overriding the suite's SQLite/PostgreSQL parametrisation."""
    yield f"sqlite:///{tmp_path / 'examvault.sqlite3'}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A zh-CN page at 1280×800; the test fails if the page raised a script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"the page raised: {errors}"


# The world's sittings are on this local day; the day view opens on today without a date.
WORLD_DAY = START.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()


def log_in(page: Page, base_url: str, name: str, password: str = PASSWORD, *, at: str = "") -> None:
    """Log in on the page at `at` (a hash; the world's day by default), where the login returns."""
    page.goto(f"{base_url}/{at or f'#/?date={WORLD_DAY}'}")
    page.get_by_label("用户名").fill(name)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


@pytest.fixture
def footage(world: tuple[object, Services], tmp_path: Path) -> Services:
    """The world with real footage for OWN-1's two cameras (ingested through the pipeline)."""
    _, services = world
    folder = tmp_path / "footage"
    folder.mkdir()
    for seed, (camera, parts) in enumerate(FOOTAGE.items()):
        for offset, seconds in parts:
            name = f"{START + timedelta(seconds=offset):%Y%m%dT%H%M%S}Z_{seed}.mp4"
            path = write_recording(
                folder / name,
                seconds=seconds,
                fps=5,
                width=160,
                height=120,
                scene=classroom_scene(160, 120, seed=seed),
            )
            ingest_file(services, camera, path)
    return services


@pytest.fixture
def server(registered: Services) -> Iterator[str]:
    """A real uvicorn serving the app (page and API) on a free port; its base URL."""
    with serving(registered) as base_url:
        yield base_url
