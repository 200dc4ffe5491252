"""Screenshots of the console for people to look at (CI keeps var/screenshots/ as artifacts):
each named view at the two sizes the centre's and districts' screens have, 1366×768 and
1920×1080. The page is resized in place, so the view keeps its state."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var/screenshots"
SIZES = ((1366, 768), (1920, 1080))


def screenshots(page: Page, name: str) -> list[Path]:
    """Save `name`-WIDTHxHEIGHT.png at each size, full page; restore the viewport after."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    saved = []
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        path = SCREENSHOTS / f"{name}-{width}x{height}.png"
        page.screenshot(path=str(path), full_page=True)
        saved.append(path)
    if before:
        page.set_viewport_size(before)
    return saved
