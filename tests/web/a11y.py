"""Every page of the console is checked with axe-core (npm, pinned in the Makefile's `axe`
target, installed into var/npm) inside the real browser: the script is injected into the page
and `axe.run` judges the DOM as the user sees it. Violations of impact "serious" or "critical"
fail the test; minor and moderate ones are reported in the failure text only when it fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import STRICT

if TYPE_CHECKING:
    from playwright.sync_api import Page

AXE_SCRIPT = Path(__file__).resolve().parents[2] / "var/npm/node_modules/axe-core/axe.min.js"
BLOCKING = {"serious", "critical"}


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations for the page as it is now (WCAG 2.1 A/AA and best practice)."""
    if not AXE_SCRIPT.exists():
        reason = f"{AXE_SCRIPT} is missing (make axe installs axe-core from npm)"
        if STRICT:
            pytest.fail(f"{reason}; CI must run the accessibility checks")
        pytest.skip(reason)
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Through the DevTools protocol: the page's CSP (script-src 'self') rightly refuses an
        # inline <script>, and loosening it for the test would test a different page.
        session = page.context.new_cdp_session(page)
        try:
            answer = session.send(
                "Runtime.evaluate", {"expression": AXE_SCRIPT.read_text(encoding="utf-8")}
            )
        finally:
            session.detach()
        assert "exceptionDetails" not in answer, answer
    result = page.evaluate(
        """async () => {
            const found = await window.axe.run(document, {
                runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                                 "best-practice"] },
                resultTypes: ["violations"],
            });
            return found.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
            }));
        }"""
    )
    return list(result)


def assert_accessible(page: Page, where: str = "") -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    violations = axe_violations(page)
    blocking = [v for v in violations if v["impact"] in BLOCKING]
    assert blocking == [], (
        f"axe-core found serious violations{' on ' + where if where else ''}:\n"
        + json.dumps(violations, ensure_ascii=False, indent=1)
    )
