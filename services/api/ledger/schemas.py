"""What the verifiable-ledger routes answer: exactly the documents a supervisor keeps."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
