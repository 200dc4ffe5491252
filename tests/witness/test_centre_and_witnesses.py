"""A centre and two witnesses as real processes on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from services.context import Services
from services.ledger.checkpoints import latest_recorded_checkpoint, make_checkpoint
from services.ledger.keys import load_or_create_signer
from services.settings import load_settings
from services.witness.cosignatures import witness_key_text
from services.witness.cosigning import WitnessCosigner, WitnessRefused, request_cosignature
from storage.models import LedgerCosignature, LedgerEntry
from tests.processes import examvault_env, free_port, spawn, wait_for_health, wait_until
from tests.witness.harness import WitnessProcess, add_entries


@pytest.fixture
def centre(tmp_path: Path, database_url: str) -> Iterator[Services]:
    settings = load_settings(data_dir=tmp_path / "var", database_url=database_url)
    services = Services.from_settings(settings)
    yield services
    services.close()


def _witnesses(tmp_path: Path, centre: Services, count: int = 2) -> list[WitnessProcess]:
    pem = tmp_path / "centre.pem"
    pem.write_text(load_or_create_signer(centre.settings.data_dir).public_key_pem)
    return [
        WitnessProcess(tmp_path / f"witness-{n}", pem, tmp_path / f"witness-{n}.log")
        for n in range(count)
    ]


def _start_centre(
    tmp_path: Path, centre: Services, witnesses: str, database_url: str, timeout: str = "1"
) -> subprocess.Popen[bytes]:
    port = free_port()
    env = examvault_env(
        centre.settings.data_dir,
        database_url,
        EXAMVAULT_WITNESSES=witnesses,
        EXAMVAULT_LEDGER_CHECKPOINT_SECONDS="0.5",
        EXAMVAULT_WITNESS_RETRY_SECONDS="0.5",
        EXAMVAULT_WITNESS_TIMEOUT_SECONDS=timeout,
        EXAMVAULT_HEALTH_CHECKS="false",
    )
    log = tmp_path / "centre.log"
    process = spawn(env, "serve", "--host", "127.0.0.1", "--port", str(port), log=log)
    wait_for_health(f"http://127.0.0.1:{port}", process, log)
    return process


def _cosigners(centre: Services, size: int) -> set[str]:
    with centre.db.read() as session:
        return set(
            session.scalars(
                select(LedgerCosignature.witness_key_id).where(
                    LedgerCosignature.checkpoint_size == size
                )
            )
        )


def _latest_size(centre: Services) -> int:
    with centre.db.read() as session:
        record = latest_recorded_checkpoint(session)
    return record.size if record else 0


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def test_both_witnesses_cosign_and_refuse_a_rewritten_ledger(
    tmp_path: Path, centre: Services, database_url: str
) -> None:
    witnesses = _witnesses(tmp_path, centre)
    server = None
    try:
        for witness in witnesses:
            witness.start()
        server = _start_centre(
            tmp_path, centre, ",".join(w.setting for w in witnesses), database_url
        )
        add_entries(centre, 6)
        keys = {w.endpoint.key_id for w in witnesses}
        wait_until(lambda: _latest_size(centre) >= 6 and _cosigners(centre, 6) == keys, 30)
        add_entries(centre, 4)
        # The second checkpoint needs a consistency proof from the first: still cosigned.
        wait_until(lambda: _cosigners(centre, 10) == keys, 30)
        _stop(server)
        server = None

        # The operator, with database root and the signing key, builds another history of the
        # same entries' count and more, and signs it: self-consistent, and refused.
        forged_dir = tmp_path / "forged"
        forged_dir.mkdir()
        key = centre.settings.data_dir / "ledger-signing-key.pem"
        (forged_dir / key.name).write_bytes(key.read_bytes())
        forged = Services.from_settings(
            load_settings(data_dir=forged_dir, database_url=f"sqlite:///{forged_dir / 'f.db'}")
        )
        try:
            add_entries(forged, 12, what="rewritten")
            signer = load_or_create_signer(forged_dir)
            checkpoint = make_checkpoint(forged.db, forged.store, signer).checkpoint
            for witness in witnesses:
                with pytest.raises(WitnessRefused) as refused:
                    request_cosignature(forged.db, witness.endpoint, checkpoint, 5)
                assert (refused.value.status, refused.value.code) == (422, "not_consistent")
        finally:
            forged.close()
    finally:
        if server is not None:
            _stop(server)
        for witness in witnesses:
            witness.stop()


def test_a_witness_that_is_down_or_hangs_delays_cosigning_but_never_blocks_ingest(
    tmp_path: Path, centre: Services, database_url: str
) -> None:
    up, down = _witnesses(tmp_path, centre)
    # A witness that takes the connection and never answers: the timeout bounds the wait.
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)
    server = None
    try:
        up.start()
        down.start()
        down_setting = down.setting
        down.stop()
        hang_url = f"http://127.0.0.1:{hanging.getsockname()[1]}"
        hang_key = witness_key_text(Ed25519PrivateKey.generate().public_key())
        settings = ",".join([up.setting, down_setting, f"{hang_url} {hang_key}"])
        server = _start_centre(tmp_path, centre, settings, database_url, timeout="4")
        for _ in range(3):
            add_entries(centre, 2)
            time.sleep(0.7)
        written = time.monotonic()
        # The checkpoint writer keeps its 0.5 s pace while a witness holds each request 4 s.
        wait_until(lambda: _latest_size(centre) == 6, 15, interval=0.05)
        assert time.monotonic() - written < 2.0
        wait_until(lambda: _cosigners(centre, 6) == {up.endpoint.key_id}, 20)
        down.start()
        wait_until(lambda: down.endpoint.key_id in _cosigners(centre, 6), 15)
    finally:
        if server is not None:
            _stop(server)
        up.stop()
        down.stop()
        hanging.close()
    assert "not cosigned by witness" in (tmp_path / "centre.log").read_text()


def test_a_refusal_is_recorded_in_the_ledger_once(tmp_path: Path, centre: Services) -> None:
    (witness,) = _witnesses(tmp_path, centre, count=1)
    forged_dir = tmp_path / "forged"
    forged_dir.mkdir()
    key = centre.settings.data_dir / "ledger-signing-key.pem"
    (forged_dir / key.name).write_bytes(key.read_bytes())
    forged = Services.from_settings(
        load_settings(data_dir=forged_dir, database_url=f"sqlite:///{forged_dir / 'f.db'}")
    )
    try:
        witness.start()
        # The witness first saw another history under the centre's key, 12 entries long.
        add_entries(forged, 12, what="rewritten")
        signer = load_or_create_signer(forged_dir)
        other = make_checkpoint(forged.db, forged.store, signer).checkpoint
        request_cosignature(forged.db, witness.endpoint, other, 5)
        add_entries(centre, 20)
        make_checkpoint(centre.db, centre.store, signer)
        cosigner = WitnessCosigner(centre.db, centre.store, [witness.endpoint], timeout=5)
        assert cosigner.cosign_latest() == []
        assert cosigner.cosign_latest() == []
    finally:
        witness.stop()
        forged.close()
    with centre.db.read() as session:
        refusals = session.scalars(
            select(LedgerEntry).where(LedgerEntry.action == "witness.refused")
        ).all()
        assert len(refusals) == 1
        details = json.loads(refusals[0].details)
    assert (details["status"], details["code"]) == (422, "not_consistent")
    assert details["checkpoint_size"] == 20
