"""The ledger's Ed25519 signing key: made once in the data directory, never replaced, and the
public half every checkpoint and evidence package is checked against (docs/ledger.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from services.keyfiles import read_or_create

KEY_FILE = "ledger-signing-key.pem"
KEY_ID_DIGITS = 16


def key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """SHA-256 of the 32 raw key bytes, hex: what the centre publishes and a verifier compares."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()


def key_id_for(public_key: Ed25519PublicKey) -> str:
    # The fingerprint's first 16 digits, as every checkpoint ever signed names its key.
    return key_fingerprint(public_key)[:KEY_ID_DIGITS]


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class CheckpointSigner:
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_key_raw(self) -> bytes:
        return _raw_public(self.public_key)

    @property
    def public_key_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    @property
    def key_id(self) -> str:
        return key_id_for(self.public_key)

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def key_path(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def load_signer(data_dir: Path) -> CheckpointSigner | None:
    """The existing key, or None; for readers (verify) that must not create one."""
    path = key_path(data_dir)
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return None
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return CheckpointSigner(key)


def load_or_create_signer(data_dir: Path) -> CheckpointSigner:
    """The service's signing key, created on first use and never replaced: every checkpoint
    ever handed out is checked against it."""
    existing = load_signer(data_dir)
    if existing is not None:
        return existing

    def new_key() -> bytes:
        return Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    read_or_create(key_path(data_dir), new_key)
    signer = load_signer(data_dir)
    if signer is None:
        raise FileNotFoundError(f"{key_path(data_dir)} vanished right after it was created")
    return signer


def public_key_from_pem(pem: str | bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode("ascii") if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key
