"""The witness on its own: what it cosigns, what it refuses and why, what it remembers."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.context import Services
from services.ledger.checkpoints import Checkpoint, consistency_proof_for, make_checkpoint
from services.ledger.keys import CheckpointSigner, load_or_create_signer
from services.settings import load_settings
from services.witness.cosignatures import verify_cosignature
from services.witness.server import (
    Witness,
    WitnessRefusal,
    create_witness_app,
    load_or_create_witness_signer,
    log_keys_by_id,
)
from services.witness.state import STATE_FILE, WitnessState
from tests.witness.harness import add_entries


@pytest.fixture
def centre(services: Services) -> Services:
    add_entries(services, 5)
    return services


def _witness(folder: Path, *log_signers: CheckpointSigner) -> Witness:
    return Witness(
        load_or_create_witness_signer(folder),
        WitnessState(folder),
        log_keys_by_id([signer.public_key for signer in log_signers]),
    )


def _signer(services: Services) -> CheckpointSigner:
    return load_or_create_signer(services.settings.data_dir)


def _checkpoint(services: Services) -> Checkpoint:
    return make_checkpoint(services.db, services.store, _signer(services)).checkpoint


def _request(services: Services, checkpoint: Checkpoint, old_size: int) -> dict[str, object]:
    with services.db.read() as session:
        proof = (
            consistency_proof_for(session, old_size, checkpoint.size).proof
            if 0 < old_size < checkpoint.size
            else []
        )
    return {"old_size": old_size, "consistency_proof": proof, "checkpoint": checkpoint.as_json()}


def _refusal(witness: Witness, request: dict[str, object]) -> WitnessRefusal:
    with pytest.raises(WitnessRefusal) as caught:
        witness.add_checkpoint(request)
    return caught.value


def test_a_consistent_checkpoint_is_cosigned_and_remembered(
    centre: Services, tmp_path: Path
) -> None:
    witness = _witness(tmp_path / "w", _signer(centre))
    first = _checkpoint(centre)
    answer = witness.add_checkpoint(_request(centre, first, 0))
    from services.witness.cosignatures import Cosignature

    cosignature = Cosignature.from_json(answer["cosignature"])
    assert verify_cosignature(cosignature, first, witness.signer.public_key) is None
    add_entries(centre, 3)
    second = _checkpoint(centre)
    witness.add_checkpoint(_request(centre, second, first.size))
    state = json.loads((tmp_path / "w" / STATE_FILE).read_text())
    assert state["logs"][first.key_id] == {"size": 8, "root": second.root}


def test_an_inconsistent_checkpoint_is_refused_with_422(centre: Services, tmp_path: Path) -> None:
    witness = _witness(tmp_path / "w", _signer(centre))
    first = _checkpoint(centre)
    witness.add_checkpoint(_request(centre, first, 0))
    add_entries(centre, 3)
    second = _checkpoint(centre)
    request = _request(centre, second, first.size)
    request["consistency_proof"] = [("00" * 32) for _ in request["consistency_proof"]]  # type: ignore[attr-defined]
    refusal = _refusal(witness, request)
    assert (refusal.status, refusal.code) == (422, "not_consistent")


def test_another_root_for_a_cosigned_size_is_refused_as_a_fork(
    centre: Services, tmp_path: Path, database_url: str
) -> None:
    witness = _witness(tmp_path / "w", _signer(centre))
    first = _checkpoint(centre)
    witness.add_checkpoint(_request(centre, first, 0))
    # The same key over another history of the same length: what an operator with database
    # root could sign.
    forged = _forged_centre(tmp_path, centre, first.size)
    refusal = _refusal(witness, _request(forged, _checkpoint(forged), first.size))
    assert (refusal.status, refusal.code) == (409, "conflicting_root")
    forged.close()


def _forged_centre(tmp_path: Path, centre: Services, size: int) -> Services:
    data_dir = tmp_path / "forged"
    data_dir.mkdir()
    key = centre.settings.data_dir / "ledger-signing-key.pem"
    (data_dir / key.name).write_bytes(key.read_bytes())
    forged = Services.from_settings(
        load_settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'db.sqlite3'}")
    )
    add_entries(forged, size, what="rewritten")
    return forged


def test_a_smaller_or_stale_checkpoint_is_refused_with_the_witness_size(
    centre: Services, tmp_path: Path
) -> None:
    witness = _witness(tmp_path / "w", _signer(centre))
    first = _checkpoint(centre)
    add_entries(centre, 3)
    second = _checkpoint(centre)
    witness.add_checkpoint(_request(centre, second, 0))
    refusal = _refusal(witness, _request(centre, first, 0))
    assert (refusal.status, refusal.code, refusal.extra) == (
        409,
        "old_size_mismatch",
        {"size": second.size},
    )


def test_a_checkpoint_of_an_unknown_log_or_with_a_bad_signature_is_refused(
    centre: Services, tmp_path: Path
) -> None:
    checkpoint = _checkpoint(centre)
    stranger = _witness(tmp_path / "stranger")
    refusal = _refusal(stranger, _request(centre, checkpoint, 0))
    assert (refusal.status, refusal.code) == (404, "unknown_log")
    witness = _witness(tmp_path / "w", _signer(centre))
    request = _request(centre, checkpoint, 0)
    request["checkpoint"] = {**checkpoint.as_json(), "root": "00" * 32}
    refusal = _refusal(witness, request)
    assert (refusal.status, refusal.code) == (403, "bad_signature")


def test_refusals_over_http_carry_status_code_and_message(centre: Services, tmp_path: Path) -> None:
    witness = _witness(tmp_path / "w", _signer(centre))
    client = TestClient(create_witness_app(witness))
    response = client.post("/add-checkpoint", content=b"not json")
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request" and response.json()["message"]
    checkpoint = _checkpoint(centre)
    response = client.post("/add-checkpoint", json=_request(centre, checkpoint, 3))
    assert response.status_code == 409
    assert response.json()["code"] == "old_size_mismatch" and response.json()["size"] == 0


def test_the_state_survives_a_restart(centre: Services, tmp_path: Path) -> None:
    first = _checkpoint(centre)
    _witness(tmp_path / "w", _signer(centre)).add_checkpoint(_request(centre, first, 0))
    forged = _forged_centre(tmp_path, centre, first.size)
    restarted = _witness(tmp_path / "w", _signer(centre))
    refusal = _refusal(restarted, _request(forged, _checkpoint(forged), first.size))
    assert refusal.code == "conflicting_root"
    forged.close()


def test_racing_requests_never_get_two_roots_cosigned_for_one_size(
    centre: Services, tmp_path: Path
) -> None:
    genuine = _checkpoint(centre)
    forged = _forged_centre(tmp_path, centre, genuine.size)
    rival = _checkpoint(forged)
    # Two witnesses objects on one directory: as two processes would share it.
    witnesses = [_witness(tmp_path / "w", _signer(centre)) for _ in range(2)]
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def ask(index: int) -> None:
        checkpoint, services = (genuine, centre) if index % 2 else (rival, forged)
        request = _request(services, checkpoint, 0)
        barrier.wait()
        try:
            witnesses[index % 2 ^ (index // 4)].add_checkpoint(request)
            outcomes.append(checkpoint.root)
        except WitnessRefusal as refusal:
            outcomes.append(refusal.code)

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    cosigned = {outcome for outcome in outcomes if outcome in (genuine.root, rival.root)}
    assert len(outcomes) == 8 and len(cosigned) == 1, outcomes
    forged.close()
