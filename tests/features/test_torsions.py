"""Torsion and angle encoder inputs: backbone phi/psi from names and bonds, sin/cos
inputs, basin separation on an OpenMM alanine dipeptide, exports, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import cKDTree

import polyvae
from polyvae import geometry
from polyvae.export import ExportError, encoder_spec, write_colvars, write_plumed
from polyvae.features.topology import backbone_dihedrals


def _basins(frames):
    """Beta/PII (psi > 60 or < -150 degrees) against alpha: the dipeptide's two basins."""
    q = backbone_dihedrals(frames.names, frames.bonds)
    psi = np.degrees(geometry.dihedrals(frames.positions.astype(np.float64), q))[:, 1]
    return ((psi > 60) | (psi < -150)).astype(int)


def _knn_accuracy(z, labels, k=5):
    """Leave-one-out k-nearest-neighbour accuracy of labels in latent space."""
    _, idx = cKDTree(z).query(z, k + 1)
    votes = labels[idx[:, 1:]].mean(axis=1)
    return float(((votes > 0.5).astype(int) == labels).mean())


@pytest.fixture(scope="module")
def torsion_model(peptide_md):
    # the encoder is what the CV needs; the Cartesian decoder trains it fastest
    return polyvae.train(
        peptide_md, features="torsions", activation="tanh", epochs=50, decoder="cartesian",
        progress=False,
    )  # fmt: skip


def test_backbone_dihedrals_of_alanine_dipeptide(peptide_md):
    q = backbone_dihedrals(peptide_md.names, peptide_md.bonds)
    names = np.asarray(peptide_md.names)
    assert q.shape == (2, 4)
    assert [list(names[r]) for r in q] == [["C", "N", "CA", "C"], ["N", "CA", "C", "N"]]
    assert q[0, 2] == q[1, 1]  # phi and psi of the one residue share its CA
    # no backbone without the bonds that join it
    assert backbone_dihedrals(peptide_md.names, np.zeros((0, 2), int)).shape == (0, 4)


def test_torsion_latent_separates_the_phi_psi_basins(peptide_md, torsion_model):
    labels = _basins(peptide_md)
    assert 0.2 < labels.mean() < 0.8  # both basins are visited
    z, _ = torsion_model.encode(peptide_md)
    assert torsion_model.pipeline.n_inputs == 4  # sin and cos of phi and psi
    assert _knn_accuracy(z, labels) >= 0.95


def test_torsion_inputs_are_sin_cos_and_survive_save_load(peptide_md, torsion_model, tmp_path):
    pipe = torsion_model.pipeline
    raw = pipe.raw_inputs(peptide_md.positions[:5].astype(np.float64))
    phi = geometry.dihedrals(peptide_md.positions[:5].astype(np.float64), pipe.dihedrals)
    np.testing.assert_allclose(raw[:, 0::2], np.sin(phi))
    np.testing.assert_allclose(raw[:, 1::2], np.cos(phi))
    torsion_model.save(tmp_path / "t.polyvae")
    back = polyvae.load_model(tmp_path / "t.polyvae")
    np.testing.assert_array_equal(back.pipeline.dihedrals, pipe.dihedrals)
    np.testing.assert_array_equal(back.encode(peptide_md)[0], torsion_model.encode(peptide_md)[0])
    z, _ = torsion_model.encode(peptide_md)
    got = np.asarray(jax.vmap(torsion_model.cv_fn())(jnp.asarray(peptide_md.positions)))
    np.testing.assert_allclose(got, z, atol=1e-4 * np.ptp(z))


def test_angles_and_dihedrals_combine_with_distances(peptide_md):
    heavy = [4, 6, 8, 14, 16]
    pairs = np.array([(i, j) for i in heavy for j in heavy if i < j])
    model = polyvae.train(
        peptide_md, features="distances", pairs=pairs, angles=[[4, 6, 8], [6, 8, 14]],
        dihedrals=[[4, 6, 8, 14]], epochs=2, hidden=(16,), activation="tanh", progress=False,
    )  # fmt: skip
    spec = encoder_spec(model, atoms=np.arange(22))
    kinds = [f[0] for f in spec.features]
    assert kinds == ["distance"] * 10 + ["angle"] * 2 + ["sin_dihedral", "cos_dihedral"]
    assert spec.kind == "internal"
    raw = model.pipeline.raw_inputs(peptide_md.positions[:50].astype(np.float64))
    np.testing.assert_allclose(
        spec.evaluate(raw), model.encode(peptide_md.positions[:50])[0], atol=1e-5
    )


def test_exports_of_torsion_models(torsion_model, tmp_path):
    dat = write_plumed(torsion_model, tmp_path / "plumed", atoms=np.arange(22))
    text = dat.read_text()
    assert "t00: TORSION ATOMS=5,7,9,15" in text and "t01: TORSION ATOMS=7,9,15,17" in text
    assert "s00: CUSTOM ARG=t00 FUNC=sin(x) PERIODIC=NO" in text
    assert "c01: CUSTOM ARG=t00 FUNC=cos(x) PERIODIC=NO" in text
    assert "ARG=s00,c01,s02,c03" in text
    with pytest.raises(ExportError, match="Colvars cannot export this CV: .* export it to PLUMED"):
        write_colvars(torsion_model, tmp_path / "colvars", atoms=np.arange(22))
    from polyvae.export.torchscript import torchscript_sidecar

    inputs = torchscript_sidecar(encoder_spec(torsion_model, atoms=np.arange(22)))["inputs"]
    assert inputs[0] == {"kind": "sin_dihedral", "atoms": [5, 7, 9, 15]}
    assert inputs[3] == {"kind": "cos_dihedral", "atoms": [7, 9, 15, 17]}


def test_torsion_feature_errors(peptide_md):
    x = peptide_md.positions[:200]
    kw = dict(epochs=1, hidden=(8,), progress=False)
    with pytest.raises(ValueError, match='features="torsions" found no backbone phi/psi'):
        polyvae.train(x, features="torsions", **kw)
    with pytest.raises(
        ValueError, match=r"dihedrals must index the 22 atoms \(0 to 21\); got 0 to 30"
    ):
        polyvae.train(x, features="torsions", dihedrals=[[0, 1, 2, 30]], **kw)
    with pytest.raises(ValueError, match="dihedrals: each row must name 4 different atoms"):
        polyvae.train(x, features="torsions", dihedrals=[[0, 1, 1, 2]], **kw)
    with pytest.raises(ValueError, match=r"angles must be integer atom indices of shape \(M, 3\)"):
        polyvae.train(x, features="distances", angles=[[0, 1]], **kw)
    with pytest.raises(
        ValueError, match='angles and dihedrals are encoder inputs with features="distances"'
    ):
        polyvae.train(x, dihedrals=[[0, 1, 2, 3]], **kw)
    with pytest.raises(ValueError, match="dihedrals need 3D positions; got 2D"):
        polyvae.train(x[:, :, :2], features="torsions", dihedrals=[[0, 1, 2, 3]], **kw)


def test_cli_torsions(peptide_md, tmp_path, capsys):
    from polyvae.cli import main

    np.savez(tmp_path / "ala2.npz", arr=peptide_md.positions[:400])
    np.savetxt(tmp_path / "dih.txt", [[4, 6, 8, 14], [6, 8, 14, 16]], fmt="%d")
    np.savetxt(tmp_path / "ang.txt", [[6, 8, 14]], fmt="%d")
    base = ["-q", "train", str(tmp_path / "ala2.npz"), "--epochs", "2", "--hidden", "16"]
    args = [*base, "--features", "torsions", "--dihedrals", str(tmp_path / "dih.txt")]
    args += ["--angles", str(tmp_path / "ang.txt"), "-o", str(tmp_path / "m.polyvae")]
    assert main(args) == 0
    m = polyvae.load_model(tmp_path / "m.polyvae")
    assert m.pipeline.n_inputs == 5 and m.pipeline.angles.tolist() == [[6, 8, 14]]
    capsys.readouterr()
    bad = [*base, "--features", "torsions", "-o", str(tmp_path / "x.polyvae")]
    assert main(bad) == 2  # an .npz of bare positions has no names or bonds
    err = capsys.readouterr().err
    assert "found no backbone phi/psi" in err and "give --dihedrals FILE instead" in err
    assert main([*bad, "--dihedrals", str(tmp_path / "nothing.txt")]) == 2
    assert "--dihedrals file" in capsys.readouterr().err


def test_backbone_dihedrals_equal_mdanalysis_ramachandran():
    """Adenylate kinase (MDAnalysisTests PSF + DCD, backbone selection): phi/psi from
    names and bonds equal MDAnalysis' Ramachandran analysis, residue by residue."""
    mda = pytest.importorskip("MDAnalysis")
    pytest.importorskip("MDAnalysisTests")
    from MDAnalysis.analysis.dihedrals import Ramachandran
    from MDAnalysisTests.datafiles import DCD, PSF

    frames = polyvae.io.read_frames(DCD, topology=PSF, select="backbone")
    q = backbone_dihedrals(frames.names, frames.bonds)
    n_res = 214
    assert q.shape == (2 * n_res - 2, 4)  # psi of the first residue ... phi of the last
    ours = np.degrees(geometry.dihedrals(frames.positions.astype(np.float64), q))
    ref = Ramachandran(mda.Universe(PSF, DCD).select_atoms("protein")).run().results.angles
    assert ref.shape == (98, n_res - 2, 2)  # residues 2 .. 213
    phi, psi = ours[:, 1:-1:2], ours[:, 2::2]  # residues 2 .. 213
    diff = np.stack([phi, psi], axis=-1) - ref
    np.testing.assert_allclose((diff + 180) % 360 - 180, 0.0, atol=1e-3)


def test_backbone_dihedrals_equal_mdtraj_phi_psi():
    """The same through mdtraj: a PDB read with polyvae's mdtraj reader (bonds from
    mdtraj's standard residues) against mdtraj's compute_phi / compute_psi."""
    md = pytest.importorskip("mdtraj")
    pytest.importorskip("MDAnalysisTests")
    from MDAnalysisTests.datafiles import PDB_small

    from polyvae.io import read_mdtraj

    frames = read_mdtraj(PDB_small, select="backbone")
    q = backbone_dihedrals(frames.names, frames.bonds)
    ours = np.degrees(geometry.dihedrals(frames.positions.astype(np.float64), q))
    traj = md.load(PDB_small)
    traj = traj.atom_slice(traj.topology.select("backbone"))
    (_, phi), (_, psi) = md.compute_phi(traj), md.compute_psi(traj)
    assert phi.shape == psi.shape == (1, 213)
    for theirs, mine in ((psi, ours[:, 0::2]), (phi, ours[:, 1::2])):
        np.testing.assert_allclose((np.degrees(theirs) - mine + 180) % 360 - 180, 0.0, atol=1e-3)


@pytest.mark.filterwarnings(r"ignore:`torch\.jit:DeprecationWarning")
def test_torchscript_of_a_torsion_model_equals_encode(peptide_md, torsion_model, tmp_path):
    """The TorchScript module takes the raw inputs the engine computes (sin and cos of
    phi and psi, in the sidecar's order) and gives the encoder mean."""
    torch = pytest.importorskip("torch", reason="the TorchScript export needs torch==2.13.0")
    from polyvae.export import write_torchscript

    path = write_torchscript(encoder_spec(torsion_model, atoms=np.arange(22)), tmp_path / "t.pt")
    x = peptide_md.positions[:100].astype(np.float64)
    raw = torsion_model.pipeline.raw_inputs(x).astype(np.float32)
    with torch.no_grad():
        out = torch.jit.load(str(path))(torch.from_numpy(raw)).numpy()
    np.testing.assert_allclose(out, torsion_model.encode(x)[0], rtol=1e-5, atol=1e-5)
