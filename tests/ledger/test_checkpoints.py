"""Signed checkpoints and proofs of the ledger's Merkle tree, through the service functions,
the HTTP API and `examvault ledger verify`, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from services.access.tokens import create_token
from services.api.app import create_app
from services.cli import main
from services.context import Services
from services.ledger.checkpoints import (
    Checkpoint,
    CheckpointWriter,
    LedgerRewritten,
    SigningKeyChanged,
    checkpoint_key,
    consistency_proof_for,
    inclusion_proof_for,
    latest_recorded_checkpoint,
    latest_stored_checkpoint,
    ledger_leaves,
    make_checkpoint,
    sign_checkpoint,
    store_checkpoint,
    verify_checkpoint,
)
from services.ledger.keys import (
    KEY_FILE,
    CheckpointSigner,
    load_or_create_signer,
    public_key_from_pem,
)
from services.settings import SettingsError, load_settings
from storage import ledger, merkle
from storage.models import LedgerEntry
from storage.s3 import S3BlobStore
from tests.ledger.tampering import drop_append_only_guard
from tests.s3server import ACCESS_KEY, SECRET_KEY


def _append(services: Services, count: int) -> None:
    def work(session: Session) -> None:
        for _ in range(count):
            ledger.append(
                session,
                actor="test",
                action="test.event",
                subject_type="test",
                subject_id=uuid.uuid4().hex,
                details={"text": "台账"},
            )

    services.db.run_write(work)


def _signer(services: Services) -> CheckpointSigner:
    return load_or_create_signer(services.settings.data_dir)


def _writer(services: Services) -> CheckpointWriter:
    return CheckpointWriter(services.db, services.store, services.settings.data_dir)


def test_checkpoint_signature_verifies_and_fails_when_any_field_is_altered(
    services: Services,
) -> None:
    _append(services, 5)
    signer = _signer(services)
    checkpoint = make_checkpoint(services.db, services.store, signer).checkpoint
    with services.db.read() as session:
        leaves = [bytes.fromhex(e.entry_hash) for e in session.scalars(select(LedgerEntry))]
    assert checkpoint.size == 5 and checkpoint.origin == "examvault"
    assert checkpoint.root == merkle.tree_hash(leaves).hex()
    assert checkpoint.timestamp.endswith("Z")
    document = checkpoint.to_bytes()
    assert verify_checkpoint(document, signer.public_key)
    assert verify_checkpoint(json.loads(document), signer.public_key)

    altered_values = {
        "origin": "elsewhere",
        "size": 4,
        "root": "0" * 64,
        "timestamp": "2030-01-01T00:00:00.000Z",
        "key_id": "0" * 16,
    }
    for field, value in altered_values.items():
        altered = {**json.loads(document), field: value}
        assert not verify_checkpoint(altered, signer.public_key), field
    signature = bytearray(base64.b64decode(checkpoint.signature))
    signature[0] ^= 1
    forged = {**checkpoint.as_json(), "signature": base64.b64encode(signature).decode()}
    assert not verify_checkpoint(forged, signer.public_key)
    assert not verify_checkpoint({**checkpoint.as_json(), "signature": "!!"}, signer.public_key)
    assert not verify_checkpoint({"size": 5}, signer.public_key)
    assert not verify_checkpoint(b"not json", signer.public_key)
    assert not verify_checkpoint(document, Ed25519PrivateKey.generate().public_key())


def test_signing_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    first = load_or_create_signer(data_dir)
    path = data_dir / KEY_FILE
    pem = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_or_create_signer(data_dir)
    assert second.key_id == first.key_id
    assert second.public_key_raw == first.public_key_raw
    assert path.read_bytes() == pem
    assert [p.name for p in data_dir.iterdir()] == [KEY_FILE]  # no temporary left behind
    assert len(first.key_id) == 16


def test_stored_checkpoint_is_written_once_and_read_back_as_latest(services: Services) -> None:
    _append(services, 3)
    signer = _signer(services)
    with services.db.read() as session:
        checkpoint = sign_checkpoint(signer, 3, merkle.tree_hash(ledger_leaves(session)))
    later = datetime.now(UTC) + timedelta(days=3653)
    stored = store_checkpoint(services.store, checkpoint, later)
    assert stored is not None and stored.key == "ledger/checkpoints/000000000003.json"
    assert store_checkpoint(services.store, checkpoint, later) is None
    assert latest_stored_checkpoint(services.store) == checkpoint


def test_checkpoint_on_s3_is_object_locked(
    services: Services,
    s3_endpoint: str,
) -> None:
    store = S3BlobStore(
        bucket=f"ck-{uuid.uuid4().hex}",
        endpoint=s3_endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
        create_bucket=True,
    )
    _append(services, 2)
    until = datetime.now(UTC) + timedelta(days=3653)
    checkpoint = make_checkpoint(services.db, store, _signer(services)).checkpoint
    stored = store.stat(checkpoint.key)
    assert stored is not None and stored.retain_until is not None
    assert stored.retain_until >= until - timedelta(seconds=1)
    assert latest_stored_checkpoint(store) == checkpoint
    with services.db.read() as session:
        recorded = latest_recorded_checkpoint(session)
    assert recorded is not None and (recorded.size, recorded.root) == (2, checkpoint.root)


def test_writer_stores_a_checkpoint_only_when_the_ledger_grew(services: Services) -> None:
    writer = _writer(services)
    assert writer.write_if_grown() is None  # an empty ledger has nothing to vouch for
    _append(services, 4)
    first = writer.write_if_grown()
    assert first is not None and first.size == 4
    assert writer.write_if_grown() is None
    _append(services, 2)
    second = _writer(services).write_if_grown()  # a fresh process starts from the store
    assert second is not None and second.size == 6
    assert sorted(services.store.keys("ledger/checkpoints/")) == [
        checkpoint_key(4),
        checkpoint_key(6),
    ]


def test_writer_refuses_to_sign_over_a_rewritten_history(services: Services) -> None:
    _append(services, 3)
    assert _writer(services).write_if_grown() is not None
    _rewrite_chain_from(services, 2)
    _append(services, 1)
    assert _writer(services).write_if_grown() is None
    latest = latest_stored_checkpoint(services.store)
    assert latest is not None and latest.size == 3


def test_service_proofs_verify_against_checkpoints(services: Services) -> None:
    _append(services, 7)
    signer = _signer(services)
    old = make_checkpoint(services.db, services.store, signer).checkpoint
    _append(services, 6)
    new = make_checkpoint(services.db, services.store, signer).checkpoint
    with services.db.read() as session:
        for seq in (1, 7, 13):
            proof = inclusion_proof_for(session, seq, new.size)
            assert proof.verifies() and proof.root == new.root
        consistency = consistency_proof_for(session, old.size, new.size)
    assert consistency.verifies()
    assert (consistency.old_root, consistency.new_root) == (old.root, new.root)


def _bearer(services: Services, role: str, cameras: list[str] | None = None) -> dict[str, str]:
    _, token = services.db.run_write(
        lambda session: create_token(
            session, role=role, name=f"test-{role}", cameras=cameras, actor="test"
        )
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(registered: Services) -> Iterator[tuple[TestClient, dict[str, str]]]:
    auth = _bearer(registered, "supervisor")
    with TestClient(create_app(registered)) as client:
        yield client, auth


def _checkpoint(client: TestClient, auth: dict[str, str]) -> dict[str, object]:
    answer = client.get("/api/v1/ledger/checkpoint", headers=auth)
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_api_key_and_checkpoint_verify_with_the_published_key(
    api: tuple[TestClient, dict[str, str]], registered: Services
) -> None:
    client, auth = api
    key = client.get("/api/v1/ledger/key", headers=auth).json()
    public_key = public_key_from_pem(key["public_key_pem"])
    assert key["algorithm"] == "Ed25519"
    assert base64.b64decode(key["public_key"]) == _signer(registered).public_key_raw
    assert key["key_id"] == _signer(registered).key_id
    assert key["fingerprint"] == hashlib.sha256(base64.b64decode(key["public_key"])).hexdigest()
    assert key["fingerprint"].startswith(key["key_id"])
    checkpoint = _checkpoint(client, auth)
    with registered.db.read() as session:
        assert checkpoint["size"] == ledger.verify(session).entries
    assert checkpoint["key_id"] == key["key_id"]
    assert verify_checkpoint(checkpoint, public_key)


def test_api_inclusion_proof_verifies_against_the_checkpoint_root(
    api: tuple[TestClient, dict[str, str]], registered: Services
) -> None:
    client, auth = api
    _append(registered, 10)
    checkpoint = Checkpoint.from_json(_checkpoint(client, auth))
    root = bytes.fromhex(checkpoint.root)
    for seq in range(1, checkpoint.size + 1):
        answer = client.get(
            "/api/v1/ledger/proof/inclusion",
            headers=auth,
            params={"seq": seq, "size": checkpoint.size},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        with registered.db.read() as session:
            entry = session.get(LedgerEntry, seq)
            assert entry is not None and body["leaf"] == entry.entry_hash
        assert body["root"] == checkpoint.root and body["leaf_index"] == seq - 1
        proof = [bytes.fromhex(item) for item in body["proof"]]
        leaf = bytes.fromhex(body["leaf"])
        assert merkle.leaf_hash(leaf).hex() == body["leaf_hash"]
        assert merkle.verify_inclusion(leaf, seq - 1, checkpoint.size, proof, root)
        assert not merkle.verify_inclusion(
            leaf, seq % checkpoint.size, checkpoint.size, proof, root
        )


def test_api_consistency_proof_links_an_old_checkpoint_to_a_newer_one(
    api: tuple[TestClient, dict[str, str]], registered: Services
) -> None:
    client, auth = api
    old = Checkpoint.from_json(_checkpoint(client, auth))
    _append(registered, 9)
    new = Checkpoint.from_json(_checkpoint(client, auth))
    assert new.size == old.size + 9
    answer = client.get(
        "/api/v1/ledger/proof/consistency",
        headers=auth,
        params={"old": old.size, "new": new.size},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["old_root"], body["new_root"]) == (old.root, new.root)
    assert merkle.verify_consistency(
        old.size,
        new.size,
        bytes.fromhex(old.root),
        bytes.fromhex(new.root),
        [bytes.fromhex(item) for item in body["proof"]],
    )
    default_new = client.get(
        "/api/v1/ledger/proof/consistency", headers=auth, params={"old": old.size}
    ).json()
    assert default_new["new_size"] == new.size and default_new["proof"] == body["proof"]


def test_api_refuses_camera_hosts_and_anonymous_callers(registered: Services) -> None:
    host = _bearer(registered, "camera_host", ["T1-S1-R1-F"])
    with TestClient(create_app(registered)) as client:
        for path in ("key", "checkpoint", "proof/inclusion?seq=1", "proof/consistency?old=1"):
            answer = client.get(f"/api/v1/ledger/{path}", headers=host)
            assert answer.status_code == 403 and answer.json()["code"] == "forbidden", path
            assert client.get(f"/api/v1/ledger/{path}").status_code == 401, path


def test_api_bad_sizes_are_400_and_an_entry_beyond_the_size_is_404(
    api: tuple[TestClient, dict[str, str]], registered: Services
) -> None:
    client, auth = api
    with registered.db.read() as session:
        head = ledger.verify(session).entries
    cases = {
        f"proof/inclusion?seq={head}&size={head - 1}": (404, "not_found"),
        f"proof/inclusion?seq={head + 1}": (404, "not_found"),
        f"proof/inclusion?seq=1&size={head + 1}": (400, "invalid_request"),
        "proof/inclusion?seq=0": (400, "invalid_request"),
        "proof/inclusion?seq=1&size=0": (400, "invalid_request"),
        "proof/inclusion?seq=x": (400, "invalid_request"),
        "proof/inclusion": (400, "invalid_request"),
        f"proof/consistency?old={head}&new={head - 1}": (400, "invalid_request"),
        f"proof/consistency?old=1&new={head + 1}": (400, "invalid_request"),
        "proof/consistency?old=0": (400, "invalid_request"),
    }
    for path, (status, code) in cases.items():
        answer = client.get(f"/api/v1/ledger/{path}", headers=auth)
        assert (answer.status_code, answer.json()["code"]) == (status, code), path


def test_api_answers_ledger_broken_when_an_entry_is_missing(
    api: tuple[TestClient, dict[str, str]], registered: Services
) -> None:
    client, auth = api
    _append(registered, 3)
    with registered.db.write() as session:
        # An attacker with the database owner's rights: the append-only trigger goes first.
        drop_append_only_guard(session)
        session.execute(delete(LedgerEntry).where(LedgerEntry.seq == 2))
    # No checkpoint yet covers entry 2, so the next one reads it and refuses; its own proof too.
    for path in ("checkpoint", "proof/inclusion?seq=2"):
        answer = client.get(f"/api/v1/ledger/{path}", headers=auth)
        assert answer.status_code == 500, path
        assert answer.json()["code"] == "ledger_broken" and "entry 2" in answer.json()["message"]
    # Proofs of other entries come from the stored tree, which still holds entry 2 as it was
    # committed: they verify against that tree, whose root no rewrite of the table can change.
    answer = client.get("/api/v1/ledger/proof/inclusion?seq=1", headers=auth)
    assert answer.status_code == 200
    proof = answer.json()
    assert merkle.verify_inclusion(
        bytes.fromhex(proof["leaf"]),
        0,
        proof["size"],
        [bytes.fromhex(item) for item in proof["proof"]],
        bytes.fromhex(proof["root"]),
    )


@pytest.fixture
def cli(services: Services, monkeypatch: pytest.MonkeyPatch) -> Services:
    """The CLI pointed at the same database, blob store and key as `services`."""
    monkeypatch.setenv("EXAMVAULT_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("EXAMVAULT_DATABASE_URL", services.settings.resolved_database_url)
    monkeypatch.setenv("EXAMVAULT_STORAGE_URL", services.store.url)
    return services


def _verify(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["ledger", "verify"])
    captured = capsys.readouterr()
    return code, captured.err if code else captured.out


def _rewrite_chain_from(services: Services, seq: int) -> None:
    """What a careful forger with the database owner's rights does: switch off the append-only
    trigger, change an entry and recompute every hash after it, so the chain alone verifies."""
    with services.db.write() as session:
        drop_append_only_guard(session)
        entries = session.scalars(
            select(LedgerEntry).where(LedgerEntry.seq >= seq - 1).order_by(LedgerEntry.seq)
        ).all()
        prev = entries[0].entry_hash if seq > 1 else ledger.GENESIS_HASH
        for entry in entries if seq == 1 else entries[1:]:
            if entry.seq == seq:
                entry.details = ledger.canonical_json({"text": "改写"})
            entry.prev_hash = prev
            entry.entry_hash = ledger.entry_hash(
                seq=entry.seq,
                recorded_at=entry.recorded_at,
                actor=entry.actor,
                action=entry.action,
                subject_type=entry.subject_type,
                subject_id=entry.subject_id,
                details=entry.details,
                prev_hash=prev,
            )
            prev = entry.entry_hash
            # One row at a time: entry_hash is unique, and the new hashes never collide.
            session.flush()


def test_verify_passes_with_checkpoints_and_names_an_edited_entry(
    cli: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(cli, 6)
    _writer(cli).write_if_grown()
    code, out = _verify(capsys)
    assert code == 0 and "6 entries" in out
    assert "1 stored checkpoint(s) match, 1 of them recorded in the database" in out
    with cli.db.write() as session:
        # An attacker with the database owner's rights: the append-only trigger goes first.
        drop_append_only_guard(session)
        session.execute(update(LedgerEntry).where(LedgerEntry.seq == 4).values(actor="intruder"))
    code, err = _verify(capsys)
    assert code == 1
    assert "ledger does not verify: entry 4: content does not match" in err


def test_verify_fails_when_a_row_is_removed(
    cli: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(cli, 6)
    with cli.db.write() as session:
        # An attacker with the database owner's rights: the append-only trigger goes first.
        drop_append_only_guard(session)
        session.execute(delete(LedgerEntry).where(LedgerEntry.seq == 3))
    code, err = _verify(capsys)
    assert code == 1 and "entry 3: entry 3 is missing" in err


def test_verify_fails_when_the_newest_row_is_removed_after_a_checkpoint(
    cli: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    # Dropping the head leaves a chain that verifies on its own; the checkpoint remembers it.
    _append(cli, 5)
    _writer(cli).write_if_grown()
    with cli.db.write() as session:
        # An attacker with the database owner's rights: the append-only trigger goes first.
        drop_append_only_guard(session)
        session.execute(delete(LedgerEntry).where(LedgerEntry.seq == 5))
    code, err = _verify(capsys)
    assert code == 1
    assert f"{checkpoint_key(5)}: it covers 5 entries but the ledger holds only 4" in err
    assert "ledger does not verify" not in err


def test_verify_catches_a_rewrite_that_recomputed_the_chain(
    cli: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(cli, 4)
    _writer(cli).write_if_grown()
    _append(cli, 4)
    _writer(cli).write_if_grown()
    _rewrite_chain_from(cli, 6)
    with cli.db.read() as session:
        assert ledger.verify(session).ok
    code, err = _verify(capsys)
    assert code == 1
    assert f"{checkpoint_key(8)}: its root differs" in err and "entry in 5..8" in err


def test_verify_reports_a_stored_checkpoint_with_a_tampered_signature(
    cli: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(cli, 3)
    _writer(cli).write_if_grown()
    _append(cli, 2)
    _writer(cli).write_if_grown()
    path = cli.store.local_path(checkpoint_key(3))
    assert path is not None
    document = json.loads(path.read_bytes())
    document["timestamp"] = "2020-01-01T00:00:00.000Z"
    # The local store makes objects read-only; a forger with the disk is not stopped by that.
    os.chmod(path, 0o644)
    path.write_text(json.dumps(document))
    code, err = _verify(capsys)
    assert code == 1
    assert f"ledger checkpoint does not verify: {checkpoint_key(3)}: its signature" in err


def test_api_checkpoint_refuses_to_sign_over_a_rewritten_history(
    api: tuple[TestClient, dict[str, str]], registered: Services
) -> None:
    client, auth = api
    _append(registered, 3)
    kept = Checkpoint.from_json(_checkpoint(client, auth))
    _rewrite_chain_from(registered, 2)
    _append(registered, 1)
    answer = client.get("/api/v1/ledger/checkpoint", headers=auth)
    assert answer.status_code == 500, answer.text
    body = answer.json()
    assert body["code"] == "ledger_rewritten"
    assert f"entries 1..{kept.size} no longer give the root" in body["message"]
    assert body["message_zh"]
    assert latest_stored_checkpoint(registered.store) == kept


def test_api_checkpoint_is_stored_and_recorded(
    api: tuple[TestClient, dict[str, str]], registered: Services
) -> None:
    client, auth = api
    _append(registered, 2)
    handed_out = Checkpoint.from_json(_checkpoint(client, auth))
    assert latest_stored_checkpoint(registered.store) == handed_out
    with registered.db.read() as session:
        recorded = latest_recorded_checkpoint(session)
    assert recorded is not None
    assert (recorded.size, recorded.root) == (handed_out.size, handed_out.root)


def test_make_checkpoint_on_s3_refuses_over_a_rewritten_history(
    services: Services, s3_endpoint: str
) -> None:
    store = S3BlobStore(
        bucket=f"ck-{uuid.uuid4().hex}",
        endpoint=s3_endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        secure=False,
        create_bucket=True,
    )
    _append(services, 4)
    kept = make_checkpoint(services.db, store, _signer(services)).checkpoint
    _rewrite_chain_from(services, 3)
    with pytest.raises(LedgerRewritten, match=re.escape("entries 1..4 no longer give the root")):
        make_checkpoint(services.db, store, _signer(services))
    assert latest_stored_checkpoint(store) == kept


def _delete_tail_and_checkpoint_files(services: Services, keep: int) -> None:
    """What an attacker with the disk and the database owner's rights does on the local store:
    drop the entries after `keep` and every checkpoint file that covered them."""
    with services.db.write() as session:
        drop_append_only_guard(session, "ledger_entries")
        session.execute(delete(LedgerEntry).where(LedgerEntry.seq > keep))
    for key in list(services.store.keys("ledger/checkpoints/")):
        path = services.store.local_path(key)
        assert path is not None
        path.unlink()


def test_deleting_the_tail_with_its_checkpoint_files_stops_every_checkpoint_maker(
    cli: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.evidence.exports import _signed_checkpoint

    auth = _bearer(cli, "supervisor")  # entry 1
    _append(cli, 4)
    assert _writer(cli).write_if_grown() is not None
    _delete_tail_and_checkpoint_files(cli, keep=3)
    _append(cli, 1)  # the ledger grows again, as it would, and hides the cut
    removed = "checkpoint 5 (recorded in the database) covers 5 entries but the ledger holds only 4"
    with pytest.raises(LedgerRewritten, match=re.escape(removed)):
        make_checkpoint(cli.db, cli.store, _signer(cli))
    with pytest.raises(LedgerRewritten, match=re.escape(removed)):
        _signed_checkpoint(cli.db, cli.store, _signer(cli), [1])
    assert _writer(cli).write_if_grown() is None
    with TestClient(create_app(cli)) as client:
        answer = client.get("/api/v1/ledger/checkpoint", headers=auth)
    assert (answer.status_code, answer.json()["code"]) == (500, "ledger_rewritten")
    assert list(cli.store.keys("ledger/checkpoints/")) == []
    code, err = _verify(capsys)
    assert code == 1
    assert (
        f"{checkpoint_key(5)} (recorded in the database): it covers 5 entries but the ledger "
        "holds only 4: entries were removed"
    ) in err


def test_verify_fails_when_the_tail_and_its_checkpoint_files_are_deleted(
    cli: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(cli, 6)
    _writer(cli).write_if_grown()
    _delete_tail_and_checkpoint_files(cli, keep=4)
    with cli.db.read() as session:
        assert ledger.verify(session).ok  # the chain alone cannot see a cut tail
    code, err = _verify(capsys)
    assert code == 1
    assert (
        f"{checkpoint_key(6)} (recorded in the database): it covers 6 entries but the ledger "
        "holds only 4: entries were removed"
    ) in err


def test_verify_fails_when_a_recorded_checkpoint_file_is_deleted(
    cli: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(cli, 3)
    _writer(cli).write_if_grown()
    path = cli.store.local_path(checkpoint_key(3))
    assert path is not None
    path.unlink()
    code, err = _verify(capsys)
    assert code == 1
    assert f"{checkpoint_key(3)} (recorded in the database): it is recorded in the" in err
    assert "missing from the store" in err


def test_writer_checkpoints_after_every_n_entries(services: Services) -> None:
    writer = CheckpointWriter(
        services.db, services.store, services.settings.data_dir, every_entries=3, every_seconds=3600
    )
    _append(services, 1)
    first = writer.write_if_due()  # nothing vouched for yet: the first one is due at once
    assert first is not None and first.size == 1
    _append(services, 2)
    assert writer.write_if_due() is None
    _append(services, 1)
    second = writer.write_if_due()
    assert second is not None and second.size == 4
    assert writer.run_once() <= 1.0  # polled often enough for the entry bound to hold


def test_writer_checkpoints_after_t_seconds_when_the_ledger_grew(services: Services) -> None:
    writer = CheckpointWriter(
        services.db,
        services.store,
        services.settings.data_dir,
        every_entries=1000,
        every_seconds=1.5,
    )
    _append(services, 1)
    assert writer.write_if_due() is not None
    _append(services, 1)
    assert writer.write_if_due() is None
    time.sleep(1.6)
    due = writer.write_if_due()
    assert due is not None and due.size == 2
    time.sleep(1.6)
    assert writer.write_if_due() is None  # no new entry, nothing to vouch for


def test_a_checkpoint_cadence_that_is_not_positive_is_refused() -> None:
    for name, value in (("ledger_checkpoint_entries", 0), ("ledger_checkpoint_seconds", -1.0)):
        with pytest.raises(SettingsError, match=f"EXAMVAULT_{name.upper()}="):
            load_settings(**{name: value})


def test_serve_runs_the_writer_at_the_configured_cadence(services: Services) -> None:
    configured = services.settings.model_copy(
        update={"ledger_checkpoint_entries": 7, "ledger_checkpoint_seconds": 5.0}
    )
    jobs = dataclasses.replace(services, settings=configured).background_jobs()
    (writer,) = [job for job in jobs if isinstance(job, CheckpointWriter)]
    assert (writer.every_entries, writer.every_seconds) == (7, 5.0)
    defaults = services.settings
    assert (defaults.ledger_checkpoint_entries, defaults.ledger_checkpoint_seconds) == (1000, 60.0)


def test_a_process_with_another_signing_key_refuses_to_sign(
    api: tuple[TestClient, dict[str, str]], registered: Services
) -> None:
    """Two machines that each made their own key (the key file not copied) would leave a
    checkpoint chain no one key verifies: the second one refuses, in the writer and the API."""
    client, auth = api
    _append(registered, 3)
    other = CheckpointSigner(Ed25519PrivateKey.generate())
    first = make_checkpoint(registered.db, registered.store, other).checkpoint
    _append(registered, 1)
    with pytest.raises(SigningKeyChanged, match=f"signed with key {other.key_id}"):
        make_checkpoint(
            registered.db, registered.store, load_or_create_signer(registered.settings.data_dir)
        )
    answer = client.get("/api/v1/ledger/checkpoint", headers=auth)
    assert answer.status_code == 500, answer.text
    assert answer.json()["code"] == "signing_key_changed"
    assert latest_stored_checkpoint(registered.store) == first
    # The key that made the chain signs on.
    assert make_checkpoint(registered.db, registered.store, other).checkpoint.size > first.size
