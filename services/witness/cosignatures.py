"""A witness's cosignature of a checkpoint, after C2SP tlog-cosignature: an Ed25519 signature by
the witness's own key over a fixed header, the moment it signed, and the checkpoint's signed
body. It says "this witness saw this tree, and it extends every tree this witness saw before".

Witness keys travel as the base64 of their 32 raw bytes (short enough for an environment
variable); they are named, like the centre's key, by the first 16 hex digits of the SHA-256 of
those bytes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.ledger.checkpoints import Checkpoint
from services.ledger.keys import CheckpointSigner, key_id_for
from storage.ledger import canonical_json

# The header keeps a cosignature from ever being mistaken for a checkpoint or manifest signature
# made with the same kind of key.
COSIGNATURE_HEADER = "examvault-cosignature/v1"


class CosignatureFormatError(ValueError):
    """A document that is not a cosignature, or a witness key that is not one."""


@dataclass(frozen=True)
class Cosignature:
    witness_key_id: str
    checkpoint_size: int
    checkpoint_root: str
    timestamp: int  # seconds since the epoch, when the witness signed
    signature: str  # base64

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Cosignature:
        if not isinstance(document, Mapping):
            raise CosignatureFormatError("not a JSON object")
        values: dict[str, Any] = {}
        for name, wanted in (
            ("witness_key_id", str),
            ("checkpoint_size", int),
            ("checkpoint_root", str),
            ("timestamp", int),
            ("signature", str),
        ):
            value = document.get(name)
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise CosignatureFormatError(
                    f"field {name!r} is missing or not a {wanted.__name__}"
                )
            values[name] = value
        return cls(**values)


def cosigned_message(checkpoint: Checkpoint, timestamp: int) -> bytes:
    return f"{COSIGNATURE_HEADER}\ntime {timestamp}\n".encode("ascii") + canonical_json(
        checkpoint.signed_body()
    ).encode("utf-8")


def cosign(
    signer: CheckpointSigner, checkpoint: Checkpoint, *, now: datetime | None = None
) -> Cosignature:
    timestamp = int((now or datetime.now(UTC)).timestamp())
    signature = signer.sign(cosigned_message(checkpoint, timestamp))
    return Cosignature(
        witness_key_id=signer.key_id,
        checkpoint_size=checkpoint.size,
        checkpoint_root=checkpoint.root,
        timestamp=timestamp,
        signature=base64.b64encode(signature).decode("ascii"),
    )


def verify_cosignature(
    cosignature: Cosignature, checkpoint: Checkpoint, witness_key: Ed25519PublicKey
) -> str | None:
    """None when `witness_key` cosigned exactly this checkpoint; otherwise why not."""
    if cosignature.witness_key_id != key_id_for(witness_key):
        return f"made by witness {cosignature.witness_key_id}, not by this key"
    if (cosignature.checkpoint_size, cosignature.checkpoint_root) != (
        checkpoint.size,
        checkpoint.root,
    ):
        return "it names another checkpoint"
    try:
        signature = base64.b64decode(cosignature.signature, validate=True)
        witness_key.verify(signature, cosigned_message(checkpoint, cosignature.timestamp))
    except (binascii.Error, InvalidSignature):
        return "its signature does not verify"
    return None


def witness_key_text(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def witness_key_from_text(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error as exc:
        raise CosignatureFormatError(f"{text!r} is not base64") from exc
    if len(raw) != 32:
        raise CosignatureFormatError(
            f"{text!r} is not a witness key: the base64 of 32 raw Ed25519 bytes"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness the centre asks: where it answers and the key its cosignatures must verify with."""

    url: str
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id_for(self.public_key)


def parse_witnesses(text: str | None) -> list[WitnessEndpoint]:
    """EXAMVAULT_WITNESSES: comma-separated `URL KEY` pairs (KEY as `examvault witness key`
    prints it)."""
    witnesses: list[WitnessEndpoint] = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        parts = item.split()
        if len(parts) != 2 or not parts[0].startswith(("http://", "https://")):
            raise CosignatureFormatError(
                f"EXAMVAULT_WITNESSES entry {item.strip()!r} is not `URL KEY`"
            )
        witnesses.append(WitnessEndpoint(parts[0].rstrip("/"), witness_key_from_text(parts[1])))
    return witnesses
