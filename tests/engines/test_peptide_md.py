"""Alanine dipeptide simulated with OpenMM (tools/peptide.py): topology, chirality, bond
lengths, backbone basins, determinism and the cache."""

import numpy as np
import pytest

from polyvae import geometry
from polyvae.io import read_npz

pytest.importorskip("openmm")
from peptide import _START, simulate_alanine_dipeptide  # noqa: E402

N_ATOMS = 22


def _atom(frames, name, residue):
    """Index of atom ``name`` in residue 0 (ACE), 1 (ALA) or 2 (NME) of the Amber order."""
    first = {0: 0, 1: 6, 2: 16}[residue]
    last = {0: 6, 1: 16, 2: N_ATOMS}[residue]
    return first + frames.names[first:last].index(name)


def _phi_psi(frames):
    """Backbone (phi, psi) of the alanine in degrees: (T, 2)."""
    c0, n, ca, c, n2 = (
        _atom(frames, "C", 0),
        _atom(frames, "N", 1),
        _atom(frames, "CA", 1),
        _atom(frames, "C", 1),
        _atom(frames, "N", 2),
    )
    quads = np.array([[c0, n, ca, c], [n, ca, c, n2]])
    return np.degrees(geometry.dihedrals(frames.positions.astype(np.float64), quads))


def test_trajectory_has_22_atoms_and_21_bonds_joining_them(peptide_md):
    assert peptide_md.positions.shape == (2000, N_ATOMS, 3)
    assert peptide_md.unit == "Å"
    np.testing.assert_allclose(peptide_md.times[:2], [0.5, 1.0])
    assert len(peptide_md.bonds) == 21  # a tree: 22 atoms, no rings
    hops = geometry.bond_graph_distances(N_ATOMS, peptide_md.bonds)
    assert np.all(np.isfinite(hops))  # one connected molecule
    assert sorted(set(peptide_md.names)) == sorted({name for name, *_ in _START})
    heavy = sum(m > 2 for m in peptide_md.masses)
    assert heavy == 10 and np.isclose(peptide_md.masses.sum(), 144.17, atol=0.05)


def test_ca_is_the_only_chiral_centre_and_keeps_its_sign(peptide_md):
    quads = geometry.chiral_centres(N_ATOMS, peptide_md.bonds, peptide_md.names)
    assert len(quads) == 1
    assert [peptide_md.names[i] for i in quads[0]] == ["CA", "N", "HA", "CB"]
    signs = geometry.chirality(peptide_md.positions, quads)
    start = np.array([xyz for *_, x, y, z in _START for xyz in [(x, y, z)]])
    start_sign = geometry.chirality(start, quads)
    assert start_sign.tolist() == [-1]  # L: as in the Amber run of capped-ala
    assert np.all(signs == start_sign)  # L-alanine in every frame


def test_bond_lengths_are_physical_and_bonds_to_hydrogen_fixed(peptide_md):
    lengths = geometry.pair_distances(peptide_md.positions, peptide_md.bonds)
    elements = [geometry.element_symbol(s) for s in peptide_md.names]
    carbonyl = {int(i + j - k) for i, j in peptide_md.bonds for k in (i, j) if elements[k] == "O"}
    checked = 0
    for b, (i, j) in enumerate(peptide_md.bonds):
        pair = "".join(sorted(elements[i] + elements[j]))
        if "H" in pair:
            assert np.ptp(lengths[:, b]) < 1e-3  # constrained
            assert 0.95 < lengths[0, b] < 1.12
            continue
        if pair == "CN":  # amide C(=O)-N 1.33-1.35, N-C(alpha or methyl) 1.45-1.47
            reference = 1.34 if carbonyl & {int(i), int(j)} else 1.46
        else:
            reference = {"CC": 1.53, "CO": 1.23}[pair]
        low, high = np.percentile(lengths[:, b], [1, 99])
        assert abs(lengths[:, b].mean() - reference) < 0.03, (pair, i, j)
        assert reference - 0.1 < low and high < reference + 0.1, (pair, i, j)
        assert np.all(np.abs(lengths[:, b] - reference) < 0.2)  # thermal: std 0.02-0.03 Å
        checked += 1
    assert checked == 9  # 3 C-C, 2 C=O, 2 amide C-N, 2 N-C


def test_backbone_visits_c7eq_and_c5_beta_many_times(peptide_md):
    phi, psi = _phi_psi(peptide_md).T
    c7eq = (phi < 0) & (psi >= 0) & (psi < 120)
    beta = ((phi < -110) | (phi > 150)) & ((psi >= 120) | (psi < -150))
    alpha_r = (phi < 0) & (psi >= -90) & (psi < 0)
    assert c7eq.mean() > 0.3 and beta.mean() > 0.1
    assert alpha_r.mean() < 0.1  # seldom in vacuum
    assert np.mean(phi > 0) < 0.01  # alpha_L and C7ax not reached in 1 ns at 300 K
    state = np.where(c7eq, 0, np.where(beta, 1, -1))
    assigned = state[state >= 0]
    assert np.count_nonzero(np.diff(assigned)) >= 20  # crosses back and forth


def test_a_seed_gives_the_same_trajectory_and_the_cache_is_kept(tmp_path, peptide_md):
    a = simulate_alanine_dipeptide(tmp_path / "a.npz", n_frames=10)
    b = simulate_alanine_dipeptide(tmp_path / "b", n_frames=10)
    c = simulate_alanine_dipeptide(tmp_path / "c.npz", n_frames=10, seed=1)
    assert b.name == "b.npz"
    fa, fb, fc = read_npz(a), read_npz(b), read_npz(c)
    np.testing.assert_array_equal(fa.positions, fb.positions)
    np.testing.assert_array_equal(fa.positions, peptide_md.positions[:10])  # same start
    assert not np.array_equal(fa.positions, fc.positions)
    stamp = a.stat().st_mtime_ns
    assert simulate_alanine_dipeptide(a, n_frames=99, seed=5) == a
    assert a.stat().st_mtime_ns == stamp and len(read_npz(a).positions) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz", "c.npz"]


@pytest.mark.parametrize(
    "kwargs",
    [{"n_frames": 0}, {"n_frames": 1.5}, {"seed": -1}, {"interval_ps": 0.003}, {"temperature": 0}],
)
def test_bad_arguments_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError):
        simulate_alanine_dipeptide(tmp_path / "x.npz", **kwargs)
