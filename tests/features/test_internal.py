"""Internal coordinates: Z-matrix from the bond graph, NeRF rebuild in JAX."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_chain

from polyvae import geometry
from polyvae.features.internal import ZMatrix, to_cartesian, to_internal, zmatrix


def _superposed_deviation(rebuilt, x) -> float:
    """Largest atom deviation (same unit as x) after the best proper superposition."""
    w = geometry.mass_weights(None, x.shape[-2])
    xc = geometry.centered(np.asarray(x, np.float64), w)
    yc = geometry.centered(np.asarray(rebuilt, np.float64), w)
    return float(np.abs(geometry.rotate(yc, geometry.kabsch_rotation(yc, xc, w)) - xc).max())


def _round_trip(x, zm):
    internal = {k: jnp.asarray(v, jnp.float32) for k, v in to_internal(x, zm).items()}
    return np.asarray(to_cartesian(internal, zm))


def _universe(*files, **kwargs):
    mda = pytest.importorskip("MDAnalysis")
    pytest.importorskip("MDAnalysisTests")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mda.Universe(*files, **kwargs)


def _bonds(group):
    """The bonds within an atom group, as 0-based positions in the group."""
    where = {ix: k for k, ix in enumerate(group.ix)}
    pairs = [(where.get(b.atoms[0].ix), where.get(b.atoms[1].ix)) for b in group.bonds]
    return np.array([p for p in pairs if None not in p])


@pytest.mark.parametrize("dim", [2, 3])
def test_chain_round_trip(dim):
    x = random_chain(np.random.default_rng(3), n_frames=4, n_atoms=30, dim=dim) * 3.8
    zm = zmatrix(30, dim=dim)
    assert zm.n_internal == 29 + 28 + (27 if dim == 3 else 0)
    assert zm.ring_bonds.shape == (0, 2)
    assert _superposed_deviation(_round_trip(x, zm), x) <= 1e-4


def test_adk_ca_chain_round_trip_float32():
    """214 CA atoms of AdK (Å): the rebuilt chain equals the frame to 1e-4 Å in float32."""
    from MDAnalysisTests.datafiles import DCD, PSF

    u = _universe(PSF, DCD)
    ca = u.select_atoms("name CA")
    x = np.stack([ca.positions.copy() for _ in u.trajectory[:4]])
    assert _superposed_deviation(_round_trip(x, zmatrix(ca.n_atoms)), x) <= 1e-4


def test_branched_molecule_with_rings_and_hydrogens():
    """A drug-like molecule (mol2, 49 atoms with hydrogens, three rings): the ring-closing
    bonds are measured, not built, and keep their lengths; chirality is kept."""
    from MDAnalysisTests.datafiles import mol2_molecule

    u = _universe(mol2_molecule)
    bonds = _bonds(u.atoms)
    assert (u.atoms.types == "H").sum() > 10 or any(n.startswith("H") for n in u.atoms.names)
    zm = zmatrix(u.atoms.n_atoms, bonds)
    assert len(zm.ring_bonds) == len(bonds) - (u.atoms.n_atoms - 1) == 3
    x = u.atoms.positions[None].astype(np.float64)
    y = _round_trip(x, zm)
    assert _superposed_deviation(y, x) <= 1e-4  # proper superposition: no mirror image
    ring = zm.ring_bonds
    np.testing.assert_allclose(
        geometry.pair_distances(y, ring), geometry.pair_distances(x, ring), atol=1e-4
    )


def test_dipeptide_round_trip_keeps_the_chiral_centres():
    """Ala-Ala (Amber files of MDAnalysisTests): 23 atoms, 12 hydrogens, two chiral CA."""
    from MDAnalysisTests.datafiles import PRM7_ala2, RST7_ala2

    u = _universe(PRM7_ala2, RST7_ala2, format="RESTRT")
    pep = u.select_atoms("resname ALA")
    assert pep.n_atoms == 23 and (pep.names.astype(str).astype("U1") == "H").sum() == 12
    x = pep.positions[None].astype(np.float64)
    zm = zmatrix(pep.n_atoms, _bonds(pep))
    y = _round_trip(x, zm)
    assert _superposed_deviation(y, x) <= 1e-4
    at = {ix: k for k, ix in enumerate(pep.ix)}

    def handedness(p, ca):
        around = [at[a.ix] for a in ca.bonded_atoms if not a.name.startswith("H")][:3]
        a, b, c = (p[0, i] - p[0, at[ca.ix]] for i in around)
        return np.sign(np.dot(np.cross(a, b), c))

    for ca in pep.select_atoms("name CA"):
        assert handedness(y, ca) == handedness(x, ca) != 0


def test_methyl_siblings_carry_phases_and_turn_as_one_group():
    """The three hydrogens of each methyl group of Ala-Ala share their reference atoms:
    the first keeps its dihedral, the others a phase of about ±120°; turning the first
    dihedral turns the whole group, so its H-C-H angles stay as they were."""
    from MDAnalysisTests.datafiles import PRM7_ala2, RST7_ala2

    u = _universe(PRM7_ala2, RST7_ala2, format="RESTRT")
    pep = u.select_atoms("resname ALA")
    x = pep.positions[None].astype(np.float64)
    zm = zmatrix(pep.n_atoms, _bonds(pep))
    names = list(pep.names.astype(str))
    cb = [k for k, name in enumerate(names) if name == "CB"]
    assert len(cb) == 2
    internal = to_internal(x, zm)
    step = {int(a): t for t, a in enumerate(zm.order)}
    for c in cb:
        hs = [k for k in zm.order if zm.refs[step[int(k)], 0] == c]
        assert len(hs) == 3 and all(names[h].startswith("H") for h in hs)
        first, *later = (step[int(h)] for h in hs)
        assert zm.phase[first] == -1 and all(zm.phase[t] == first for t in later)
        phases = np.degrees([internal["dihedrals"][0, t - 3] for t in later])
        assert np.allclose(np.sort(np.abs(phases)), 120, atol=12)
    # a heavy atom leads its siblings: the torsion a group carries is its heavy atoms'
    for t in range(3, zm.n_atoms):
        if zm.phase[t] >= 0:
            assert len(_bonds_of(zm, zm.order[zm.phase[t]])) >= len(_bonds_of(zm, zm.order[t]))
    turned = {k: np.array(v) for k, v in internal.items()}
    for c in cb:
        first = min(t for t in range(3, zm.n_atoms) if zm.refs[t, 0] == c)
        turned["dihedrals"][0, first - 3] += 1.0  # about 57 degrees
    y = _round_trip(x, zm)
    z = np.asarray(to_cartesian({k: jnp.asarray(v, jnp.float32) for k, v in turned.items()}, zm))
    hch = geometry.angle_triples(pep.n_atoms, _bonds(pep))
    hch = hch[[names[i][0] == names[k][0] == "H" and j in cb for i, j, k in hch]]
    assert len(hch) == 6
    before, after = geometry.bond_angles(y, hch), geometry.bond_angles(z, hch)
    assert np.abs(after - before).max() < 1e-4
    moved = np.linalg.norm(z - y, axis=-1)[0]
    assert moved[[int(k) for k in zm.order if zm.refs[step[int(k)], 0] in cb]].min() > 0.5


def _bonds_of(zm, atom):
    tree = np.stack([zm.order[1:], zm.refs[1:, 0]], axis=1)
    return [b for b in np.concatenate([tree, zm.ring_bonds]) if atom in b]


def test_gradients_are_finite_and_jit_matches_eager():
    x = random_chain(np.random.default_rng(5), n_frames=3, n_atoms=12, dim=3)
    zm = zmatrix(12)
    internal = {k: jnp.asarray(v, jnp.float32) for k, v in to_internal(x, zm).items()}
    rebuild = jax.jit(lambda ic: to_cartesian(ic, zm))
    np.testing.assert_allclose(
        np.asarray(rebuild(internal)), np.asarray(to_cartesian(internal, zm)), atol=1e-5
    )

    def rg(ic):
        y = to_cartesian(ic, zm)
        return jnp.sum(geometry.radius_of_gyration(y, jnp.full(12, 1.0 / 12)))

    grads = jax.grad(rg)(internal)
    for name, g in grads.items():
        assert np.all(np.isfinite(np.asarray(g))), name
    assert np.abs(np.asarray(grads["bonds"])).max() > 0  # longer bonds: larger Rg


def test_internal_coordinates_are_what_they_say():
    """Bond lengths, bond angles (3D, [0, pi]) and signed turning angles (2D)."""
    x3 = random_chain(np.random.default_rng(6), n_frames=2, n_atoms=6, dim=3)
    ic = to_internal(x3, zmatrix(6, root=0))
    np.testing.assert_allclose(ic["bonds"], 1.0, atol=1e-6)
    assert np.all((ic["angles"] >= 0) & (ic["angles"] <= np.pi))
    assert ic["dihedrals"].shape == (2, 3)
    square = np.array([[[0, 0], [1, 0], [1, 1], [0, 1]]], float)  # left turns of 90 degrees
    ic2 = to_internal(square, zmatrix(4, dim=2, root=0))
    np.testing.assert_allclose(np.abs(ic2["angles"]), np.pi / 2, atol=1e-12)
    assert np.sign(ic2["angles"][0, 0]) == np.sign(ic2["angles"][0, 1])  # the same turn


def test_errors_name_what_to_do():
    with pytest.raises(ValueError, match=r"bonds must join all 6 atoms .* give the topology"):
        zmatrix(6, [[0, 1], [1, 2], [3, 4], [4, 5]])
    with pytest.raises(ValueError, match="bonds must index atoms 0 .. 4"):
        zmatrix(5, [[0, 9]])
    with pytest.raises(ValueError, match="n_atoms must be >= 4"):
        zmatrix(3)
    with pytest.raises(ValueError, match="dim must be 2 or 3"):
        zmatrix(5, dim=4)
    assert isinstance(zmatrix(3, dim=2), ZMatrix)
