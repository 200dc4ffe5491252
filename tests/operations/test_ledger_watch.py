"""The ledger's signature lag on /metrics (services/operations/ledger_watch.py): the latest
checkpoint's age, the oldest unsigned entry's age and each witness's cosignature age and wait
move as entries, checkpoints and cosignatures come, from figures read in the background."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from services.context import Services
from services.ledger.checkpoints import Checkpoint, consistency_proof_for, make_checkpoint
from services.ledger.keys import load_or_create_signer
from services.operations.ledger_watch import LedgerWatch
from services.settings import load_settings
from services.witness.cosignatures import Cosignature, witness_key_text
from services.witness.cosigning import keep_cosignature
from services.witness.server import Witness, load_or_create_witness_signer, log_keys_by_id
from services.witness.state import WitnessState
from tests.witness.harness import add_entries


def _scrape(services: Services) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    services.readiness.ledger_watch.run_once()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(services.metrics.render())
        for sample in family.samples
    }


def _checkpoint(services: Services) -> Checkpoint:
    signer = load_or_create_signer(services.settings.data_dir)
    return make_checkpoint(services.db, services.store, signer).checkpoint


def test_checkpoint_and_unsigned_ages_move_with_the_ledger(services: Services) -> None:
    assert ("examvault_ledger_checkpoint_age_seconds", ()) not in _scrape(services)
    add_entries(services, 3)
    first = _checkpoint(services)
    scraped = _scrape(services)
    assert scraped[("examvault_ledger_checkpoint_size", ())] == first.size
    assert scraped[("examvault_ledger_unsigned_age_seconds", ())] == 0
    signed_age = scraped[("examvault_ledger_checkpoint_age_seconds", ())]

    add_entries(services, 2)  # entries no checkpoint covers yet
    time.sleep(0.3)
    scraped = _scrape(services)
    assert scraped[("examvault_ledger_checkpoint_age_seconds", ())] >= signed_age + 0.3
    unsigned = scraped[("examvault_ledger_unsigned_age_seconds", ())]
    assert unsigned >= 0.25
    time.sleep(0.2)
    # The figures stand; the ages grow at scrape time without another read.
    later = {
        sample.name: sample.value
        for family in text_string_to_metric_families(services.metrics.render())
        for sample in family.samples
    }
    assert later["examvault_ledger_unsigned_age_seconds"] >= unsigned + 0.2

    second = _checkpoint(services)
    scraped = _scrape(services)
    assert scraped[("examvault_ledger_checkpoint_size", ())] == second.size == first.size + 2
    assert scraped[("examvault_ledger_unsigned_age_seconds", ())] == 0
    assert scraped[("examvault_ledger_checkpoint_age_seconds", ())] < 0.3 + signed_age


def _cosign(services: Services, witness: Witness, checkpoint: Checkpoint, old_size: int) -> None:
    with services.db.read() as session:
        proof = consistency_proof_for(session, old_size, checkpoint.size).proof if old_size else []
    answer = witness.add_checkpoint(
        {"old_size": old_size, "consistency_proof": proof, "checkpoint": checkpoint.as_json()}
    )
    keep_cosignature(services.db, Cosignature.from_json(answer["cosignature"]))


def test_witness_cosignature_age_and_wait_move_per_witness(
    services: Services, tmp_path: Path
) -> None:
    centre_key = load_or_create_signer(services.settings.data_dir)
    witness = Witness(
        load_or_create_witness_signer(tmp_path / "w"),
        WitnessState(tmp_path / "w"),
        log_keys_by_id([centre_key.public_key]),
    )
    idle = "0123456789abcdef"  # configured, never answers
    key_id = witness.signer.key_id
    services.readiness.ledger_watch = LedgerWatch(services.db, (key_id, idle), interval=1)
    add_entries(services, 3)
    first = _checkpoint(services)
    time.sleep(0.2)
    scraped = _scrape(services)
    labels = (("witness", key_id),)
    assert scraped[("examvault_witness_cosigned_size", labels)] == 0
    assert ("examvault_witness_cosignature_age_seconds", labels) not in scraped
    assert scraped[("examvault_witness_waiting_seconds", labels)] >= 0.2

    _cosign(services, witness, first, 0)
    scraped = _scrape(services)
    assert scraped[("examvault_witness_cosigned_size", labels)] == first.size
    assert scraped[("examvault_witness_waiting_seconds", labels)] == 0
    cosigned_age = scraped[("examvault_witness_cosignature_age_seconds", labels)]

    add_entries(services, 2)
    second = _checkpoint(services)
    time.sleep(0.2)
    add_entries(services, 1)
    _checkpoint(services)  # a newer checkpoint does not reset the wait for the older one
    scraped = _scrape(services)
    waiting = scraped[("examvault_witness_waiting_seconds", labels)]
    assert waiting >= 0.2
    assert scraped[("examvault_witness_cosignature_age_seconds", labels)] >= cosigned_age + 0.2
    idle_wait = scraped[("examvault_witness_waiting_seconds", (("witness", idle),))]
    assert idle_wait >= waiting  # waiting since the first checkpoint

    _cosign(services, witness, second, first.size)
    scraped = _scrape(services)
    assert scraped[("examvault_witness_cosigned_size", labels)] == second.size
    # Still one checkpoint behind, but waiting only since that one was signed.
    assert scraped[("examvault_witness_waiting_seconds", labels)] < waiting


def test_the_configured_witnesses_are_watched(tmp_path: Path, database_url: str) -> None:
    key = witness_key_text(load_or_create_witness_signer(tmp_path / "w").public_key)
    settings = load_settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        witnesses=f"http://127.0.0.1:9/ {key}",
    )
    services = Services.from_settings(settings)
    try:
        key_id = load_or_create_witness_signer(tmp_path / "w").key_id
        assert services.readiness.ledger_watch.witness_key_ids == (key_id,)
    finally:
        services.close()
