"""What the verifiable-ledger routes answer: exactly the documents a supervisor keeps."""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.ledger.status import RECENT_MAX


class SigningKeyOut(BaseModel):
    algorithm: str = Field(description="always Ed25519")
    key_id: str = Field(description="first 16 hex digits of SHA-256 of the raw public key")
    fingerprint: str = Field(
        description="SHA-256 of the raw public key, 64 hex digits: what `examvault verify-export "
        "--key-fingerprint` takes, and what the centre publishes"
    )
    public_key: str = Field(description="the 32 raw public-key bytes, base64")
    public_key_pem: str = Field(description="SubjectPublicKeyInfo PEM")


class CheckpointOut(BaseModel):
    origin: str
    size: int = Field(description="how many entries (seq 1..size) the tree covers")
    root: str = Field(description="RFC 9162 Merkle tree hash, hex")
    timestamp: str = Field(description="RFC 3339, UTC")
    key_id: str
    signature: str = Field(
        description="base64 Ed25519 over the canonical JSON of the other five fields"
    )


class InclusionProofOut(BaseModel):
    seq: int
    size: int
    leaf_index: int = Field(description="seq - 1")
    leaf: str = Field(description="the entry's entry_hash: the leaf's bytes, hex")
    leaf_hash: str = Field(description="SHA-256(0x00 || leaf), hex")
    root: str = Field(description="Merkle root of the first `size` entries, hex")
    proof: list[str] = Field(description="RFC 9162 inclusion path, bottom to top, hex")


class ConsistencyProofOut(BaseModel):
    old_size: int
    new_size: int
    old_root: str
    new_root: str
    proof: list[str] = Field(description="RFC 9162 consistency proof, hex")


class LedgerEntryOut(BaseModel):
    seq: int
    recorded_at: str = Field(description="RFC 3339 with offset")
    recorded_at_hashed: str = Field(description="the same instant exactly as hashed: UTC, µs")
    actor: str
    action: str
    subject_type: str
    subject_id: str
    details: str = Field(description="the canonical JSON text that was hashed, verbatim")
    prev_hash: str
    entry_hash: str


class LedgerEntryList(BaseModel):
    entries: list[LedgerEntryOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null: done")
    next_before: int | None = Field(
        default=None, description="order=desc: pass as `before` for the next page; null: done"
    )


MAX_ENTRIES_PAGE = 1000


class CheckpointRecordOut(BaseModel):
    size: int
    root: str
    key_id: str
    signed_at: str
    age_seconds: float
    unsigned_entries: int = Field(description="entries newer than the checkpoint")


class TreeRootOut(BaseModel):
    size: int
    ok: bool = Field(description="the stored tree gives the signed root at the checkpoint's size")
    problem: str | None


class WitnessOut(BaseModel):
    url: str
    key_id: str
    cosigned_latest: bool
    cosigned_size: int | None = Field(description="the largest checkpoint it cosigned")
    cosigned_at: str | None


class CosignatureOut(BaseModel):
    witness_key_id: str
    timestamp: str = Field(description="when the witness signed, by its clock")
    recorded_at: str


class LedgerCheckOut(BaseModel):
    kind: str = Field(description="full (examvault ledger verify) | recent (the newest entries)")
    actor: str
    started_at: str
    finished_at: str
    first_seq: int
    last_seq: int
    ok: bool
    problem: str | None


class LedgerStatusOut(BaseModel):
    size: int
    tree_size: int
    checkpoint: CheckpointRecordOut | None
    tree_root: TreeRootOut | None
    witnesses: list[WitnessOut] = Field(description="configured (EXAMVAULT_WITNESSES)")
    cosignatures: list[CosignatureOut] = Field(description="of the latest checkpoint")
    last_full_check: LedgerCheckOut | None
    last_recent_check: LedgerCheckOut | None
    recent_max: int = Field(description="the most entries POST /checks reads")


class CheckIn(BaseModel):
    entries: int = Field(default=5_000, ge=1, le=RECENT_MAX, description="the newest N entries")
