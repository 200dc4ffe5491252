"""The page's static routes: the files, their types and security headers, nothing else."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.context import Services


@pytest.fixture
def client(registered: Services) -> TestClient:
    return TestClient(create_app(registered))


def test_index_is_the_page_with_a_strict_content_security_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/web/app.js">' in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("app.js", "text/javascript"), ("style.css", "text/css"), ("icon.svg", "image/svg+xml")],
)
def test_assets_are_served_with_their_types(client: TestClient, name: str, media_type: str) -> None:
    response = client.get(f"/web/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["etag"]


@pytest.mark.parametrize(
    "name", ["nope.js", "..%2Fapi%2Fapp.py", "%2Fetc%2Fpasswd", ".hidden.js", "app.py"]
)
def test_anything_but_a_page_file_is_404(client: TestClient, name: str) -> None:
    response = client.get(f"/web/{name}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_the_page_routes_stay_out_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(path.startswith("/web/") for path in paths)
