"""The stored Merkle tree (storage/tree.py) gives the same roots and proofs, byte for byte, as
the linear implementation (storage/merkle.py, which rebuilds the tree from every leaf) and as
RFC 9162's recursive definitions and the CT reference vectors, on SQLite and PostgreSQL."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from services.context import Services
from services.ledger.checkpoints import consistency_proof_for, inclusion_proof_for, ledger_leaves
from storage import ledger, merkle, tree
from storage.models import LedgerNode
from tests.storage.test_merkle import CT_LEAVES, CT_ROOTS, _leaves, _path, _subproof


def _events(count: int, start: int) -> list[ledger.Event]:
    return [
        ledger.Event("test", "test.event", "test", start + n, {"n": start + n, "text": "台账"})
        for n in range(count)
    ]


def test_stored_tree_gives_the_ct_reference_roots_and_rfc_proofs(services: Services) -> None:
    with services.db.write() as session:
        tree.extend(session, 0, CT_LEAVES[:3])
        tree.extend(session, 3, CT_LEAVES[3:])
    with services.db.read() as session:
        for size in range(len(CT_ROOTS)):
            assert tree.root(session, size).hex() == CT_ROOTS[size]
        for size in range(1, len(CT_LEAVES) + 1):
            leaves = CT_LEAVES[:size]
            for index in range(size):
                assert tree.inclusion_proof(session, index, size) == _path(index, leaves)
            for old in range(1, size):
                assert tree.consistency_proof(session, old, size) == _subproof(old, leaves, True)
            assert tree.consistency_proof(session, size, size) == []


def test_a_tree_of_n_leaves_stores_fewer_than_2n_nodes(services: Services) -> None:
    with services.db.write() as session:
        tree.extend(session, 0, _leaves(1000))
    with services.db.read() as session:
        stored = session.scalar(select(func.count()).select_from(LedgerNode))
    # One node per complete subtree: 2n - popcount(n).
    assert stored == 2 * 1000 - (1000).bit_count()


_picks = st.integers(min_value=0, max_value=10**9)


# The fixture's ledger is shared by the examples on purpose: each example appends one batch of
# random length (as a purge or an ingest does) and checks random sizes of the grown ledger.
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_stored_tree_answers_as_the_linear_implementation(
    services: Services, data: st.DataObject
) -> None:
    with services.db.read() as session:
        head = ledger_leaves(session)
    batch = data.draw(st.integers(min_value=1, max_value=40), label="batch")
    services.db.run_write(lambda session: ledger.append_many(session, _events(batch, len(head))))
    with services.db.read() as session:
        leaves = ledger_leaves(session)
        # Drawn from fixed ranges and reduced modulo the ledger's length: the strategies must not
        # depend on how long the shared ledger has grown.
        size = 1 + data.draw(_picks, label="size") % len(leaves)
        prefix = leaves[:size]
        assert tree.root(session, size) == merkle.tree_hash(prefix)
        for index in (pick % size for pick in data.draw(st.lists(_picks, min_size=1, max_size=5))):
            assert tree.inclusion_proof(session, index, size) == merkle.inclusion_proof(
                prefix, index
            )
            served = inclusion_proof_for(session, index + 1, size)
            assert served.proof == [node.hex() for node in merkle.inclusion_proof(prefix, index)]
            assert served.root == merkle.tree_hash(prefix).hex()
            assert served.leaf == prefix[index].hex()
        for old in (
            1 + pick % size for pick in data.draw(st.lists(_picks, min_size=1, max_size=5))
        ):
            assert tree.consistency_proof(session, old, size) == merkle.consistency_proof(
                prefix, old
            )
            served_consistency = consistency_proof_for(session, old, size)
            assert served_consistency.proof == [
                node.hex() for node in merkle.consistency_proof(prefix, old)
            ]
            assert served_consistency.old_root == merkle.tree_hash(leaves[:old]).hex()
        assert ledger.verify_stored_tree(session).ok


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=70), min_size=1, max_size=8), st.data())
def test_nodes_appended_in_any_batches_are_the_linear_trees_subtrees(
    batches: list[int], data: st.DataObject
) -> None:
    """Pure: the accumulator resumed from stored peaks at every batch boundary stores exactly
    the complete subtrees of the linear tree, and any prefix root folds from them."""
    leaves = _leaves(sum(batches))
    stored: dict[tuple[int, int], bytes] = {}
    size = 0
    for batch in batches:
        peaks = [stored[key] for key in merkle.perfect_subtrees(0, size)]
        accumulator = merkle.MerkleAccumulator(size, peaks)
        for leaf in leaves[size : size + batch]:
            for node in accumulator.append(leaf):
                assert (node.level, node.position) not in stored
                stored[(node.level, node.position)] = node.digest
        size += batch
    assert len(stored) == 2 * size - size.bit_count()
    for (level, position), digest in stored.items():
        first = position << level
        assert digest == merkle.tree_hash(leaves[first : first + (1 << level)])
    prefix = data.draw(st.integers(min_value=1, max_value=size))
    peaks = [stored[key] for key in merkle.perfect_subtrees(0, prefix)]
    assert merkle.fold_subtrees(peaks) == merkle.tree_hash(leaves[:prefix])
