"""Exports made while the centre has witnesses: they carry the cosignatures, and
`verify-export --witness-key` checks them."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli import main
from services.context import Services
from services.evidence.package import COSIGNATURES
from services.ledger.keys import load_or_create_signer
from tests.conftest import VideoFactory
from tests.evidence.test_exports import _export, _rewrite, record_sitting_with_footage
from tests.witness.harness import WitnessProcess


@pytest.fixture
def witnessed(
    registered: Services, make_video: VideoFactory, tmp_path: Path
) -> Iterator[tuple[Services, list[WitnessProcess]]]:
    pem = tmp_path / "centre.pem"
    pem.write_text(load_or_create_signer(registered.settings.data_dir).public_key_pem)
    witnesses = [
        WitnessProcess(tmp_path / f"witness-{n}", pem, tmp_path / f"witness-{n}.log")
        for n in range(2)
    ]
    try:
        for witness in witnesses:
            witness.start()
        registered.settings = registered.settings.model_copy(
            update={"witnesses": ",".join(w.setting for w in witnesses)}
        )
        record_sitting_with_footage(registered, make_video)
        yield registered, witnesses
    finally:
        for witness in witnesses:
            witness.stop()


def _verify(package: Path, centre_pem: Path, *args: str) -> int:
    return main(["verify-export", str(package), "--key", str(centre_pem), *args])


def _keys(witnesses: list[WitnessProcess]) -> list[str]:
    return [arg for w in witnesses for arg in ("--witness-key", w.public_key)]


def test_an_export_with_witnesses_verifies_with_their_keys(
    witnessed: tuple[Services, list[WitnessProcess]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    services, witnesses = witnessed
    package = _export(services, tmp_path)
    with zipfile.ZipFile(package) as archive:
        carried = json.loads(archive.read(COSIGNATURES))["cosignatures"]
    assert {item["witness_key_id"] for item in carried} == {w.endpoint.key_id for w in witnesses}
    assert _verify(package, tmp_path / "centre.pem", *_keys(witnesses)) == 0
    assert "OK   2 of 2 witnesses cosigned" in capsys.readouterr().out


def test_an_altered_witness_signature_fails_verification(
    witnessed: tuple[Services, list[WitnessProcess]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    services, witnesses = witnessed
    package = _export(services, tmp_path)

    def alter(data: bytes) -> bytes:
        document = json.loads(data)
        signature = document["cosignatures"][0]["signature"]
        document["cosignatures"][0]["signature"] = ("A" if signature[0] != "A" else "B") + (
            signature[1:]
        )
        return json.dumps(document).encode("utf-8")

    altered = _rewrite(package, COSIGNATURES, alter)
    assert _verify(altered, tmp_path / "centre.pem", *_keys(witnesses)) == 1
    out = capsys.readouterr().out
    assert "its signature does not verify" in out
    assert "FAIL 2 of 2 witnesses cosigned" in out


def test_k_of_n_witnesses_when_one_was_down_at_export(
    witnessed: tuple[Services, list[WitnessProcess]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    services, witnesses = witnessed
    witnesses[1].stop()
    package = _export(services, tmp_path)
    keys = _keys(witnesses)
    assert _verify(package, tmp_path / "centre.pem", *keys) == 1
    assert _verify(package, tmp_path / "centre.pem", *keys, "--witnesses-required", "1") == 0
    assert _verify(package, tmp_path / "centre.pem", *keys, "--witnesses-required", "3") == 2
    err = capsys.readouterr().err
    assert "3 witnesses required, but 2 witness keys given" in err


def test_a_witness_key_the_export_was_not_cosigned_with_does_not_count(
    witnessed: tuple[Services, list[WitnessProcess]], tmp_path: Path
) -> None:
    services, witnesses = witnessed
    package = _export(services, tmp_path)
    # A verifier's witness list that names the centre's own key: it cosigned nothing.
    from services.witness.cosignatures import witness_key_text

    centre_key = witness_key_text(load_or_create_signer(services.settings.data_dir).public_key)
    args = ("--witness-key", centre_key, "--witness-key", witnesses[0].public_key)
    assert _verify(package, tmp_path / "centre.pem", *args) == 1
    assert _verify(package, tmp_path / "centre.pem", *args, "--witnesses-required", "1") == 0
