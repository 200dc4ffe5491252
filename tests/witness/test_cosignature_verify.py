"""`examvault ledger verify` re-checks every kept witness cosignature: against the stored
checkpoint of its size and the configured witness's key. A cosignature row altered in the
database (or whose checkpoint file is gone) fails verification and is named; cosignatures by a
witness no longer configured are counted, not silently passed as checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from services.cli import main
from services.context import Services
from services.ledger.checkpoints import checkpoint_key, make_checkpoint
from services.ledger.keys import CheckpointSigner, load_or_create_signer
from services.witness.cosignatures import cosign, witness_key_text
from services.witness.cosigning import keep_cosignature
from storage.models import LedgerCosignature


@pytest.fixture
def cosigned(
    registered: Services, monkeypatch: pytest.MonkeyPatch
) -> tuple[Services, list[CheckpointSigner]]:
    """A checkpoint cosigned by two witnesses (signed here with their own keys; no witness
    process is needed to make a cosignature); the CLI sees the same data dir and database, with
    both witnesses configured."""
    settings = registered.settings
    checkpoint = make_checkpoint(
        registered.db, registered.store, load_or_create_signer(settings.data_dir)
    ).checkpoint
    witnesses = [CheckpointSigner(Ed25519PrivateKey.generate()) for _ in range(2)]
    for witness in witnesses:
        keep_cosignature(registered.db, cosign(witness, checkpoint))
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", settings.database_url)
    monkeypatch.setenv(
        "EXAMVAULT_WITNESSES",
        ",".join(
            f"http://127.0.0.1:{9 + n} {witness_key_text(w.public_key)}"
            for n, w in enumerate(witnesses)
        ),
    )
    return registered, witnesses


def test_kept_cosignatures_verify(
    cosigned: tuple[Services, list[CheckpointSigner]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ledger", "verify"]) == 0
    assert "2 witness cosignature(s) verify" in capsys.readouterr().out


def test_an_altered_cosignature_row_fails_and_is_named(
    cosigned: tuple[Services, list[CheckpointSigner]], capsys: pytest.CaptureFixture[str]
) -> None:
    services, witnesses = cosigned
    # Another second on the witness's clock: the signature no longer covers the row.
    with services.db.write() as session:
        session.execute(
            update(LedgerCosignature)
            .where(LedgerCosignature.witness_key_id == witnesses[1].key_id)
            .values(timestamp=LedgerCosignature.timestamp + 1)
        )
    assert main(["ledger", "verify"]) == 1
    err = capsys.readouterr().err
    assert f"by witness {witnesses[1].key_id}" in err
    assert "signature does not verify" in err


def test_a_cosignature_whose_checkpoint_file_is_gone_fails(
    cosigned: tuple[Services, list[CheckpointSigner]], capsys: pytest.CaptureFixture[str]
) -> None:
    services, _ = cosigned
    with services.db.read() as session:
        size = session.query(LedgerCosignature.checkpoint_size).limit(1).scalar()
    path = Path(services.settings.data_dir)
    files = [p for p in path.rglob("*") if p.name == Path(checkpoint_key(size)).name]
    assert files, "the stored checkpoint file was not found under the data dir"
    for file in files:
        file.chmod(0o600)
        file.unlink()
    assert main(["ledger", "verify"]) == 1
    err = capsys.readouterr().err
    assert "missing from the store" in err  # the checkpoint check names the file
    assert "cannot be read from the store" in err  # and each cosignature of it, not a traceback


def test_cosignatures_by_unconfigured_witnesses_are_counted_not_checked(
    cosigned: tuple[Services, list[CheckpointSigner]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("EXAMVAULT_WITNESSES")
    assert main(["ledger", "verify"]) == 0
    out = capsys.readouterr().out
    assert "0 witness cosignature(s) verify (2 by witnesses not in EXAMVAULT_WITNESSES" in out
