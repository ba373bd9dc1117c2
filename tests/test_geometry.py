"""The geometry kernels: index sets from the bond graph, NumPy and JAX alike."""

import jax.numpy as jnp
import numpy as np
import pytest

from polyvae import geometry as g

RING_AND_BRANCH = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [1, 4]])  # a 4-ring, 4 on atom 1


def test_index_sets_of_a_ring_with_a_branch():
    assert g.neighbours(5, RING_AND_BRANCH) == [[1, 3], [0, 2, 4], [1, 3], [0, 2], [1]]
    triples = {tuple(t) for t in g.angle_triples(5, RING_AND_BRANCH).tolist()}
    assert triples == {(1, 0, 3), (0, 1, 2), (0, 1, 4), (2, 1, 4), (1, 2, 3), (0, 3, 2)}
    quads = g.dihedral_quads(5, RING_AND_BRANCH).tolist()
    assert len(quads) == 6 and len({tuple(q) for q in quads}) == 6
    for i, j, k, m in quads:  # each a bonded path of four different atoms
        bonded = {frozenset(b) for b in RING_AND_BRANCH.tolist()}
        assert {frozenset((i, j)), frozenset((j, k)), frozenset((k, m))} <= bonded
    hops = g.bond_graph_distances(5, RING_AND_BRANCH)
    assert hops[4, 3] == 3 and hops[4, 0] == 2 and hops[0, 2] == 2
    assert g.nonbonded_pairs(5, RING_AND_BRANCH, exclude=1).tolist() == [
        [0, 2],
        [0, 4],
        [1, 3],
        [2, 4],
        [3, 4],
    ]
    assert g.nonbonded_pairs(5, RING_AND_BRANCH, exclude=2).tolist() == [[3, 4]]


def test_angles_and_dihedrals_match_mdanalysis_and_jax():
    dist = pytest.importorskip("MDAnalysis.lib.distances")
    x = np.random.default_rng(0).normal(size=(4, 6, 3))
    quads = g.dihedral_quads(6, g.chain_bonds(6))
    triples = g.angle_triples(6, g.chain_bonds(6))
    ref_d = np.stack([dist.calc_dihedrals(*(x[:, q] for q in quad)) for quad in quads], axis=1)
    ref_a = np.stack([dist.calc_angles(*(x[:, q] for q in t)) for t in triples], axis=1)
    np.testing.assert_allclose(g.dihedrals(x, quads), ref_d, atol=1e-6)
    np.testing.assert_allclose(g.bond_angles(x, triples), ref_a, atol=1e-6)
    xj = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(np.asarray(g.dihedrals(xj, quads)), ref_d, atol=1e-5)
    w = g.mass_weights(None, 6)
    np.testing.assert_allclose(
        np.asarray(g.radius_of_gyration(xj, jnp.asarray(w))), g.radius_of_gyration(x, w), rtol=1e-6
    )
    r = g.kabsch_rotation(g.centered(x, w), g.centered(x[0], w), w)
    np.testing.assert_allclose(g.rotate(g.centered(x, w), r)[0], g.centered(x[0], w), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0)


@pytest.mark.parametrize("n_atoms, dim, exclude", [(12, 2, 1), (9, 3, 2), (30, 3, 3)])
def test_closest_nonbonded_gives_the_same_numbers_from_all_pairs_and_from_the_tree(
    n_atoms, dim, exclude, monkeypatch
):
    rng = np.random.default_rng(n_atoms)
    steps = rng.normal(size=(200, n_atoms, dim))
    x = np.cumsum(steps / np.linalg.norm(steps, axis=-1, keepdims=True), axis=1)
    near, _ = g.bonded_within(n_atoms, g.chain_bonds(n_atoms), exclude)
    excluded = g.pair_codes(near, n_atoms)
    every_pair = g.closest_nonbonded(x, excluded, 1.0)  # small: all pairs are measured
    pairs = g.pairs_not_excluded(n_atoms, excluded)
    expected = np.linalg.norm(x[:, pairs[:, 0]] - x[:, pairs[:, 1]], axis=-1).min(axis=1)
    np.testing.assert_array_equal(every_pair, expected)
    monkeypatch.setattr(g, "ALL_PAIRS_LIMIT", 0)  # the k-d tree, structure by structure
    np.testing.assert_array_equal(g.closest_nonbonded(x, excluded, 1.0), every_pair)
