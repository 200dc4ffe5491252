"""The ledger's Merkle tree, stored: every complete node as a row of `ledger_nodes`.

A node at `level`, `position` is MTH of leaves [position * 2^level, (position + 1) * 2^level);
it is stored in the transaction that appends its last leaf and never changes afterwards. A tree
of n leaves holds 2n - popcount(n) nodes. Any prefix root, inclusion path or consistency proof
(RFC 9162) is then a fold of at most about 2 log2(n) stored hashes (`storage.merkle` says
which), so its cost does not grow with the ledger (docs/ledger.md, "Stored tree").

These functions know rows and bytes only; the caller holds the ledger's append lock when it
writes (`storage.ledger.lock_head`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, ScalarSelect, and_, func, insert, or_, select
from sqlalchemy.orm import Session

from storage import merkle
from storage.models import LedgerNode

Key = tuple[int, int]


class TreeIncomplete(LookupError):
    """A node the tree of the asked size must hold is not stored (a build not finished yet,
    or rows removed behind the triggers)."""


def _last_leaf() -> ScalarSelect[int | None]:
    return select(func.max(LedgerNode.position)).where(LedgerNode.level == 0).scalar_subquery()


def stored_size(session: Session) -> int:
    """How many leaves the stored tree holds (one indexed lookup)."""
    last = session.scalar(select(_last_leaf()))
    return 0 if last is None else last + 1


def sizes(session: Session, last_entry: ScalarSelect[int | None]) -> tuple[int, int]:
    """The stored tree's size and the value of `last_entry` (the ledger's last seq), read in
    one round trip."""
    last, entries = session.execute(select(_last_leaf(), last_entry)).one()
    return (0 if last is None else last + 1), entries or 0


def _where_keys(keys: Iterable[Key]) -> ColumnElement[bool]:
    by_level: dict[int, set[int]] = defaultdict(set)
    for level, position in keys:
        by_level[level].add(position)
    return or_(
        *(
            and_(LedgerNode.level == level, LedgerNode.position.in_(sorted(positions)))
            for level, positions in sorted(by_level.items())
        )
    )


def read_nodes(session: Session, keys: Iterable[Key]) -> dict[Key, bytes]:
    """The stored hashes of these nodes, in one query; absent ones are simply not in the
    answer."""
    wanted = set(keys)
    if not wanted:
        return {}
    rows = session.execute(
        select(LedgerNode.level, LedgerNode.position, LedgerNode.digest).where(_where_keys(wanted))
    )
    return {(level, position): bytes(digest) for level, position, digest in rows}


def read_range(session: Session, ranges: dict[int, tuple[int, int]]) -> dict[Key, bytes]:
    """The stored nodes with positions in [low, high] at each level (`ledger verify`'s
    batches)."""
    if not ranges:
        return {}
    condition = or_(
        *(
            and_(LedgerNode.level == level, LedgerNode.position.between(low, high))
            for level, (low, high) in sorted(ranges.items())
        )
    )
    rows = session.execute(
        select(LedgerNode.level, LedgerNode.position, LedgerNode.digest).where(condition)
    )
    return {(level, position): bytes(digest) for level, position, digest in rows}


def range_hashes(session: Session, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """MTH of each (start, size) leaf range, from the stored nodes that make them up, read in
    one query: a root and a proof together cost one round trip."""
    parts = [merkle.perfect_subtrees(start, size) for start, size in ranges]
    nodes = read_nodes(session, (key for part in parts for key in part))
    hashes = []
    for part in parts:
        for level, position in part:
            if (level, position) not in nodes:
                first = position << level
                raise TreeIncomplete(
                    f"the stored tree has no node (level {level}, position {position}) over "
                    f"leaves {first}..{first + (1 << level) - 1}"
                )
        hashes.append(merkle.fold_subtrees([nodes[key] for key in part]))
    return hashes


def root(session: Session, size: int) -> bytes:
    """MTH of the first `size` leaves: at most log2(size) + 1 stored hashes."""
    if size == 0:
        return merkle.EMPTY_ROOT
    return range_hashes(session, [(0, size)])[0]


def leaf_hash(session: Session, index: int) -> bytes | None:
    return read_nodes(session, [(0, index)]).get((0, index))


def inclusion_proof(session: Session, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1, bottom to top."""
    return range_hashes(session, merkle.inclusion_ranges(index, size))


def consistency_proof(session: Session, old_size: int, size: int) -> list[bytes]:
    """PROOF(old_size, D[size]) of RFC 9162 §2.1.4.1 (empty when the sizes are equal)."""
    return range_hashes(session, merkle.consistency_ranges(old_size, size))


def extend(session: Session, size: int, leaves: Sequence[bytes]) -> list[merkle.Node]:
    """Store the nodes that `leaves` (raw leaf bytes) complete when appended to the stored tree
    of `size` leaves. The caller holds the append lock and knows the tree holds exactly `size`
    leaves; the new nodes' left neighbours are that tree's peaks, read here."""
    peaks_at = merkle.perfect_subtrees(0, size)
    peaks = read_nodes(session, peaks_at)
    missing = [key for key in peaks_at if key not in peaks]
    if missing:
        level, position = missing[0]
        raise TreeIncomplete(
            f"the stored tree of {size} leaves has no node (level {level}, position {position})"
        )
    accumulator = merkle.MerkleAccumulator(size, [peaks[key] for key in peaks_at])
    nodes = [node for leaf in leaves for node in accumulator.append(leaf)]
    if nodes:
        # Core executemany: a purge batch or the build appends thousands of nodes at once.
        session.execute(
            insert(LedgerNode),
            [
                {"level": node.level, "position": node.position, "digest": node.digest}
                for node in nodes
            ],
        )
    return nodes
