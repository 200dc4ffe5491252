"""Signed checkpoints of the ledger's Merkle tree, and the proofs a supervisor checks them with.

A checkpoint says "the ledger's first `size` entries have Merkle root `root`", signed with the
service's Ed25519 key (docs/ledger.md). A supervisor who kept one can later ask for a
consistency proof to the current tree: if any of those entries had been rewritten or removed,
no proof could connect the old root to the new one.

Every checkpoint is made by `make_checkpoint`, which refuses to sign unless the ledger still
extends the latest checkpoint stored in the blob store and the latest recorded in the database.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PublicKey,
)
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.background import BackgroundThread
from services.ledger.keys import KEY_FILE, CheckpointSigner, key_id_for, load_or_create_signer
from storage import merkle, tree
from storage.blobs import BlobStore, StoredBlob
from storage.db import Database
from storage.keys import CHECKPOINT_PREFIX
from storage.ledger import canonical_json, entry_hash_batches
from storage.models import LedgerCheckpointRecord, LedgerEntry

logger = logging.getLogger(__name__)

ORIGIN = "examvault"
# Ledger rows are never deleted, so the checkpoints that vouch for them should outlive any
# evidence: well past the three-year minimum plus the holds that stretch it.
CHECKPOINT_RETENTION = timedelta(days=3653)
_FIELDS = ("origin", "size", "root", "timestamp", "key_id")
# How often the writer looks at the ledger's length, at most: the entry bound is checked then.
_POLL_SECONDS = 1.0


class LedgerBroken(Exception):
    """The ledger's rows are not seq 1..n without holes, so its tree is not defined."""


class LedgerRewritten(LedgerBroken):
    """The ledger no longer extends its latest checkpoint: entries that checkpoint covered were
    changed or removed. Signing a new one would vouch for the rewrite."""


class SigningKeyChanged(LedgerBroken):
    """The latest checkpoint was signed with another key than this process holds: two machines
    with their own keys (the key file was not copied to every serve and worker), or a key
    replaced by hand. Signing on would leave checkpoints no one key verifies."""


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


@dataclass(frozen=True)
class SignedTree:
    """A checkpoint just made; proofs in it come from the stored tree (`inclusion_proofs_in`),
    which never changes below its size."""

    checkpoint: Checkpoint


def latest_recorded_checkpoint(session: Session) -> LedgerCheckpointRecord | None:
    return session.scalar(
        select(LedgerCheckpointRecord).order_by(LedgerCheckpointRecord.size.desc()).limit(1)
    )


def linear_root(leaves: list[bytes], claims: list[tuple[str, int, str]]) -> bytes:
    """The root recomputed from every leaf, after checking in the same pass that each
    (what, size, root) claim is a prefix of it: what checkpoints cost before the tree was
    stored, kept for `bench/ledger.py`'s comparison."""
    wanted = {size for _, size, _ in claims}
    prefix_roots: dict[int, str] = {}
    accumulator = merkle.MerkleAccumulator()
    for leaf in leaves:
        if accumulator.size in wanted:
            prefix_roots[accumulator.size] = accumulator.root().hex()
        accumulator.append(leaf)
    prefix_roots[accumulator.size] = accumulator.root().hex()
    for what, size, root in claims:
        if size > accumulator.size or prefix_roots[size] != root:
            raise LedgerRewritten(f"entries 1..{size} no longer give the root of {what}")
    return accumulator.root()


def _tree_size(session: Session) -> int:
    """The ledger's size, when its entries and its stored tree agree on it."""
    stored, size = tree.sizes(session, select(func.max(LedgerEntry.seq)).scalar_subquery())
    if stored < size:
        raise LedgerBroken(
            f"the stored tree holds {stored} of the ledger's {size} entries; "
            "`examvault db upgrade` builds the rest"
        )
    if stored > size:
        raise LedgerBroken(
            f"the stored tree holds {stored} leaves but the ledger's last entry is {size}: "
            "entries were removed; run `examvault ledger verify`"
        )
    return size


def _check_entries_since(session: Session, since: int, size: int, what: str | None) -> None:
    """Entries since..size, read once before a checkpoint first vouches for them, against the
    stored tree's leaves: none missing, none different. Entry `since` (the last one the latest
    checkpoint covers) is read too: a forger who rewrote any earlier entry and recomputed the
    chain after it changed that one's hash as well. Costs the entries since the last checkpoint
    (the writer's cadence bounds them), not the ledger."""
    first = max(since, 1)
    rows = session.execute(
        select(LedgerEntry.seq, LedgerEntry.entry_hash)
        .where(LedgerEntry.seq >= first, LedgerEntry.seq <= size)
        .order_by(LedgerEntry.seq)
    ).all()
    leaves = tree.read_range(session, {0: (first - 1, size - 1)})
    expected = first
    for seq, digest in rows:
        if seq != expected:
            break
        try:
            leaf = merkle.leaf_hash(_leaf(digest))
        except ValueError as exc:
            raise LedgerBroken(f"ledger entry {seq} has a malformed entry_hash") from exc
        if leaves.get((0, seq - 1)) != leaf:
            if seq == since and what is not None:
                raise LedgerRewritten(
                    f"entries 1..{since} no longer give the root of {what}: entry {since} "
                    "differs from its leaf in the stored tree; run `examvault ledger verify`"
                )
            raise LedgerBroken(
                f"ledger entry {seq} differs from its leaf in the stored tree; "
                "run `examvault ledger verify`"
            )
        expected += 1
    if expected <= size:
        raise LedgerBroken(f"ledger entry {expected} is missing; run `examvault ledger verify`")


def make_checkpoint(
    db: Database,
    store: BlobStore,
    signer: CheckpointSigner,
    *,
    now: datetime | None = None,
    retain_for: timedelta = CHECKPOINT_RETENTION,
) -> SignedTree:
    """Sign, store and record a checkpoint of the whole ledger: the one way a checkpoint is made.

    Refused (LedgerRewritten) unless the ledger still extends both the latest stored checkpoint
    and the latest recorded in the database: signing over a rewrite would launder it. Raises
    LedgerBroken for a ledger with holes or an unreadable stored checkpoint, BlobStoreError when
    the store cannot take it. Reads O(log n) stored nodes plus the entries since the latest
    checkpoint, never the whole ledger."""
    # Latest checkpoints first, the tree after: the ledger only grows, so an honest ledger read
    # later is never shorter than a checkpoint read earlier.
    try:
        stored = latest_stored_checkpoint(store)
    except CheckpointFormatError as exc:
        raise LedgerBroken(f"the latest stored checkpoint is unreadable: {exc}") from exc
    with db.read() as session:
        recorded = latest_recorded_checkpoint(session)
        claims = []
        if recorded is not None:
            what = f"checkpoint {recorded.size} (recorded in the database)"
            claims.append((what, recorded.size, recorded.root))
        if stored is not None:
            claims.append((f"stored checkpoint {stored.key}", stored.size, stored.root))
        entries = ledger_size(session)
        for what, size, _root in claims:
            if size > entries:
                raise LedgerRewritten(
                    f"{what} covers {size} entries but the ledger holds only {entries}: entries "
                    "were removed; run `examvault ledger verify`"
                )
        size = _tree_size(session)
        # The claimed roots and the new one, from one read of the stored tree.
        *claimed_roots, root = _stored_hashes(
            session, [*((0, claimed) for _, claimed, _ in claims), (0, size)]
        )
        for (what, claimed, claimed_root), stored_root in zip(claims, claimed_roots, strict=True):
            if stored_root.hex() != claimed_root:
                raise LedgerRewritten(
                    f"entries 1..{claimed} no longer give the root of {what}: the stored tree "
                    "was changed; run `examvault ledger verify`"
                )
        signed_by = [(f"stored checkpoint {stored.key}", stored.key_id)] if stored else []
        if recorded is not None:
            what = f"checkpoint {recorded.size} (recorded in the database)"
            signed_by.append((what, recorded.key_id))
        for what, key_id in signed_by:
            if key_id != signer.key_id:
                raise SigningKeyChanged(
                    f"{what} was signed with key {key_id}, this process holds {signer.key_id}: "
                    f"copy {KEY_FILE} from the data directory that made the ledger to every "
                    "serve and worker (docs/operations.md, keys)"
                )
        newest = max(claims, key=lambda claim: claim[1], default=None)
        _check_entries_since(
            session, newest[1] if newest else 0, size, newest[0] if newest else None
        )
    checkpoint = sign_checkpoint(signer, size, root, now=now)
    if checkpoint.size > 0:
        store_checkpoint(store, checkpoint, datetime.now(UTC) + retain_for)
        db.run_write(lambda session: record_checkpoint(session, checkpoint))
    return SignedTree(checkpoint)


def record_checkpoint(session: Session, checkpoint: Checkpoint) -> None:
    """Keep a stored checkpoint's size and root in the database too; the first of a size stands,
    as in the store."""
    values = {
        "size": checkpoint.size,
        "root": checkpoint.root,
        "key_id": checkpoint.key_id,
        "signed_at": datetime.fromisoformat(checkpoint.timestamp),
        "recorded_at": datetime.now(UTC),
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(LedgerCheckpointRecord).values(**values)
    session.execute(statement.on_conflict_do_nothing(index_elements=["size"]))


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


def _proof_size(session: Session, size: int | None, what: str = "size") -> int:
    head = _tree_size(session)
    if size is None:
        return head
    if not 1 <= size <= head:
        raise ProofRequestError(f"{what} {size} is not a tree size of this ledger (1..{head})")
    return size


def _entry_leaf(session: Session, seq: int, stored_leaf: bytes) -> bytes:
    """Entry `seq`'s leaf bytes, checked against its leaf hash in the stored tree: a proof of
    an entry the table no longer holds as it was committed would not verify anyway."""
    digest = session.scalar(select(LedgerEntry.entry_hash).where(LedgerEntry.seq == seq))
    if digest is None:
        raise LedgerBroken(f"ledger entry {seq} is missing; run `examvault ledger verify`")
    try:
        leaf = _leaf(digest)
    except ValueError as exc:
        raise LedgerBroken(f"ledger entry {seq} has a malformed entry_hash") from exc
    if stored_leaf != merkle.leaf_hash(leaf):
        raise LedgerBroken(
            f"ledger entry {seq} differs from its leaf in the stored tree; "
            "run `examvault ledger verify`"
        )
    return leaf


def _stored_hashes(session: Session, ranges: list[tuple[int, int]]) -> list[bytes]:
    try:
        return tree.range_hashes(session, ranges)
    except tree.TreeIncomplete as exc:
        raise LedgerBroken(f"{exc}; run `examvault ledger verify`") from exc


def inclusion_proof_for(session: Session, seq: int, size: int | None = None) -> InclusionProof:
    """Proof that entry `seq` is leaf seq-1 of the tree of the first `size` entries (the whole
    ledger when None), from O(log n) stored nodes read in one query."""
    if seq < 1:
        raise ProofRequestError(f"seq {seq} is not an entry; entries start at 1")
    size = _proof_size(session, size)
    if seq > size:
        raise EntryNotInTree(f"entry {seq} is not in the tree of the first {size} entries")
    # The leaf's own hash, the root and the path, in one read of the tree.
    stored_leaf, root, *path = _stored_hashes(
        session, [(seq - 1, 1), (0, size), *merkle.inclusion_ranges(seq - 1, size)]
    )
    leaf = _entry_leaf(session, seq, stored_leaf)
    return InclusionProof(
        seq=seq,
        size=size,
        leaf=leaf.hex(),
        leaf_hash=stored_leaf.hex(),
        root=root.hex(),
        proof=[item.hex() for item in path],
    )


def inclusion_proofs_in(session: Session, seqs: Iterable[int], size: int) -> list[InclusionProof]:
    """Proofs of several entries in the tree of the first `size` entries (an export's)."""
    return [inclusion_proof_for(session, seq, size) for seq in sorted(set(seqs))]


def consistency_proof_for(session: Session, old: int, new: int | None = None) -> ConsistencyProof:
    """Proof that the tree of the first `old` entries is a prefix of the tree of the first
    `new` (the whole ledger when None), from O(log n) stored nodes read in one query."""
    new = _proof_size(session, new, "new size")
    if not 1 <= old <= new:
        raise ProofRequestError(f"old size {old} must be between 1 and the new size {new}")
    old_root, new_root, *proof = _stored_hashes(
        session, [(0, old), (0, new), *merkle.consistency_ranges(old, new)]
    )
    return ConsistencyProof(
        old_size=old,
        new_size=new,
        old_root=old_root.hex(),
        new_root=new_root.hex(),
        proof=[item.hex() for item in proof],
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
    checked: int  # stored checkpoint objects that matched
    mismatch: CheckpointMismatch | None
    recorded: int = 0  # database records of checkpoints that matched

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def _entry_leaves(session: Session, batch: int = 10000) -> Iterator[bytes]:
    """Every row's leaf in seq order, as stored: a removed row shifts the rest, which is
    exactly what makes the checkpoints that covered it stop matching."""
    for rows in entry_hash_batches(session, batch):
        for _seq, digest in rows:
            try:
                yield _leaf(digest)
            except ValueError:
                # Cannot be an honest leaf; the chain check names the entry itself.
                yield digest.encode("utf-8")


def _recorded_roots(session: Session, batch: int = 10000) -> dict[int, str]:
    roots: dict[int, str] = {}
    last = 0
    while True:
        rows = session.execute(
            select(LedgerCheckpointRecord.size, LedgerCheckpointRecord.root)
            .where(LedgerCheckpointRecord.size > last)
            .order_by(LedgerCheckpointRecord.size)
            .limit(batch)
        ).all()
        if not rows:
            return roots
        roots.update((size, root) for size, root in rows)
        last = rows[-1].size


def _size_in_key(key: str) -> int | None:
    stem = key.removeprefix(CHECKPOINT_PREFIX).removesuffix(".json")
    return int(stem) if stem.isascii() and stem.isdigit() else None


def _stored_root(
    store: BlobStore, key: str, public_key: Ed25519PublicKey, record_root: str | None
) -> tuple[str | None, str | None]:
    """The stored checkpoint's root, or why it cannot be trusted."""
    try:
        checkpoint = Checkpoint.from_json(read_stored(store, key))
    except CheckpointFormatError as exc:
        return None, f"not a checkpoint ({exc})"
    expected_key_id = key_id_for(public_key)
    if checkpoint.key_id != expected_key_id:
        return None, f"signed by key {checkpoint.key_id}, not this service's key {expected_key_id}"
    if not verify_checkpoint(checkpoint, public_key):
        return None, "its signature does not verify"
    if key != checkpoint.key:
        return None, f"it says size {checkpoint.size} but is stored as {key}"
    if record_root is not None and record_root != checkpoint.root:
        return None, "its root differs from the one recorded in the database for its size"
    return checkpoint.root, None


def verify_stored_checkpoints(
    session: Session, store: BlobStore, public_key: Ed25519PublicKey | None
) -> CheckpointVerdict:
    """Check every stored checkpoint and every checkpoint recorded in the database, smallest
    first, against the tree recomputed from the ledger (and the stored ones against the key and
    their record); report the first that does not match. A record without its stored object
    means checkpoint files were deleted."""
    keys = stored_checkpoint_keys(store)
    recorded = _recorded_roots(session)
    if not keys and not recorded:
        return CheckpointVerdict(0, None)
    if keys and public_key is None:
        return CheckpointVerdict(
            0, CheckpointMismatch(keys[0], f"no signing key ({KEY_FILE}) to check it against")
        )
    stored: dict[int, str] = {}
    for key in keys:
        size = _size_in_key(key)
        if size is None:
            return CheckpointVerdict(0, CheckpointMismatch(key, "its name is not a tree size"))
        stored[size] = key
    leaves = _entry_leaves(session)
    tree = merkle.MerkleAccumulator()
    matched_size = 0
    checked = matched_records = 0
    for size in sorted(stored.keys() | recorded.keys()):
        key = stored.get(size)
        record_root = recorded.get(size)
        root: str | None = record_root
        problem = None
        if key is not None:
            assert public_key is not None
            root, problem = _stored_root(store, key, public_key, record_root)
        while problem is None and tree.size < size:
            leaf = next(leaves, None)
            if leaf is None:
                problem = (
                    f"it covers {size} entries but the ledger holds only {tree.size}: "
                    "entries were removed"
                )
            else:
                tree.append(leaf)
        if problem is None and tree.root().hex() != root:
            problem = (
                f"its root differs from the tree recomputed over entries 1..{size}: "
                f"an entry in {matched_size + 1}..{size} was changed or removed"
            )
        if problem is None and key is None:
            problem = (
                "it is recorded in the database but missing from the store: checkpoint files "
                "were deleted"
            )
        if problem is not None:
            name = key or f"{checkpoint_key(size)} (recorded in the database)"
            return CheckpointVerdict(checked, CheckpointMismatch(name, problem), matched_records)
        matched_size = size
        checked += 1
        matched_records += record_root is not None
    return CheckpointVerdict(checked, None, matched_records)


class CheckpointWriter(BackgroundThread):
    """Makes a checkpoint once `every_entries` entries or `every_seconds` seconds have passed
    since the last one, whichever comes first, when the ledger grew: that bounds how many of
    the newest entries no checkpoint yet vouches for.

    It polls the ledger's length (one indexed query) every second or so; `make_checkpoint`
    refuses, and the writer logs it, when the ledger no longer extends its latest checkpoint."""

    name = "ledger-checkpoints"

    def __init__(
        self,
        db: Database,
        store: BlobStore,
        data_dir: Path,
        *,
        every_entries: int = 1000,
        every_seconds: float = 60.0,
        retain_for: timedelta = CHECKPOINT_RETENTION,
    ) -> None:
        super().__init__()
        self.db = db
        self.store = store
        self.data_dir = data_dir
        self.every_entries = every_entries
        self.every_seconds = every_seconds
        self.retain_for = retain_for
        self._last_size: int | None = None
        self._last_at = float("-inf")  # monotonic time of the last checkpoint made here

    def run_once(self) -> float:
        self.write_if_due()
        return min(_POLL_SECONDS, self.every_seconds)

    def write_if_due(self) -> Checkpoint | None:
        """A checkpoint when `every_entries` new entries or `every_seconds` since the last one
        (and any new entry) say it is due; otherwise None."""
        if self._last_size is None:
            try:
                self._last_size = self._latest_size()
            except CheckpointFormatError as exc:
                logger.error("no ledger checkpoint signed: %s", exc)
                return None
        with self.db.read() as session:
            size = ledger_size(session)
        grown = size - self._last_size
        if grown == 0:
            return None
        # Shorter than the last checkpoint: make_checkpoint refuses, and says why in the log.
        if 0 < grown < self.every_entries and time.monotonic() - self._last_at < self.every_seconds:
            return None
        return self.write_if_grown()

    def write_if_grown(self) -> Checkpoint | None:
        """A checkpoint now if the ledger grew since the latest one; None when it did not, or
        when it no longer extends the latest one (logged: nothing is signed over a rewrite)."""
        signer = load_or_create_signer(self.data_dir)
        with self.db.read() as session:
            size = ledger_size(session)
        try:
            if size == 0 or size == self._latest_size():
                return None
            checkpoint = make_checkpoint(
                self.db, self.store, signer, retain_for=self.retain_for
            ).checkpoint
        except (LedgerBroken, CheckpointFormatError) as exc:
            logger.error("no ledger checkpoint signed: %s", exc)
            # Try again only when the next one is due, not at every poll.
            self._last_size, self._last_at = size, time.monotonic()
            return None
        logger.info("ledger checkpoint %d stored as %s", checkpoint.size, checkpoint.key)
        self._last_size, self._last_at = checkpoint.size, time.monotonic()
        return checkpoint

    def _latest_size(self) -> int:
        with self.db.read() as session:
            recorded = latest_recorded_checkpoint(session)
        stored = latest_stored_checkpoint(self.store)
        return max(recorded.size if recorded else 0, stored.size if stored else 0)
