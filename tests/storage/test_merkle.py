"""RFC 9162 Merkle tree: known roots, and proofs that verify exactly when nothing was altered.

The hypothesis tests compare the iterative implementation with the RFC's recursive definitions
(written out below as plainly as the RFC states them) and check both verifiers reject any
single alteration.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return _h(b"")
    if len(leaves) == 1:
        return _h(b"\x00" + leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _h(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    if m == len(leaves):
        return [] if complete else [_mth(leaves)]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


def _leaves(n: int) -> list[bytes]:
    # Distinct 32-byte leaves, like the ledger's entry hashes.
    return [_h(i.to_bytes(8, "big")) for i in range(n)]


def _flip(digest: bytes) -> bytes:
    return bytes([digest[0] ^ 1]) + digest[1:]


# The Certificate Transparency reference test leaves and their roots (RFC 6962 test vectors).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("size", range(len(CT_ROOTS)))
def test_tree_hash_matches_the_ct_reference_roots(size: int) -> None:
    assert tree_hash(CT_LEAVES[:size]).hex() == CT_ROOTS[size]


def test_empty_tree_is_sha256_of_nothing() -> None:
    assert tree_hash([]) == EMPTY_ROOT == _h(b"")


def test_three_leaf_tree_by_hand() -> None:
    a, b, c = b"a", b"b", b"c"
    ha, hb, hc = _h(b"\x00a"), _h(b"\x00b"), _h(b"\x00c")
    left = _h(b"\x01" + ha + hb)
    assert leaf_hash(a) == ha and node_hash(ha, hb) == left
    # Three leaves split 2 + 1: the lone third leaf is the right child of the root as it is.
    assert tree_hash([a, b, c]) == _h(b"\x01" + left + hc)
    assert inclusion_proof([a, b, c], 2) == [left]
    assert inclusion_proof([a, b, c], 0) == [hb, hc]
    assert consistency_proof([a, b, c], 2) == [hc]
    assert consistency_proof([a, b, c], 1) == [hb, hc]


def test_seven_leaf_proofs_by_hand() -> None:
    leaves = [bytes([i]) for i in range(7)]
    h = [leaf_hash(leaf) for leaf in leaves]
    h01, h23, h45 = node_hash(h[0], h[1]), node_hash(h[2], h[3]), node_hash(h[4], h[5])
    h0123, h456 = node_hash(h01, h23), node_hash(h45, h[6])
    assert tree_hash(leaves) == node_hash(h0123, h456)
    assert inclusion_proof(leaves, 3) == [h[2], h01, h456]
    assert inclusion_proof(leaves, 6) == [h45, h0123]
    # RFC 9162 §2.1.5's example: PROOF(3, D[7]) = [c, d, g, l] in its lettering.
    assert consistency_proof(leaves, 3) == [h[2], h[3], h01, h456]
    assert consistency_proof(leaves, 4) == [h456]
    assert consistency_proof(leaves, 6) == [h45, h[6], h0123]


def test_accumulator_root_at_every_size_matches_tree_hash() -> None:
    leaves = _leaves(40)
    accumulator = MerkleAccumulator()
    assert accumulator.root() == EMPTY_ROOT
    for size, leaf in enumerate(leaves, start=1):
        accumulator.append(leaf)
        assert accumulator.size == size
        assert accumulator.root() == _mth(leaves[:size])


def test_proof_requests_outside_the_tree_are_refused_with_the_reason() -> None:
    # The reason is asserted: an old size of 0 also fails deep inside the proof loop (a
    # negative shift), which a bare ValueError check cannot tell from the refusal.
    leaves = _leaves(5)
    with pytest.raises(ValueError, match="leaf index 5 is outside a tree of 5 leaves"):
        inclusion_proof(leaves, 5)
    with pytest.raises(ValueError, match="leaf index -1 is outside a tree of 5 leaves"):
        inclusion_proof(leaves, -1)
    with pytest.raises(ValueError, match="old size 0 must be between 1 and the tree size 5"):
        consistency_proof(leaves, 0)
    with pytest.raises(ValueError, match="old size 6 must be between 1 and the tree size 5"):
        consistency_proof(leaves, 6)


def test_equal_and_empty_old_sizes_are_consistent_trivially() -> None:
    root = tree_hash(_leaves(5))
    assert consistency_proof(_leaves(5), 5) == []
    assert verify_consistency(5, 5, root, root, [])
    assert not verify_consistency(5, 5, root, _flip(root), [])
    assert not verify_consistency(5, 5, root, root, [root])
    assert verify_consistency(0, 5, EMPTY_ROOT, root, [])
    assert not verify_consistency(0, 5, root, root, [])
    assert not verify_consistency(6, 5, root, root, [])


@st.composite
def _tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(min_value=1, max_value=130))
    return _leaves(size), draw(st.integers(min_value=0, max_value=size - 1))


@st.composite
def _tree_and_old_size(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(min_value=1, max_value=130))
    return _leaves(size), draw(st.integers(min_value=1, max_value=size))


@settings(max_examples=300, deadline=None)
@given(_tree_and_index())
def test_every_inclusion_proof_is_the_rfc_path_and_verifies(case: tuple[list[bytes], int]) -> None:
    leaves, index = case
    size, root = len(leaves), tree_hash(leaves)
    proof = inclusion_proof(leaves, index)
    assert root == _mth(leaves)
    assert proof == _path(index, leaves)
    assert verify_inclusion(leaves[index], index, size, proof, root)


@settings(max_examples=300, deadline=None)
@given(_tree_and_index(), st.data())
def test_an_altered_inclusion_proof_fails(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, index = case
    size, root = len(leaves), tree_hash(leaves)
    proof = inclusion_proof(leaves, index)
    assert not verify_inclusion(_flip(leaves[index]), index, size, proof, root)
    assert not verify_inclusion(leaves[index], index, size, proof, _flip(root))
    other = data.draw(st.integers(min_value=0, max_value=size + 2).filter(lambda i: i != index))
    assert not verify_inclusion(leaves[index], other, size, proof, root)
    if proof:
        at = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        altered = [*proof[:at], _flip(proof[at]), *proof[at + 1 :]]
        assert not verify_inclusion(leaves[index], index, size, altered, root)
        assert not verify_inclusion(leaves[index], index, size, proof[:-1], root)
    assert not verify_inclusion(leaves[index], index, size, [*proof, root], root)


@settings(max_examples=300, deadline=None)
@given(_tree_and_old_size())
def test_every_consistency_proof_is_the_rfc_proof_and_verifies(
    case: tuple[list[bytes], int],
) -> None:
    leaves, old_size = case
    proof = consistency_proof(leaves, old_size)
    if old_size < len(leaves):
        assert proof == _subproof(old_size, leaves, True)
    old_root, new_root = tree_hash(leaves[:old_size]), tree_hash(leaves)
    assert verify_consistency(old_size, len(leaves), old_root, new_root, proof)


@settings(max_examples=300, deadline=None)
@given(_tree_and_old_size(), st.data())
def test_an_altered_consistency_proof_fails(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, old_size = case
    size = len(leaves)
    proof = consistency_proof(leaves, old_size)
    old_root, new_root = tree_hash(leaves[:old_size]), tree_hash(leaves)
    assert not verify_consistency(old_size, size, _flip(old_root), new_root, proof)
    assert not verify_consistency(old_size, size, old_root, _flip(new_root), proof)
    if old_size < size:
        at = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        altered = [*proof[:at], _flip(proof[at]), *proof[at + 1 :]]
        assert not verify_consistency(old_size, size, old_root, new_root, altered)
        assert not verify_consistency(old_size, size, old_root, new_root, proof[:-1])
        # A rewritten old entry: the old root no longer matches the new tree's prefix.
        rewritten = [*leaves]
        rewritten[data.draw(st.integers(min_value=0, max_value=old_size - 1))] = b"rewritten"
        assert not verify_consistency(
            old_size, size, old_root, tree_hash(rewritten), consistency_proof(rewritten, old_size)
        )
    assert not verify_consistency(old_size, size, old_root, new_root, [*proof, new_root])
