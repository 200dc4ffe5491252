"""/metrics behind the scraper's own token (off without one), and /docs served from a package
instead of a CDN (issue 11, hole 9)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.context import Services
from services.settings import Settings, SettingsError, load_settings

SCRAPER = "scraper-0123456789abcdef"


@pytest.fixture
def client(registered: Services) -> Iterator[TestClient]:
    with TestClient(create_app(registered)) as test_client:
        yield test_client


def test_metrics_are_off_without_a_configured_token(client: TestClient) -> None:
    answer = client.get("/metrics")
    assert (answer.status_code, answer.json()["code"]) == (404, "metrics_off")
    assert "EXAMVAULT_METRICS_TOKEN" in answer.json()["message"]


def test_metrics_answer_only_the_scrapers_token(
    client: TestClient, registered: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registered.settings, "metrics_token", SCRAPER)
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": SCRAPER}):
        refused = client.get("/metrics", headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized"), headers
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER}"})
    assert scraped.status_code == 200 and "examvault_segments " in scraped.text


def test_a_short_metrics_token_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="EXAMVAULT_METRICS_TOKEN"):
        load_settings(metrics_token="short")
    assert Settings(metrics_token="  ").metrics_token is None


def test_docs_load_every_asset_from_this_server(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assets += re.findall(r"""url: ["']([^"']+)["']""", page.text)
    assert assets and not [url for url in assets if "//" in url], assets
    for url in assets:
        assert url.startswith("/"), url
        assert client.get(url).status_code == 200, url
    assert client.get("/docs/assets/swagger-ui-bundle.js").text.startswith("/*!")
    # ReDoc's page would load its script from a CDN too: not served.
    assert client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").json()["paths"]


def test_docs_can_be_turned_off(registered: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registered.settings, "api_docs", False)
    with TestClient(create_app(registered)) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/openapi.json").status_code == 200
