"""Bonds from the topology: AtomInfo, Frames, the readers, model_bonds and train()."""

import logging

import numpy as np
import pytest

import polyvae
from polyvae import geometry
from polyvae.features.topology import model_bonds
from polyvae.frames import Frames
from polyvae.io import read_npz, write_npz
from polyvae.metadata import AtomInfo

mda = pytest.importorskip("MDAnalysis")
datafiles = pytest.importorskip("MDAnalysisTests.datafiles")

from polyvae.io import read_mdtraj, read_universe, to_mdtraj  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

X3 = np.random.default_rng(0).normal(size=(5, 4, 3))


# ---- AtomInfo ---------------------------------------------------------------------------
def test_atominfo_keeps_bonds_through_json():
    info = AtomInfo.from_dict({"names": ["A", "B", "C"], "bonds": [[0, 1], [1, 2]]})
    assert info.bonds.tolist() == [[0, 1], [1, 2]] and info.bonds.dtype == np.int64
    assert AtomInfo.from_dict(info.to_dict()).bonds.tolist() == [[0, 1], [1, 2]]
    assert "bonds" not in AtomInfo(names=("A",)).to_dict()


@pytest.mark.parametrize(
    "bonds, message",
    [
        ("0-1", r"atoms: 'bonds' must be a list of \[i, j\] pairs of integers; got '0-1'"),
        ([[0, 1.5]], r"'bonds' must be a list of \[i, j\] pairs of integers"),
        ([[0, 1, 2]], r"'bonds' must be a list of \[i, j\] pairs of integers"),
        ([[0, 3]], r"atoms 'bonds' must index atoms 0 .. 2; got indices from 0 to 3"),
        ([[1, 1]], r"atoms 'bonds' must join different atoms \(i != j\); row 0 is \[1, 1\]"),
    ],
)
def test_atominfo_refuses_bad_bonds(bonds, message):
    with pytest.raises(ValueError, match=message):
        AtomInfo.from_dict({"names": ["A", "B", "C"], "bonds": bonds})


def test_atominfo_with_an_edited_names_list_says_so():
    with pytest.raises(
        ValueError,
        match=r"^metadata: 'names' lists 2 atoms but 'masses' 3: the lists must describe the "
        r"same atoms \(was one of them edited\?\)$",
    ):
        AtomInfo.from_dict({"names": ["A", "B"], "masses": [1.0, 1.0, 1.0]}, "metadata")


# ---- Frames and .npz ----------------------------------------------------------------------
def test_frames_keep_bonds_through_slicing_concat_and_npz(tmp_path):
    f = Frames(X3, bonds=[[0, 1], [1, 2], [2, 3]])
    assert f[1:3].bonds.tolist() == f.bonds.tolist()
    assert Frames.concat([f, f[:2]]).bonds.tolist() == f.bonds.tolist()
    back = read_npz(write_npz(tmp_path / "f.npz", f))
    assert back.bonds.tolist() == f.bonds.tolist()
    assert read_npz(write_npz(tmp_path / "g.npz", Frames(X3))).bonds is None


def test_frames_take_bonds_from_the_atom_metadata_and_keep_both_in_step():
    atoms = {"names": list("ABCD"), "bonds": [[0, 1], [1, 2]]}
    f = Frames(X3, metadata={"atoms": atoms})
    assert f.bonds.tolist() == [[0, 1], [1, 2]]
    g = Frames(X3, metadata={"atoms": {"names": list("ABCD")}}, bonds=[[2, 3]])
    assert g.metadata["atoms"]["bonds"] == [[2, 3]]
    with pytest.raises(ValueError, match=r"bonds and metadata\['atoms'\]\['bonds'\] must agree"):
        Frames(X3, metadata={"atoms": atoms}, bonds=[[2, 3]])


def test_frames_refuse_bad_bonds_and_concat_of_other_bonds():
    with pytest.raises(ValueError, match=r"bonds must index atoms 0 .. 3; got indices from 0 to 4"):
        Frames(X3, bonds=[[0, 4]])
    with pytest.raises(ValueError, match=r"frames\[1\] and frames\[0\] have different bonds "):
        Frames.concat([Frames(X3, bonds=[[0, 1]]), Frames(X3)])


# ---- readers -----------------------------------------------------------------------------
def test_mdanalysis_bonds_are_those_of_the_topology_in_selection_order(peptide):
    u = mda.Universe(datafiles.PRMpbc, datafiles.TRJpbc_bz2)
    top = {tuple(sorted(b)) for b in u.atoms.bonds.to_indices().tolist()}
    idx = peptide.metadata["atoms"]["indices"]
    assert peptide.n_atoms == 22 and len(peptide.bonds) == 21
    assert all(tuple(sorted((idx[i], idx[j]))) in top for i, j in peptide.bonds)
    assert peptide.metadata["atoms"]["bonds"] == peptide.bonds.tolist()


def test_mdanalysis_selection_without_bonds_and_topology_without_bonds():
    ca = read_universe(datafiles.DCD, topology=datafiles.PSF, select="name CA", stop=2)
    assert ca.bonds.shape == (0, 2)  # the PSF has bonds, none between two CA atoms
    gro = read_universe(datafiles.GRO, select="resid 1", unwrap=False)
    assert gro.bonds is None and "bonds" not in gro.metadata["atoms"]


def test_mdtraj_bonds_of_a_pdb_and_back(tmp_path):
    f = read_mdtraj(datafiles.PDB_small, select="resid 0 to 2")
    assert f.bonds.shape == (f.n_atoms - 1, 2)  # three residues of a chain: a tree
    assert read_mdtraj(datafiles.PDB_small, select="name CA").bonds.shape == (0, 2)
    traj = to_mdtraj(f.positions, f.metadata["atoms"])
    pairs = sorted(sorted((b[0].index, b[1].index)) for b in traj.topology.bonds)
    assert pairs == sorted(f.bonds.tolist())


# ---- model_bonds --------------------------------------------------------------------------
def test_model_bonds_given_bonds_win():
    f = Frames(X3, bonds=[[0, 1], [1, 2], [2, 3]])
    assert model_bonds(f, bonds=[[0, 1], [0, 2], [0, 3]]).tolist() == [[0, 1], [0, 2], [0, 3]]


def test_model_bonds_refuses_given_bonds_that_leave_an_atom_out():
    with pytest.raises(
        ValueError,
        match=r"^bonds do not join all 4 atoms into one molecule: 1 atom is left apart from the "
        r"largest bonded group \(3 atoms\), by index and name 3 'B3'; pass bonds that join "
        r"every atom$",
    ):
        model_bonds(n_atoms=4, bonds=[[0, 1], [1, 2]])


def test_model_bonds_from_the_topology(peptide):
    assert model_bonds(peptide).tolist() == peptide.bonds.tolist()
    info = AtomInfo.from_dict(peptide.metadata["atoms"])
    assert model_bonds(info).tolist() == peptide.bonds.tolist()
    assert model_bonds(peptide.metadata["atoms"]).tolist() == peptide.bonds.tolist()


def test_model_bonds_refuses_topology_bonds_that_do_not_join_the_selection(peptide):
    ca_cb = read_universe(datafiles.DCD, topology=datafiles.PSF, select="name CA CB", stop=1)
    with pytest.raises(
        ValueError,
        match=r"^bonds from the topology and from distances \(covalent radii\) do not join all "
        r"408 selected atoms into one molecule: 406 atoms are left apart from the largest "
        r"bonded group \(2 atoms\), by index and name 2 'CA', 3 'CB', 4 'CA', 5 'CB', 6 'CA' "
        r"and 401 more; select one molecule, or pass bonds=\[\[i, j\], \.\.\.\] \(0-based "
        r"pairs\) that join all atoms$",
    ):
        model_bonds(ca_cb)  # CA-CB bonds, but no CA-CA bond within reach of covalent radii
    two = read_universe(
        datafiles.TRJpbc_bz2, topology=datafiles.PRMpbc, select="not resname WAT or resid 4"
    )
    with pytest.raises(
        ValueError, match=r"all 25 selected atoms .* 3 atoms are left apart .*22 'O'"
    ):
        model_bonds(two)  # the peptide and a water


def test_model_bonds_chain_where_the_selection_has_no_bonds(caplog):
    ca = read_universe(datafiles.DCD, topology=datafiles.PSF, select="name CA", stop=1)
    gro = read_universe(datafiles.GRO, select="name CA", unwrap=False, stop=1)
    with caplog.at_level(logging.INFO, logger="polyvae.features.topology"):
        assert model_bonds(ca).tolist() == geometry.chain_bonds(214).tolist()
        assert "no bond of the topology joins two of the 214 selected atoms" in caplog.text
        assert model_bonds(gro).tolist() == geometry.chain_bonds(gro.n_atoms).tolist()
        assert f"the topology has no bonds: the model of its {gro.n_atoms}" in caplog.text
        caplog.clear()
        assert model_bonds(Frames(X3)).tolist() == geometry.chain_bonds(4).tolist()
        assert model_bonds(n_atoms=4).tolist() == geometry.chain_bonds(4).tolist()
        assert caplog.text == ""  # bare coordinates: nothing to report


def test_model_bonds_guessed_for_an_all_atom_selection_without_bonds(caplog):
    """A GRO file has no bonds: the all-atom methionine of resid 1 gets them from distances."""
    gro = read_universe(datafiles.GRO, select="resid 1", unwrap=False)
    assert gro.bonds is None and gro.n_atoms == 19
    with caplog.at_level(logging.INFO, logger="polyvae.features.topology"):
        bonds = model_bonds(gro)
    assert caplog.records[-1].getMessage() == (
        "bonds: the topology has none, 18 guessed from distances (covalent radii) to join the "
        "19 selected atoms"
    )
    named = {tuple(sorted((gro.names[i], gro.names[j]))) for i, j in bonds}
    expected = "N-H1 N-H2 N-H3 N-CA CA-HA CA-CB CB-HB1 CB-HB2 CB-CG CG-HG1 CG-HG2 CG-SD SD-CE"
    expected += " CE-HE1 CE-HE2 CE-HE3 CA-C C-O"
    assert named == {tuple(sorted(p.split("-"))) for p in expected.split()}


def test_model_bonds_argument_errors():
    with pytest.raises(ValueError, match=r"^n_atoms is required when source is None"):
        model_bonds()
    with pytest.raises(ValueError, match=r"^n_atoms must match the 4 atoms of source; got 5$"):
        model_bonds(Frames(X3), n_atoms=5)
    with pytest.raises(TypeError, match=r"^source must be a polyvae Frames, an AtomInfo, .* got"):
        model_bonds(X3)
    with pytest.raises(ValueError, match=r"^source: 'bonds' must be a list of \[i, j\] pairs"):
        model_bonds({"names": ["A", "B"], "bonds": "x"})


# ---- train ---------------------------------------------------------------------------------
def _train(frames, **kw):
    return polyvae.train(
        frames, hidden=(16,), epochs=2, batch_size=4, validation_fraction=0.0, progress=False, **kw
    )


def test_train_keeps_the_topology_bonds_and_checks_chirality(peptide, tmp_path):
    model = _train(peptide, output=tmp_path / "ala2.npz")
    loaded = polyvae.load_model(tmp_path / "ala2.npz")
    for m in (model, loaded):
        assert m.atoms.bonds.tolist() == peptide.bonds.tolist()
        assert m.bonds.tolist() == peptide.bonds.tolist()
        assert m.structure_checks.bonds.tolist() == peptide.bonds.tolist()
        assert [peptide.names[i] for i in m.structure_checks.chiral[:, 0]] == ["CA"]
    aligned = model.pipeline.align_frames(peptide.positions)
    report = loaded.check_structures(aligned)
    assert report.to_dict()["fraction_chirality_ok"] == 1.0 and report.fraction_valid == 1.0
    mirrored = loaded.check_structures(aligned * np.array([1.0, 1.0, -1.0]))
    assert not mirrored.chirality_ok.any() and mirrored.bonds_ok.all()


def test_train_on_bare_coordinates_uses_a_chain_and_no_chirality():
    from helpers import random_chain

    x = random_chain(np.random.default_rng(3), n_frames=32, n_atoms=6)
    model = _train(x)
    assert model.metadata["atoms"]["bonds"] == geometry.chain_bonds(6).tolist()
    assert model.atoms.indices is None and model.atoms.names == tuple(f"B{i}" for i in range(6))
    checks = model.structure_checks
    assert "chiral" not in checks.to_dict()
    assert "fraction_chirality_ok" not in checks.check(model.pipeline.align_frames(x)).to_dict()
    stats = polyvae.training.trainer.training_stats(model.pipeline.align_frames(x), None)
    assert model.train_stats.bond_mean == pytest.approx(stats.bond_mean)


def test_train_with_bonds_argument_and_its_error():
    x = np.random.default_rng(4).normal(size=(16, 5, 3)) * 3
    star = [[0, 1], [0, 2], [0, 3], [0, 4]]
    assert _train(x, bonds=star).bonds.tolist() == star
    with pytest.raises(ValueError, match=r"^bonds do not join all 5 atoms into one molecule"):
        _train(x, bonds=[[0, 1]])
