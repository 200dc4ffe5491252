"""The `examvault` command's contract: output, and exit codes 0 / 1 / 2 with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update

from services.cli import main
from storage.db import Database
from storage.models import LedgerEntry
from tests.conftest import CAMERA_FRONT, REGISTRY
from tests.ledger.tampering import drop_append_only_guard


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> str:
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", database_url)
    return database_url


def _registry_file(tmp_path: Path, document: object = REGISTRY) -> str:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_registry_import_then_token_printed_last(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registry", "import", _registry_file(tmp_path)]) == 0
    assert main(["token", "create", "--role", "camera_host", "--cameras", CAMERA_FRONT]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("evt_") and len(last) > 40


def test_bad_input_exits_2_with_one_sentence(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registry", "import", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["registry", "import", _registry_file(tmp_path, {"institutions": [{}]})]) == 2
    err = capsys.readouterr().err
    assert "institutions[0].code: missing" in err and "nothing was imported" in err
    assert main(["token", "create", "--role", "camera_host", "--cameras", "NOPE"]) == 2
    assert "unknown camera" in capsys.readouterr().err
    assert main(["token", "create", "--role", "wizard"]) == 2


def test_retention_below_three_years_refuses_to_start(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXAMVAULT_RETENTION_YEARS", "2")
    assert main(["db", "upgrade"]) == 2
    assert "Article 14" in capsys.readouterr().err


def test_ledger_verify_exits_1_at_a_tampered_entry(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registry", "import", _registry_file(tmp_path)]) == 0
    assert main(["ledger", "verify"]) == 0
    db = Database(cli_env)
    with db.write() as session:
        # An attacker with the database owner's rights: the append-only trigger goes first.
        drop_append_only_guard(session, "ledger_entries")
        session.execute(update(LedgerEntry).where(LedgerEntry.seq == 1).values(actor="someone"))
    db.dispose()
    assert main(["ledger", "verify"]) == 1
    assert "entry 1" in capsys.readouterr().err


def test_verify_export_needs_no_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A package is checked offline, on any machine: a broken EXAMVAULT_* must not matter.
    monkeypatch.setenv("EXAMVAULT_RETENTION_YEARS", "1")
    not_a_zip = tmp_path / "evidence.zip"
    not_a_zip.write_text("hello")
    assert main(["verify-export", str(not_a_zip)]) == 2
    error = capsys.readouterr().err
    assert "retention" not in error.lower() and "zip" in error.lower()


@pytest.mark.parametrize("edge", ["9999-12-31T23:00:00-14:00", "9999-12-31", "0001-01-01"])
def test_an_instant_at_the_ends_of_the_calendar_exits_2_with_one_sentence(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], edge: str
) -> None:
    # It overflowed on the way to UTC or at the first day added: a traceback, not a sentence.
    assert main(["registry", "import", _registry_file(tmp_path)]) == 0
    capsys.readouterr()
    hold = ["hold", "add", "--camera", CAMERA_FRONT, "--from", edge, "--to", edge, "--reason", "x"]
    assert main(hold) == 2
    assert "1970..9000" in capsys.readouterr().err
    assert main(["token", "create", "--role", "admin", "--expires", edge]) == 2
    assert "1970..9000" in capsys.readouterr().err
