"""`examvault witness ...` and verify-export's witness options: usage errors in one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli import main
from services.witness.cosignatures import witness_key_from_text
from services.witness.server import load_or_create_witness_signer


def test_witness_key_prints_the_key_made_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["witness", "key", "--data-dir", str(tmp_path / "w")]) == 0
    printed = capsys.readouterr().out.strip()
    assert main(["witness", "key", "--data-dir", str(tmp_path / "w")]) == 0
    assert capsys.readouterr().out.strip() == printed
    signer = load_or_create_witness_signer(tmp_path / "w")
    assert witness_key_from_text(printed) == signer.public_key


def test_witness_commands_without_a_data_dir_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["witness", "key"]) == 2
    assert "--data-dir is required" in capsys.readouterr().err


def test_witness_serve_refuses_an_unreadable_log_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = tmp_path / "centre.pem"
    pem.write_text("not a key")
    args = ["witness", "serve", "--data-dir", str(tmp_path / "w"), "--log-key", str(pem)]
    assert main(args) == 2
    assert "not an Ed25519 public key in PEM" in capsys.readouterr().err


def test_verify_export_refuses_bad_witness_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    package = tmp_path / "p.zip"
    package.write_bytes(b"")
    assert main(["verify-export", str(package), "--witness-key", "c2hvcnQ="]) == 2
    assert "not a witness key" in capsys.readouterr().err
    assert main(["verify-export", str(package), "--witnesses-required", "1"]) == 2
    assert "needs at least one --witness-key" in capsys.readouterr().err


def test_an_unreadable_witnesses_setting_is_refused_at_start(tmp_path: Path) -> None:
    from services.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="is not `URL KEY`"):
        load_settings(data_dir=tmp_path, witnesses="127.0.0.1:9000")
