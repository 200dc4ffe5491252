"""Machine tokens: a token cannot be born expired, through the service, the API or the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from services.access.tokens import TokenError, create_token
from services.api.app import create_app
from services.cli import main
from services.context import Services
from storage.models import ApiToken


def _tokens(services: Services) -> int:
    with services.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(ApiToken)) or 0)


def test_a_token_expiring_in_the_past_is_refused(services: Services) -> None:
    now = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    for expires_at in (now - timedelta(days=1), now):
        with pytest.raises(TokenError, match="not in the future"):
            services.db.run_write(
                lambda s, e=expires_at: create_token(
                    s, role="admin", name="script", expires_at=e, actor="test", now=now
                )
            )
    assert _tokens(services) == 0
    row, _ = services.db.run_write(
        lambda s: create_token(
            s,
            role="admin",
            name="script",
            expires_at=now + timedelta(hours=1),
            actor="test",
            now=now,
        )
    )
    assert row.expires_at == now + timedelta(hours=1)


def test_api_refuses_a_token_expiring_in_the_past(registered: Services) -> None:
    _, admin = registered.db.run_write(
        lambda s: create_token(s, role="admin", name="centre", actor="test")
    )
    client = TestClient(create_app(registered))
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    answer = client.post(
        "/api/v1/tokens",
        json={"name": "script", "role": "admin", "expires_at": past},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_token")
    assert "not in the future" in answer.json()["message"]
    assert _tokens(registered) == 1  # only the admin's own


def test_cli_refuses_a_token_expiring_in_the_past(
    services: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", services.settings.resolved_database_url)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert main(["token", "create", "--role", "admin", "--expires", past]) == 2
    assert "not in the future" in capsys.readouterr().err
    assert _tokens(services) == 0
    future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    assert main(["token", "create", "--role", "admin", "--expires", future]) == 0
    assert "expires" in capsys.readouterr().out.splitlines()[0]
    assert _tokens(services) == 1
