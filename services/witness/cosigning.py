"""The centre's side: ask each configured witness (EXAMVAULT_WITNESSES) to cosign checkpoints,
and keep the cosignatures in `ledger_cosignatures`.

Never on ingest's path: the `WitnessCosigner` thread asks in the background with a short
timeout, and asks again later for the newest checkpoint a witness has not cosigned yet. A
witness that is down only delays its cosignature; a witness that refuses is logged with its
reason (a refusal means the witness saw a history this one does not extend: look at it).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, literal, select, tuple_

from services.background import BackgroundThread
from services.ledger.checkpoints import (
    Checkpoint,
    CheckpointFormatError,
    LedgerBroken,
    ProofRequestError,
    checkpoint_key,
    consistency_proof_for,
    latest_recorded_checkpoint,
    read_stored,
)
from services.witness.cosignatures import (
    Cosignature,
    CosignatureFormatError,
    WitnessEndpoint,
    verify_cosignature,
)
from storage import ledger
from storage.blobs import BlobStore, BlobStoreError
from storage.db import Database
from storage.models import LedgerCosignature

logger = logging.getLogger(__name__)


class WitnessUnavailable(Exception):
    """The witness did not answer in time, or answered with something that is no answer."""


class WitnessRefused(Exception):
    """The witness answered and would not cosign; `code` and the message are its own."""

    def __init__(self, status: int, code: str, message: str, size: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.size = status, code, size


def _post(url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read(65536))
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read(65536))
        except ValueError:
            error = {}
        if not isinstance(error, dict):
            error = {}
        size = error.get("size")
        raise WitnessRefused(
            exc.code,
            str(error.get("code", "unknown")),
            str(error.get("message", exc.reason)),
            size if isinstance(size, int) and not isinstance(size, bool) else None,
        ) from exc
    except (OSError, ValueError) as exc:
        raise WitnessUnavailable(f"{url}: {exc}") from exc
    if not isinstance(answer, dict):
        raise WitnessUnavailable(f"{url}: the answer is not a JSON object")
    return answer


def _ask(
    db: Database, witness: WitnessEndpoint, checkpoint: Checkpoint, old_size: int, timeout: float
) -> Cosignature:
    with db.read() as session:
        proof = (
            consistency_proof_for(session, old_size, checkpoint.size).proof
            if 0 < old_size < checkpoint.size
            else []
        )
    answer = _post(
        f"{witness.url}/add-checkpoint",
        {"old_size": old_size, "consistency_proof": proof, "checkpoint": checkpoint.as_json()},
        timeout,
    )
    try:
        cosignature = Cosignature.from_json(answer.get("cosignature"))
    except CosignatureFormatError as exc:
        raise WitnessUnavailable(f"{witness.url}: the answer holds no cosignature: {exc}") from exc
    problem = verify_cosignature(cosignature, checkpoint, witness.public_key)
    if problem is not None:
        # Not the witness we were told of, or a broken one: nothing to keep.
        raise WitnessUnavailable(f"{witness.url}: its cosignature is no good: {problem}")
    return cosignature


def _last_cosigned_size(db: Database, witness: WitnessEndpoint, below: int) -> int:
    with db.read() as session:
        return (
            session.scalar(
                select(func.max(LedgerCosignature.checkpoint_size)).where(
                    LedgerCosignature.witness_key_id == witness.key_id,
                    LedgerCosignature.checkpoint_size <= below,
                )
            )
            or 0
        )


def request_cosignature(
    db: Database, witness: WitnessEndpoint, checkpoint: Checkpoint, timeout: float
) -> Cosignature:
    """Ask `witness` to cosign `checkpoint`, with a proof from the size it last cosigned (what
    the database remembers first, then what the witness says); keep and return its answer.
    Raises WitnessUnavailable or WitnessRefused."""
    old_size = _last_cosigned_size(db, witness, checkpoint.size)
    try:
        cosignature = _ask(db, witness, checkpoint, old_size, timeout)
    except WitnessRefused as refusal:
        # The witness remembers another size (its state is its own): one retry from there.
        if refusal.code != "old_size_mismatch" or refusal.size is None:
            raise
        if refusal.size > checkpoint.size:
            raise WitnessRefused(
                refusal.status,
                refusal.code,
                f"the witness already cosigned size {refusal.size}, beyond {checkpoint.size}",
                refusal.size,
            ) from refusal
        cosignature = _ask(db, witness, checkpoint, refusal.size, timeout)
    keep_cosignature(db, cosignature)
    return cosignature


def keep_cosignature(db: Database, cosignature: Cosignature) -> None:
    def write(session: Any) -> None:
        exists = session.get(
            LedgerCosignature, (cosignature.checkpoint_size, cosignature.witness_key_id)
        )
        if exists is None:
            session.add(
                LedgerCosignature(
                    checkpoint_size=cosignature.checkpoint_size,
                    witness_key_id=cosignature.witness_key_id,
                    checkpoint_root=cosignature.checkpoint_root,
                    timestamp=cosignature.timestamp,
                    signature=cosignature.signature,
                    recorded_at=datetime.now(UTC),
                )
            )

    db.run_write(write)


def cosignatures_of(db: Database, checkpoint: Checkpoint) -> list[Cosignature]:
    with db.read() as session:
        rows = session.scalars(
            select(LedgerCosignature)
            .where(
                LedgerCosignature.checkpoint_size == checkpoint.size,
                LedgerCosignature.checkpoint_root == checkpoint.root,
            )
            .order_by(LedgerCosignature.witness_key_id)
        ).all()
        return [
            Cosignature(
                witness_key_id=row.witness_key_id,
                checkpoint_size=row.checkpoint_size,
                checkpoint_root=row.checkpoint_root,
                timestamp=row.timestamp,
                signature=row.signature,
            )
            for row in rows
        ]


# (witness key_id, code) of refusals already ledgered by this process: a witness that parted
# ways with this ledger refuses every later checkpoint too, and one entry says it.
_ledgered_refusals: set[tuple[str, str]] = set()


def _ledger_refusal(
    db: Database, witness: WitnessEndpoint, checkpoint: Checkpoint, refusal: WitnessRefused
) -> None:
    """A witness that answered and would not cosign saw a history this ledger does not extend
    (or the centre misbehaves): that goes in the ledger, not only in a log."""
    if (witness.key_id, refusal.code) in _ledgered_refusals:
        return
    db.run_write(
        lambda session: ledger.append(
            session,
            actor="witnesses",
            action="witness.refused",
            subject_type="witness",
            subject_id=witness.key_id,
            details={
                "url": witness.url,
                "checkpoint_size": checkpoint.size,
                "checkpoint_root": checkpoint.root,
                "status": refusal.status,
                "code": refusal.code,
                "message": str(refusal),
            },
        )
    )
    _ledgered_refusals.add((witness.key_id, refusal.code))


def cosign_now(
    db: Database, witnesses: list[WitnessEndpoint], checkpoint: Checkpoint, timeout: float
) -> list[Cosignature]:
    """Every cosignature of `checkpoint` the witnesses give within `timeout` each (an export
    asks once and carries what it got; the background cosigner keeps asking for the rest)."""
    have = {item.witness_key_id for item in cosignatures_of(db, checkpoint)}
    for witness in witnesses:
        if witness.key_id in have:
            continue
        try:
            request_cosignature(db, witness, checkpoint, timeout)
        except WitnessRefused as refusal:
            logger.error(
                "checkpoint %d not cosigned by witness %s (%s): refused, %s",
                checkpoint.size,
                witness.key_id,
                witness.url,
                refusal,
            )
            _ledger_refusal(db, witness, checkpoint, refusal)
        except (WitnessUnavailable, LedgerBroken, ProofRequestError) as exc:
            logger.warning(
                "checkpoint %d not cosigned by witness %s (%s): %s",
                checkpoint.size,
                witness.key_id,
                witness.url,
                exc,
            )
    return cosignatures_of(db, checkpoint)


class WitnessCosigner(BackgroundThread):
    """Asks every configured witness to cosign the newest recorded checkpoint it has not
    cosigned yet; a witness that is down or refuses is asked again `retry_seconds` later."""

    name = "ledger-witnesses"

    def __init__(
        self,
        db: Database,
        store: BlobStore,
        witnesses: list[WitnessEndpoint],
        *,
        timeout: float = 2.0,
        retry_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        self.db, self.store, self.witnesses = db, store, witnesses
        self.timeout, self.retry_seconds = timeout, retry_seconds

    def run_once(self) -> float:
        self.cosign_latest()
        return self.retry_seconds

    def cosign_latest(self) -> list[Cosignature]:
        with self.db.read() as session:
            record = latest_recorded_checkpoint(session)
        if record is None or not self.witnesses:
            return []
        try:
            checkpoint = Checkpoint.from_json(read_stored(self.store, checkpoint_key(record.size)))
        except (CheckpointFormatError, BlobStoreError) as exc:
            logger.error("checkpoint %d not sent to witnesses: %s", record.size, exc)
            return []
        before = {item.witness_key_id for item in cosignatures_of(self.db, checkpoint)}
        gained = cosign_now(self.db, self.witnesses, checkpoint, self.timeout)
        for item in gained:
            if item.witness_key_id not in before:
                logger.info(
                    "checkpoint %d cosigned by witness %s", checkpoint.size, item.witness_key_id
                )
        return gained


@dataclass(frozen=True)
class CosignatureVerdict:
    """What `ledger verify` says of the stored cosignatures: how many verified with a configured
    witness key, how many came from a witness no longer configured (not checkable here), and
    the first that failed, if any."""

    verified: int
    unknown_witness: int
    mismatch: str | None

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def verify_stored_cosignatures(
    session: Any, store: BlobStore, witnesses: list[WitnessEndpoint], batch: int = 1000
) -> CosignatureVerdict:
    """Re-check every kept cosignature against the stored checkpoint of its size and the
    configured witness's key. A row changed in the database (its signature, its root or its
    time) no longer verifies, and a row whose checkpoint file is gone is named: a cosignature is
    only worth keeping if anyone can check it later."""
    keys = {witness.key_id: witness.public_key for witness in witnesses}
    verified = unknown = 0
    checkpoints: dict[int, Checkpoint | str] = {}
    after: tuple[int, str] = (-1, "")
    while True:
        rows = session.scalars(
            select(LedgerCosignature)
            .where(
                tuple_(LedgerCosignature.checkpoint_size, LedgerCosignature.witness_key_id)
                > tuple_(literal(after[0]), literal(after[1]))
            )
            .order_by(LedgerCosignature.checkpoint_size, LedgerCosignature.witness_key_id)
            .limit(batch)
        ).all()
        if not rows:
            return CosignatureVerdict(verified, unknown, None)
        for row in rows:
            after = (row.checkpoint_size, row.witness_key_id)
            name = (
                f"cosignature of checkpoint {row.checkpoint_size} by witness {row.witness_key_id}"
            )
            public_key = keys.get(row.witness_key_id)
            if public_key is None:
                unknown += 1
                continue
            checkpoint = checkpoints.get(row.checkpoint_size)
            if checkpoint is None:
                checkpoint = _stored_checkpoint(store, row.checkpoint_size)
                checkpoints = {row.checkpoint_size: checkpoint}  # rows come size by size
            if isinstance(checkpoint, str):
                return CosignatureVerdict(verified, unknown, f"{name}: {checkpoint}")
            cosignature = Cosignature(
                witness_key_id=row.witness_key_id,
                checkpoint_size=row.checkpoint_size,
                checkpoint_root=row.checkpoint_root,
                timestamp=row.timestamp,
                signature=row.signature,
            )
            problem = verify_cosignature(cosignature, checkpoint, public_key)
            if problem is not None:
                return CosignatureVerdict(verified, unknown, f"{name}: {problem}")
            verified += 1


def _stored_checkpoint(store: BlobStore, size: int) -> Checkpoint | str:
    """The stored checkpoint of `size`, or why it cannot be read."""
    try:
        return Checkpoint.from_json(read_stored(store, checkpoint_key(size)))
    except (BlobStoreError, OSError) as exc:  # the local store says FileNotFoundError
        return f"its checkpoint {checkpoint_key(size)} cannot be read from the store: {exc}"
    except CheckpointFormatError as exc:
        return f"its checkpoint {checkpoint_key(size)} is not a checkpoint: {exc}"
