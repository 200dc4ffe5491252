"""The verifiable ledger over HTTP: the signing key, a fresh signed checkpoint (stored and
recorded like every checkpoint), and RFC 9162 inclusion and consistency proofs (docs/ledger.md
says how a supervisor checks them)."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.deps import (
    MAX_LEDGER_SEQ,
    AdminSubject,
    CurrentSubject,
    ServicesDep,
    Subject,
    instant_param,
)
from services.api.errors import ApiError
from services.api.ledger.schemas import (
    MAX_ENTRIES_PAGE,
    CheckIn,
    CheckpointOut,
    CheckpointRecordOut,
    ConsistencyProofOut,
    CosignatureOut,
    InclusionProofOut,
    LedgerCheckOut,
    LedgerEntryList,
    LedgerEntryOut,
    LedgerStatusOut,
    SigningKeyOut,
    TreeRootOut,
    WitnessOut,
)
from services.coverage.spans import required_interval
from services.ledger.checkpoints import (
    EntryNotInTree,
    LedgerBroken,
    LedgerRewritten,
    ProofRequestError,
    SigningKeyChanged,
    consistency_proof_for,
    inclusion_proof_for,
    make_checkpoint,
)
from services.ledger.keys import load_or_create_signer
from services.ledger.status import (
    RECENT_MAX,
    EntryFilter,
    SittingScope,
    check_recent,
    entries_query,
    ledger_status,
)
from services.timefmt import rfc3339
from services.witness.cosignatures import parse_witnesses
from storage.blobs import BlobStoreError
from storage.ledger import format_instant
from storage.models import Camera, LedgerCheck, LedgerEntry, Sitting

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
    if isinstance(exc, SigningKeyChanged):
        logger.error("checkpoint refused: %s", exc)
        return ApiError(500, "signing_key_changed", f"no checkpoint is signed: {exc}")
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
    summary="Read the ledger (centre only): who did what, filtered, paged by seq",
)
def list_entries(
    services: ServicesDep,
    _subject: AdminSubject,
    after: Annotated[int, Query(ge=0, le=MAX_LEDGER_SEQ, description="entries after seq")] = 0,
    before: Annotated[
        int | None,
        Query(ge=1, le=MAX_LEDGER_SEQ, description="order=desc: entries before seq"),
    ] = None,
    order: Annotated[Literal["asc", "desc"], Query(description="asc: oldest first")] = "asc",
    limit: Annotated[int, Query(ge=1, le=MAX_ENTRIES_PAGE)] = 200,
    actor: Annotated[str | None, Query(max_length=200, description="e.g. supervisor:zhang")] = None,
    action: Annotated[str | None, Query(max_length=64, description="e.g. footage.content")] = None,
    kind: Annotated[
        str | None, Query(max_length=32, description="an action's prefix: footage, export, ...")
    ] = None,
    subject_type: Annotated[str | None, Query(max_length=32)] = None,
    subject_id: Annotated[str | None, Query(max_length=200)] = None,
    sitting: Annotated[
        str | None,
        Query(max_length=64, description="its exports and findings, its cameras' footage reads"),
    ] = None,
    camera: Annotated[
        str | None, Query(max_length=64, description="its footage reads and its segments' entries")
    ] = None,
    from_: Annotated[str | None, Query(alias="from", description="recorded at or after")] = None,
    until: Annotated[str | None, Query(description="recorded before")] = None,
) -> LedgerEntryList:
    # The entries themselves name who watched which footage: that is for the centre, while
    # anyone may check proofs over their hashes.
    since, before_instant = instant_param(from_, "from"), instant_param(until, "until")
    zone = services.settings.zone
    with services.db.read() as session:
        scope = None
        if sitting:
            scope = _sitting_scope(session, services, sitting)
            if scope is None:
                return LedgerEntryList(entries=[], next_after=None, next_before=None)
        wanted = EntryFilter(
            actor=actor or None,
            action=action or None,
            kind=kind or None,
            subject_type=subject_type or None,
            subject_id=subject_id or None,
            sitting=scope,
            camera=camera or None,
            since=since,
            until=before_instant,
        )
        query = entries_query(session, wanted)
        if order == "desc":
            if before is not None:
                query = query.where(LedgerEntry.seq < before)
            query = query.order_by(LedgerEntry.seq.desc())
        else:
            query = query.where(LedgerEntry.seq > after).order_by(LedgerEntry.seq)
        rows = session.scalars(query.limit(limit + 1)).all()
    page = rows[:limit]
    more = len(rows) > limit
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
        next_after=page[-1].seq if more and order == "asc" else None,
        next_before=page[-1].seq if more and order == "desc" else None,
    )


def _sitting_scope(session: Session, services: ServicesDep, code: str) -> SittingScope | None:
    sitting = session.scalar(select(Sitting).where(Sitting.code == code))
    if sitting is None:
        return None
    cameras = session.execute(
        select(Camera.id, Camera.code).where(Camera.room_id == sitting.room_id)
    ).all()
    span = required_interval(sitting, services.settings)
    return SittingScope(
        code=sitting.code,
        camera_ids=tuple(camera_id for camera_id, _ in cameras),
        camera_codes=tuple(camera_code for _, camera_code in cameras),
        start=span.start,
        end=span.end,
    )


def _check_out(check: LedgerCheck | None, zone: tzinfo) -> LedgerCheckOut | None:
    if check is None:
        return None
    return LedgerCheckOut(
        kind=check.kind,
        actor=check.actor,
        started_at=rfc3339(check.started_at, zone),
        finished_at=rfc3339(check.finished_at, zone),
        first_seq=check.first_seq,
        last_seq=check.last_seq,
        ok=check.ok,
        problem=check.problem,
    )


@router.get(
    "/status",
    response_model=LedgerStatusOut,
    summary="Length, latest checkpoint and its age, cosignatures, recorded checks (centre only)",
)
def get_status(services: ServicesDep, _subject: AdminSubject) -> LedgerStatusOut:
    zone = services.settings.zone
    now = datetime.now(UTC)
    witnesses = parse_witnesses(services.settings.witnesses)
    with services.db.read() as session:
        status = ledger_status(session, [witness.key_id for witness in witnesses])
    record = status.checkpoint
    cosigned = {cosignature.witness_key_id: cosignature for cosignature in status.cosignatures}
    return LedgerStatusOut(
        size=status.size,
        tree_size=status.tree_size,
        checkpoint=CheckpointRecordOut(
            size=record.size,
            root=record.root,
            key_id=record.key_id,
            signed_at=rfc3339(record.signed_at, zone),
            age_seconds=max(0.0, (now - record.signed_at).total_seconds()),
            unsigned_entries=max(0, status.size - record.size),
        )
        if record
        else None,
        tree_root=TreeRootOut(
            size=status.tree_root.size, ok=status.tree_root.ok, problem=status.tree_root.problem
        )
        if status.tree_root
        else None,
        witnesses=[
            WitnessOut(
                url=witness.url,
                key_id=witness.key_id,
                cosigned_latest=witness.key_id in cosigned,
                cosigned_size=status.cosigned_sizes.get(witness.key_id),
                cosigned_at=rfc3339(cosigned[witness.key_id].recorded_at, zone)
                if witness.key_id in cosigned
                else None,
            )
            for witness in witnesses
        ],
        cosignatures=[
            CosignatureOut(
                witness_key_id=cosignature.witness_key_id,
                timestamp=rfc3339(datetime.fromtimestamp(cosignature.timestamp, UTC), zone),
                recorded_at=rfc3339(cosignature.recorded_at, zone),
            )
            for cosignature in status.cosignatures
        ],
        last_full_check=_check_out(status.last_full, zone),
        last_recent_check=_check_out(status.last_recent, zone),
        recent_max=RECENT_MAX,
    )


@router.post(
    "/checks",
    status_code=201,
    response_model=LedgerCheckOut,
    summary="Check the newest entries and the latest checkpoint's root now, and record it",
)
def post_check(body: CheckIn, services: ServicesDep, subject: AdminSubject) -> LedgerCheckOut:
    check = services.db.run_write(
        lambda session: _check_out(
            check_recent(session, body.entries, actor=subject.actor), services.settings.zone
        )
    )
    assert check is not None
    if not check.ok:
        logger.error(
            "ledger check of entries %d..%d failed: %s",
            check.first_seq,
            check.last_seq,
            check.problem,
        )
    return check
