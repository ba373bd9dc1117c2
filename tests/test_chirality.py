"""Chiral centres from the bond graph and their handedness (NumPy and JAX)."""

import jax.numpy as jnp
import numpy as np
import pytest

from polyvae import geometry
from polyvae.measures.validity import StructureChecks

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

# a carbon with four different substituents (CHFClBr) and one with three equal ones (CH3F)
CHFCLBR = (["C", "H", "F", "Cl", "Br"], [[0, 1], [0, 2], [0, 3], [0, 4]])
CH3F = (["C", "H1", "H2", "H3", "F"], [[0, 1], [0, 2], [0, 3], [0, 4]])
TETRA = np.array([[0, 0, 0], [1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float)


@pytest.mark.parametrize(
    "label, symbol", [("CA", "C"), ("1HB", "H"), ("HH31", "H"), ("Cl", "Cl"), ("OW", "O")]
)
def test_element_symbol(label, symbol):
    assert geometry.element_symbol(label) == symbol


def test_chiral_centres_of_small_molecules():
    assert geometry.chiral_centres(5, np.array(CHFCLBR[1]), CHFCLBR[0]).tolist() == [[0, 1, 2, 3]]
    assert geometry.chiral_centres(5, np.array(CH3F[1]), CH3F[0]).shape == (0, 4)


def test_branches_that_differ_only_further_out_are_told_apart():
    # C0 bonded to H, F and two ethyl-like arms that differ at their far end (H vs F)
    names = ["C", "H", "F", "C", "C", "H", "C", "C", "F"]
    bonds = np.array([[0, 1], [0, 2], [0, 3], [3, 4], [4, 5], [0, 6], [6, 7], [7, 8]])
    assert geometry.chiral_centres(9, bonds, names)[:, 0].tolist() == [0]
    assert geometry.chiral_centres(9, bonds, names, depth=1).shape == (0, 4)


def test_chirality_sign_numpy_and_jax_and_the_mirror():
    quads = np.array([[0, 1, 2, 3]])
    volume = geometry.signed_volumes(TETRA, quads)
    assert volume.shape == (1,) and abs(volume[0]) > 0
    assert np.allclose(geometry.signed_volumes(jnp.asarray(TETRA), quads), volume)
    sign = geometry.chirality(TETRA, quads)[0]
    assert float(geometry.chirality(jnp.asarray(TETRA), quads)[0]) == sign
    assert geometry.chirality(TETRA * [-1, 1, 1], quads)[0] == -sign


def test_alanine_dipeptide_has_one_centre_kept_by_md_and_flipped_by_a_mirror(peptide):
    quads = geometry.chiral_centres(peptide.n_atoms, peptide.bonds, peptide.names)
    assert [peptide.names[i] for i in quads[0]] == ["CA", "N", "HA", "CB"] and len(quads) == 1
    signs = geometry.chirality(peptide.positions, quads)
    assert np.all(signs == signs[0])  # every MD frame keeps its handedness
    assert np.all(geometry.chirality(-peptide.positions, quads) == -signs)


def test_structure_checks_keep_the_training_handedness(peptide):
    checks = StructureChecks.from_training(peptide.positions, peptide.bonds, names=peptide.names)
    assert checks.chiral.shape == (1, 4)
    report = checks.check(peptide.positions)
    assert report.chirality_ok.all() and report.to_dict()["fraction_chirality_ok"] == 1.0
    mirrored = checks.check(peptide.positions * np.array([-1.0, 1.0, 1.0]))
    assert not mirrored.chirality_ok.any() and not mirrored.valid.any()
    assert mirrored.bonds_ok.all() and mirrored.angles_ok.all()
    back = StructureChecks.from_dict(checks.to_dict())
    assert back.chiral.tolist() == checks.chiral.tolist()
    assert back.chiral_sign.tolist() == checks.chiral_sign.tolist()
    bad = {**checks.to_dict(), "chiral_sign": [0.5]}
    with pytest.raises(ValueError, match=r"'chiral_sign' must hold \+1 or -1 for each centre"):
        StructureChecks.from_dict(bad)


def test_no_chirality_without_names_or_in_2d(peptide):
    plain = StructureChecks.from_training(peptide.positions, peptide.bonds)
    assert plain.chiral.shape == (0, 4) and plain.check(peptide.positions).chirality_ok is None
    flat = StructureChecks.from_training(
        peptide.positions[..., :2], peptide.bonds, names=peptide.names
    )
    assert flat.chiral.shape == (0, 4) and "chiral" not in flat.to_dict()
