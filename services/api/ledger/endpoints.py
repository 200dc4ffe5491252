"""The verifiable ledger over HTTP: the signing key, a fresh signed checkpoint (stored and
recorded like every checkpoint), and RFC 9162 inclusion and consistency proofs (docs/ledger.md
says how a supervisor checks them)."""

from __future__ import annotations

import base64
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from services.api.deps import (
    MAX_LEDGER_SEQ,
    AdminSubject,
    CurrentSubject,
    ServicesDep,
    Subject,
)
from services.api.errors import ApiError
from services.api.ledger.schemas import (
    CheckpointOut,
    ConsistencyProofOut,
    InclusionProofOut,
    LedgerEntryList,
    LedgerEntryOut,
    SigningKeyOut,
)
from services.ledger.checkpoints import (
    EntryNotInTree,
    LedgerBroken,
    LedgerRewritten,
    ProofRequestError,
    consistency_proof_for,
    inclusion_proof_for,
    make_checkpoint,
)
from services.ledger.keys import load_or_create_signer
from services.timefmt import rfc3339
from storage.blobs import BlobStoreError
from storage.ledger import format_instant
from storage.models import LedgerEntry

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/ledger", tags=["ledger"])


def _ledger_reader(subject: CurrentSubject) -> Subject:
    # Camera hosts push footage and nothing else (SPEC.md "Security model"); every person and
    # integration may check the ledger, which names no footage and holds no secrets.
    if subject.role == "camera_host":
        raise ApiError(403, "forbidden", "camera hosts may not read the ledger")
    return subject


LedgerReader = Annotated[Subject, Depends(_ledger_reader)]


def _broken(exc: LedgerBroken) -> ApiError:
    return ApiError(500, "ledger_broken", f"the ledger's tree cannot be built: {exc}")


@router.get("/key", response_model=SigningKeyOut, summary="The checkpoint signing key")
def get_key(services: ServicesDep, _subject: LedgerReader) -> SigningKeyOut:
    signer = load_or_create_signer(services.settings.data_dir)
    return SigningKeyOut(
        algorithm="Ed25519",
        key_id=signer.key_id,
        fingerprint=signer.fingerprint,
        public_key=base64.b64encode(signer.public_key_raw).decode("ascii"),
        public_key_pem=signer.public_key_pem,
    )


@router.get(
    "/checkpoint", response_model=CheckpointOut, summary="A fresh signed checkpoint of the ledger"
)
def get_checkpoint(services: ServicesDep, _subject: LedgerReader) -> CheckpointOut:
    signer = load_or_create_signer(services.settings.data_dir)
    try:
        checkpoint = make_checkpoint(services.db, services.store, signer).checkpoint
    except LedgerRewritten as exc:
        logger.error("checkpoint refused: %s", exc)
        raise ApiError(
            500,
            "ledger_rewritten",
            f"no checkpoint is signed over a rewritten ledger: {exc}",
        ) from exc
    except LedgerBroken as exc:
        raise _broken(exc) from exc
    except BlobStoreError as exc:
        logger.error("checkpoint could not be stored: %s", exc)
        raise ApiError(
            503, "store_unavailable", f"the checkpoint could not be stored: {exc}"
        ) from exc
    return CheckpointOut(**checkpoint.as_json())


@router.get(
    "/proof/inclusion",
    response_model=InclusionProofOut,
    summary="Proof that entry `seq` is in the tree of the first `size` entries",
)
def get_inclusion_proof(
    services: ServicesDep,
    _subject: LedgerReader,
    seq: Annotated[int, Query(ge=1, le=MAX_LEDGER_SEQ, description="the entry")],
    size: Annotated[
        int | None, Query(ge=1, le=MAX_LEDGER_SEQ, description="tree size; default: all")
    ] = None,
) -> InclusionProofOut:
    try:
        with services.db.read() as session:
            proof = inclusion_proof_for(session, seq, size)
    except EntryNotInTree as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except ProofRequestError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from exc
    except LedgerBroken as exc:
        raise _broken(exc) from exc
    return InclusionProofOut(
        seq=proof.seq,
        size=proof.size,
        leaf_index=proof.leaf_index,
        leaf=proof.leaf,
        leaf_hash=proof.leaf_hash,
        root=proof.root,
        proof=proof.proof,
    )


@router.get(
    "/proof/consistency",
    response_model=ConsistencyProofOut,
    summary="Proof that the tree of `old` entries is a prefix of the tree of `new`",
)
def get_consistency_proof(
    services: ServicesDep,
    _subject: LedgerReader,
    old: Annotated[int, Query(ge=1, le=MAX_LEDGER_SEQ, description="the older tree size")],
    new: Annotated[
        int | None, Query(ge=1, le=MAX_LEDGER_SEQ, description="the newer tree size; default: all")
    ] = None,
) -> ConsistencyProofOut:
    try:
        with services.db.read() as session:
            proof = consistency_proof_for(session, old, new)
    except ProofRequestError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from exc
    except LedgerBroken as exc:
        raise _broken(exc) from exc
    return ConsistencyProofOut(
        old_size=proof.old_size,
        new_size=proof.new_size,
        old_root=proof.old_root,
        new_root=proof.new_root,
        proof=proof.proof,
    )


@router.get(
    "/entries",
    response_model=LedgerEntryList,
    summary="Read the ledger (centre only): who did what, filtered, oldest first, paged",
)
def list_entries(
    services: ServicesDep,
    _subject: AdminSubject,
    after: Annotated[int, Query(ge=0, le=MAX_LEDGER_SEQ, description="entries after seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    actor: Annotated[str | None, Query(description="e.g. supervisor:zhang")] = None,
    action: Annotated[str | None, Query(description="e.g. footage.content")] = None,
    subject_type: Annotated[str | None, Query()] = None,
    subject_id: Annotated[str | None, Query()] = None,
) -> LedgerEntryList:
    # The entries themselves name who watched which footage: that is for the centre, while
    # anyone may check proofs over their hashes.
    query = select(LedgerEntry).where(LedgerEntry.seq > after)
    for column, value in (
        (LedgerEntry.actor, actor),
        (LedgerEntry.action, action),
        (LedgerEntry.subject_type, subject_type),
        (LedgerEntry.subject_id, subject_id),
    ):
        if value is not None:
            query = query.where(column == value)
    zone = services.settings.zone
    with services.db.read() as session:
        rows = session.scalars(query.order_by(LedgerEntry.seq).limit(limit + 1)).all()
    page = rows[:limit]
    return LedgerEntryList(
        entries=[
            LedgerEntryOut(
                seq=row.seq,
                recorded_at=rfc3339(row.recorded_at, zone),
                recorded_at_hashed=format_instant(row.recorded_at),
                actor=row.actor,
                action=row.action,
                subject_type=row.subject_type,
                subject_id=row.subject_id,
                details=row.details,
                prev_hash=row.prev_hash,
                entry_hash=row.entry_hash,
            )
            for row in page
        ],
        next_after=page[-1].seq if len(rows) > limit else None,
    )
