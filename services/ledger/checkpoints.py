"""Signed checkpoints of the ledger's Merkle tree, and the proofs a supervisor checks them with.

A checkpoint says "the ledger's first `size` entries have Merkle root `root`", signed with the
service's Ed25519 key (docs/ledger.md). A supervisor who kept one can later ask for a
consistency proof to the current tree: if any of those entries had been rewritten or removed,
no proof could connect the old root to the new one.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PublicKey,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.background import BackgroundThread
from services.ledger.keys import KEY_FILE, CheckpointSigner, key_id_for, load_or_create_signer
from storage import merkle
from storage.blobs import BlobStore, StoredBlob
from storage.db import Database
from storage.keys import CHECKPOINT_PREFIX
from storage.ledger import canonical_json
from storage.models import LedgerEntry

logger = logging.getLogger(__name__)

ORIGIN = "examvault"
# Ledger rows are never deleted, so the checkpoints that vouch for them should outlive any
# evidence: well past the three-year minimum plus the holds that stretch it.
CHECKPOINT_RETENTION = timedelta(days=3653)
_FIELDS = ("origin", "size", "root", "timestamp", "key_id")


class LedgerBroken(Exception):
    """The ledger's rows are not seq 1..n without holes, so its tree is not defined."""


class ProofRequestError(ValueError):
    """Sizes or a seq that do not describe a proof of the current ledger; the message says why."""


class EntryNotInTree(ProofRequestError):
    """The entry asked for lies beyond the tree size asked for."""


class CheckpointFormatError(ValueError):
    """A document that is not a checkpoint (missing or mistyped fields)."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: str
    timestamp: str
    key_id: str
    signature: str

    def signed_body(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_bytes(self) -> bytes:
        return canonical_json(self.as_json()).encode("utf-8")

    @property
    def key(self) -> str:
        return checkpoint_key(self.size)

    @classmethod
    def from_json(cls, document: str | bytes | Mapping[str, Any]) -> Checkpoint:
        if isinstance(document, str | bytes):
            try:
                document = json.loads(document)
            except (ValueError, UnicodeDecodeError) as exc:
                raise CheckpointFormatError(f"not JSON: {exc}") from exc
        if not isinstance(document, Mapping):
            raise CheckpointFormatError("not a JSON object")
        values: dict[str, Any] = {}
        for name in (*_FIELDS, "signature"):
            value = document.get(name)
            wanted = int if name == "size" else str
            # bool is an int in Python; a size of `true` is not a size.
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise CheckpointFormatError(f"field {name!r} is missing or not a {wanted.__name__}")
            values[name] = value
        return cls(**values)


def checkpoint_key(size: int) -> str:
    return f"{CHECKPOINT_PREFIX}{size:012d}.json"


def _signed_message(body: Mapping[str, Any]) -> bytes:
    return canonical_json(dict(body)).encode("utf-8")


def sign_checkpoint(
    signer: CheckpointSigner, size: int, root: bytes, *, now: datetime | None = None
) -> Checkpoint:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    body = {
        "origin": ORIGIN,
        "size": size,
        "root": root.hex(),
        "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "key_id": signer.key_id,
    }
    signature = base64.b64encode(signer.sign(_signed_message(body))).decode("ascii")
    return Checkpoint(**body, signature=signature)


def verify_checkpoint(
    checkpoint_json: str | bytes | Mapping[str, Any] | Checkpoint, public_key: Ed25519PublicKey
) -> bool:
    """True when the document is a checkpoint signed by `public_key` and unaltered since."""
    try:
        checkpoint = (
            checkpoint_json
            if isinstance(checkpoint_json, Checkpoint)
            else Checkpoint.from_json(checkpoint_json)
        )
        signature = base64.b64decode(checkpoint.signature, validate=True)
        public_key.verify(signature, _signed_message(checkpoint.signed_body()))
    except (CheckpointFormatError, binascii.Error, InvalidSignature):
        return False
    return checkpoint.origin == ORIGIN and checkpoint.key_id == key_id_for(public_key)


def _leaf(entry_hash: str) -> bytes:
    return bytes.fromhex(entry_hash)


def ledger_size(session: Session) -> int:
    return session.scalar(select(func.max(LedgerEntry.seq))) or 0


def ledger_leaves(session: Session, size: int | None = None) -> list[bytes]:
    """The tree's leaves: entry_hash bytes of seq 1..size (all entries when None), in one
    query so the tree is one consistent snapshot."""
    query = select(LedgerEntry.seq, LedgerEntry.entry_hash).order_by(LedgerEntry.seq)
    if size is not None:
        query = query.where(LedgerEntry.seq <= size)
    leaves = []
    for expected, (seq, digest) in enumerate(session.execute(query), start=1):
        if seq != expected:
            raise LedgerBroken(f"ledger entry {expected} is missing; run `examvault ledger verify`")
        try:
            leaves.append(_leaf(digest))
        except ValueError as exc:
            raise LedgerBroken(f"ledger entry {seq} has a malformed entry_hash") from exc
    if size is not None and len(leaves) < size:
        raise LedgerBroken(f"ledger entry {len(leaves) + 1} is missing")
    return leaves


def make_checkpoint(
    session: Session, signer: CheckpointSigner, *, now: datetime | None = None
) -> Checkpoint:
    """A signed checkpoint of the whole ledger as this session sees it."""
    leaves = ledger_leaves(session)
    return sign_checkpoint(signer, len(leaves), merkle.tree_hash(leaves), now=now)


@dataclass(frozen=True)
class InclusionProof:
    seq: int
    size: int
    leaf: str  # the entry's entry_hash: the leaf's bytes in hex
    leaf_hash: str
    root: str
    proof: list[str]

    @property
    def leaf_index(self) -> int:
        return self.seq - 1

    def verifies(self) -> bool:
        return merkle.verify_inclusion(
            bytes.fromhex(self.leaf),
            self.leaf_index,
            self.size,
            [bytes.fromhex(item) for item in self.proof],
            bytes.fromhex(self.root),
        )


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    old_root: str
    new_root: str
    proof: list[str]

    def verifies(self) -> bool:
        return merkle.verify_consistency(
            self.old_size,
            self.new_size,
            bytes.fromhex(self.old_root),
            bytes.fromhex(self.new_root),
            [bytes.fromhex(item) for item in self.proof],
        )


def inclusion_proof_for(session: Session, seq: int, size: int | None = None) -> InclusionProof:
    """Proof that entry `seq` is leaf seq-1 of the tree of the first `size` entries (the whole
    ledger when None)."""
    head = ledger_size(session)
    if seq < 1:
        raise ProofRequestError(f"seq {seq} is not an entry; entries start at 1")
    if size is None:
        size = head
    elif not 1 <= size <= head:
        raise ProofRequestError(f"size {size} is not a tree size of this ledger (1..{head})")
    if seq > size:
        raise EntryNotInTree(f"entry {seq} is not in the tree of the first {size} entries")
    leaves = ledger_leaves(session, size)
    return InclusionProof(
        seq=seq,
        size=size,
        leaf=leaves[seq - 1].hex(),
        leaf_hash=merkle.leaf_hash(leaves[seq - 1]).hex(),
        root=merkle.tree_hash(leaves).hex(),
        proof=[item.hex() for item in merkle.inclusion_proof(leaves, seq - 1)],
    )


def consistency_proof_for(session: Session, old: int, new: int | None = None) -> ConsistencyProof:
    """Proof that the tree of the first `old` entries is a prefix of the tree of the first
    `new` (the whole ledger when None)."""
    head = ledger_size(session)
    new = head if new is None else new
    if not 1 <= new <= head:
        raise ProofRequestError(f"new size {new} is not a tree size of this ledger (1..{head})")
    if not 1 <= old <= new:
        raise ProofRequestError(f"old size {old} must be between 1 and the new size {new}")
    leaves = ledger_leaves(session, new)
    return ConsistencyProof(
        old_size=old,
        new_size=new,
        old_root=merkle.tree_hash(leaves[:old]).hex(),
        new_root=merkle.tree_hash(leaves).hex(),
        proof=[item.hex() for item in merkle.consistency_proof(leaves, old)],
    )


def store_checkpoint(
    store: BlobStore, checkpoint: Checkpoint, retain_until: datetime
) -> StoredBlob | None:
    """Write the checkpoint as a locked object; None when one of that size is already stored
    (the first one stands: objects are write-once and both vouch for the same root)."""
    if store.stat(checkpoint.key) is not None:
        return None
    with tempfile.TemporaryDirectory(prefix="examvault-checkpoint-") as folder:
        source = Path(folder) / "checkpoint.json"
        source.write_bytes(checkpoint.to_bytes())
        return store.put_file(source, lambda _sha256: checkpoint.key, retain_until=retain_until)


def stored_checkpoint_keys(store: BlobStore) -> list[str]:
    """Keys of the stored checkpoints, smallest size first (the zero-padded size sorts)."""
    return sorted(key for key in store.keys(CHECKPOINT_PREFIX) if key.endswith(".json"))


def read_stored(store: BlobStore, key: str) -> bytes:
    return b"".join(store.read(key))


# The newest checkpoint key seen per store: keys sort by size, so the next look lists only what
# came after it instead of every checkpoint ever written (one each 10 minutes, for years).
_newest_seen: weakref.WeakKeyDictionary[BlobStore, str] = weakref.WeakKeyDictionary()


def latest_stored_checkpoint(store: BlobStore) -> Checkpoint | None:
    seen = _newest_seen.get(store)
    newer = sorted(
        key for key in store.keys(CHECKPOINT_PREFIX, start_after=seen) if key.endswith(".json")
    )
    newest = newer[-1] if newer else seen
    if newest is None:
        return None
    _newest_seen[store] = newest
    return Checkpoint.from_json(read_stored(store, newest))


@dataclass(frozen=True)
class CheckpointMismatch:
    key: str
    reason: str


@dataclass(frozen=True)
class CheckpointVerdict:
    checked: int
    mismatch: CheckpointMismatch | None

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def _entry_leaves(session: Session, batch: int = 10000) -> Iterator[bytes]:
    """Every row's leaf in seq order, as stored: a removed row shifts the rest, which is
    exactly what makes the checkpoints that covered it stop matching."""
    last = 0
    while True:
        rows = session.execute(
            select(LedgerEntry.seq, LedgerEntry.entry_hash)
            .where(LedgerEntry.seq > last)
            .order_by(LedgerEntry.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        for _seq, digest in rows:
            try:
                yield _leaf(digest)
            except ValueError:
                # Cannot be an honest leaf; the chain check names the entry itself.
                yield digest.encode("utf-8")
        last = rows[-1].seq


def verify_stored_checkpoints(
    session: Session, store: BlobStore, public_key: Ed25519PublicKey | None
) -> CheckpointVerdict:
    """Check every stored checkpoint, smallest first, against the tree recomputed from the
    ledger and against the key; report the first that does not match."""
    keys = stored_checkpoint_keys(store)
    if not keys:
        return CheckpointVerdict(0, None)
    if public_key is None:
        return CheckpointVerdict(
            0, CheckpointMismatch(keys[0], f"no signing key ({KEY_FILE}) to check it against")
        )
    expected_key_id = key_id_for(public_key)
    checkpoints: list[tuple[str, Checkpoint]] = []
    for key in keys:
        try:
            checkpoint = Checkpoint.from_json(read_stored(store, key))
        except CheckpointFormatError as exc:
            return CheckpointVerdict(0, CheckpointMismatch(key, f"not a checkpoint ({exc})"))
        checkpoints.append((key, checkpoint))
    leaves = _entry_leaves(session)
    tree = merkle.MerkleAccumulator()
    matched_size = 0
    for checked, (key, checkpoint) in enumerate(checkpoints):
        if checkpoint.key_id != expected_key_id:
            reason = f"signed by key {checkpoint.key_id}, not this service's key {expected_key_id}"
            return CheckpointVerdict(checked, CheckpointMismatch(key, reason))
        if not verify_checkpoint(checkpoint, public_key):
            return CheckpointVerdict(
                checked, CheckpointMismatch(key, "its signature does not verify")
            )
        if key != checkpoint.key:
            reason = f"it says size {checkpoint.size} but is stored as {key}"
            return CheckpointVerdict(checked, CheckpointMismatch(key, reason))
        while tree.size < checkpoint.size:
            leaf = next(leaves, None)
            if leaf is None:
                reason = (
                    f"it covers {checkpoint.size} entries but the ledger holds only {tree.size}: "
                    "entries were removed"
                )
                return CheckpointVerdict(checked, CheckpointMismatch(key, reason))
            tree.append(leaf)
        if tree.root().hex() != checkpoint.root:
            reason = (
                f"its root differs from the tree recomputed over entries 1..{checkpoint.size}: "
                f"an entry in {matched_size + 1}..{checkpoint.size} was changed or removed"
            )
            return CheckpointVerdict(checked, CheckpointMismatch(key, reason))
        matched_size = checkpoint.size
    return CheckpointVerdict(len(checkpoints), None)


class CheckpointWriter(BackgroundThread):
    """Signs and stores a checkpoint every `interval` seconds when the ledger grew.

    It refuses to sign when the entries its last stored checkpoint covered no longer give that
    checkpoint's root: signing on top of a rewrite would launder it."""

    name = "ledger-checkpoints"

    def __init__(
        self,
        db: Database,
        store: BlobStore,
        data_dir: Path,
        *,
        interval: float = 600.0,
        retain_for: timedelta = CHECKPOINT_RETENTION,
    ) -> None:
        super().__init__()
        self.db = db
        self.store = store
        self.data_dir = data_dir
        self.interval = interval
        self.retain_for = retain_for
        self._last: Checkpoint | None = None

    def run_once(self) -> float:
        self.write_if_grown()
        return self.interval

    def write_if_grown(self) -> Checkpoint | None:
        signer = load_or_create_signer(self.data_dir)
        if self._last is None:
            # Once per process: afterwards the last one written here is the latest.
            self._last = latest_stored_checkpoint(self.store)
        with self.db.read() as session:
            leaves = ledger_leaves(session)
        previous = self._last
        if previous is not None and len(leaves) <= previous.size:
            return None
        if not leaves:
            return None
        if previous is not None:
            recomputed = merkle.tree_hash(leaves[: previous.size]).hex()
            if recomputed != previous.root:
                logger.error(
                    "ledger entries 1..%d no longer give the root of checkpoint %s; not signing "
                    "(run `examvault ledger verify`)",
                    previous.size,
                    previous.key,
                )
                return None
        checkpoint = sign_checkpoint(signer, len(leaves), merkle.tree_hash(leaves))
        store_checkpoint(self.store, checkpoint, datetime.now(UTC) + self.retain_for)
        logger.info("ledger checkpoint %d stored as %s", checkpoint.size, checkpoint.key)
        self._last = checkpoint
        return checkpoint
