"""RFC 9162 §2.1 Merkle tree hashing (the Certificate Transparency tree), over byte strings.

    MTH({})      = SHA-256("")
    leaf hash    = SHA-256(0x00 || leaf)
    node hash    = SHA-256(0x01 || left || right)
    MTH(D[n])    = node(MTH(D[0:k]), MTH(D[k:n])), k = the largest power of two < n

The ledger's tree has one leaf per entry, seq 1..n in order, and the leaf is the 32 raw bytes
of that entry's `entry_hash` (`bytes.fromhex`), so leaf index = seq - 1 (docs/ledger.md).

Everything here is pure and computed level by level: level 0 is the leaf hashes, each level
above pairs neighbours and carries a lone last node up unchanged. That gives the same hashes as
the recursive definition (a node at level L, index j is MTH of leaves [j*2^L, min((j+1)*2^L,
n))) with O(n) hashing and no recursion, which matters at 100k+ entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

# Bound once: these two run hundreds of thousands of times per proof.
_sha256 = hashlib.sha256

EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


class Node(NamedTuple):
    """A complete (perfect) subtree: the one at `level`, `position` covers leaves
    [position * 2^level, (position + 1) * 2^level); level 0 is the leaf hashes."""

    level: int
    position: int
    digest: bytes


def perfect_subtrees(start: int, size: int) -> list[tuple[int, int]]:
    """(level, position) of the complete subtrees that make up leaves [start, start + size),
    largest first. Holds for every range the RFC split produces (a prefix, or a range aligned to
    the next power of two at or above its size): one node per set bit of `size`."""
    nodes = []
    while size > 0:
        level = size.bit_length() - 1
        if start & ((1 << level) - 1):
            raise ValueError(f"leaves from {start} are not aligned to a subtree of {1 << level}")
        nodes.append((level, start >> level))
        start += 1 << level
        size -= 1 << level
    return nodes


def fold_subtrees(digests: Sequence[bytes]) -> bytes:
    """MTH of a range from the hashes of its `perfect_subtrees`, largest first: the recursive
    split puts the largest perfect subtree on the left at every level."""
    if not digests:
        return EMPTY_ROOT
    digest = digests[-1]
    for peak in reversed(digests[:-1]):
        digest = node_hash(peak, digest)
    return digest


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The (start, size) leaf ranges whose MTH make up PATH(index, D[size]) of RFC 9162
    §2.1.3.1, bottom to top."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of {size} leaves")
    top_down = []
    start = 0
    while size > 1:
        k = 1 << ((size - 1).bit_length() - 1)
        if index < k:
            top_down.append((start + k, size - k))
            size = k
        else:
            top_down.append((start, k))
            start, index, size = start + k, index - k, size - k
    top_down.reverse()
    return top_down


def consistency_ranges(old_size: int, size: int) -> list[tuple[int, int]]:
    """The (start, size) leaf ranges whose MTH make up PROOF(old_size, D[size]) of RFC 9162
    §2.1.4.1, in the proof's order (empty when old_size == size)."""
    if not 0 < old_size <= size:
        raise ValueError(f"old size {old_size} must be between 1 and the tree size {size}")
    # SUBPROOF unrolled as in `consistency_proof`: collected in reverse, flipped at the end.
    items: list[tuple[int, int]] = []
    start, m, complete = 0, old_size, True
    while m != size:
        k = 1 << ((size - 1).bit_length() - 1)
        if m <= k:
            items.append((start + k, size - k))
            size = k
        else:
            items.append((start, k))
            start, size, m, complete = start + k, size - k, m - k, False
    if not complete:
        items.append((start, size))
    items.reverse()
    return items


class MerkleAccumulator:
    """The root of a growing tree in O(log n) memory: the roots of its perfect subtrees
    (largest first, one per set bit of the size). Lets `ledger verify` check every stored
    checkpoint in one pass over the entries instead of rebuilding a tree per checkpoint, and
    the stored tree learn which nodes each new leaf completes."""

    def __init__(self, size: int = 0, peaks: Sequence[bytes] = ()) -> None:
        """An empty tree, or one of `size` leaves resumed from the hashes of its
        `perfect_subtrees(0, size)`."""
        if len(peaks) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} peaks")
        self.size = size
        self._peaks: list[bytes] = list(peaks)

    def append(self, leaf: bytes) -> list[Node]:
        """Add a leaf; returns the nodes it completed, the leaf's own hash first."""
        digest = leaf_hash(leaf)
        position = self.size
        completed = [Node(0, position, digest)]
        size = self.size
        # Each trailing 1-bit of the old size is a perfect subtree the new leaf now completes.
        while size & 1:
            digest = node_hash(self._peaks.pop(), digest)
            size >>= 1
            position >>= 1
            completed.append(Node(len(completed), position, digest))
        self._peaks.append(digest)
        self.size += 1
        return completed

    def root(self) -> bytes:
        return fold_subtrees(self._peaks)


def tree_hash(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of the leaves (raw, not yet leaf-hashed)."""
    accumulator = MerkleAccumulator()
    for leaf in leaves:
        accumulator.append(leaf)
    return accumulator.root()


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    level = [leaf_hash(leaf) for leaf in leaves]
    levels = [level]
    while len(level) > 1:
        above = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            above.append(level[-1])
        levels.append(above)
        level = above
    return levels


def _subtree(levels: list[list[bytes]], start: int, size: int) -> bytes:
    """MTH(D[start:start+size]) for a subtree of the RFC split: a perfect one, or one that ends
    at the tree's right edge; both are aligned to 2^ceil(log2(size)), so one node holds it."""
    height = (size - 1).bit_length()
    return levels[height][start >> height]


def inclusion_proofs(leaves: Sequence[bytes], indices: Sequence[int]) -> list[list[bytes]]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1, bottom to top, for several leaves of one tree:
    the levels are built once, not once per proof (an export proves dozens of entries)."""
    for index in indices:
        if not 0 <= index < len(leaves):
            raise ValueError(f"leaf index {index} is outside a tree of {len(leaves)} leaves")
    levels = _levels(leaves)[:-1]
    proofs = []
    for index in indices:
        proof = []
        for level in levels:
            sibling = index ^ 1
            # A lone last node has no sibling at this level: it is carried up, adding nothing.
            if sibling < len(level):
                proof.append(level[sibling])
            index >>= 1
        proofs.append(proof)
    return proofs


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1, bottom to top."""
    return inclusion_proofs(leaves, [index])[0]


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]) of RFC 9162 §2.1.4.1 (empty when old_size == n)."""
    size = len(leaves)
    if not 0 < old_size <= size:
        raise ValueError(f"old size {old_size} must be between 1 and the tree size {size}")
    if old_size == size:
        return []
    levels = _levels(leaves)
    # SUBPROOF(m, D[start:start+size], complete) unrolled: each step appends the hash the
    # recursion would append after its inner call, so the collected list is reversed at the end.
    items: list[bytes] = []
    start, m, complete = 0, old_size, True
    while m != size:
        k = 1 << ((size - 1).bit_length() - 1)
        if m <= k:
            items.append(_subtree(levels, start + k, size - k))
            size = k
        else:
            items.append(_subtree(levels, start, k))
            start, size, m, complete = start + k, size - k, m - k, False
    if not complete:
        items.append(_subtree(levels, start, size))
    items.reverse()
    return items


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does `leaf` sit at `index` of the tree of `size` with `root`?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    digest = leaf_hash(leaf)
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            digest = node_hash(sibling, digest)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            digest = node_hash(digest, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and digest == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of `old_size` a prefix of the tree of `new_size`?

    The RFC covers 0 < old_size < new_size; equal sizes (empty proof, equal roots) and the empty
    old tree (empty proof, old root = SHA-256("")) are answered here too, as they trivially are.
    """
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            first = node_hash(node, first)
            second = node_hash(node, second)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            second = node_hash(second, node)
        fn >>= 1
        sn >>= 1
    return first == old_root and second == new_root and sn == 0
