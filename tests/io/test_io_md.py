"""MDAnalysis and mdtraj readers and writers on real MDAnalysisTests files."""

import re

import numpy as np
import pytest

mda = pytest.importorskip("MDAnalysis")
md = pytest.importorskip("mdtraj")
datafiles = pytest.importorskip("MDAnalysisTests.datafiles")

import polyvae  # noqa: E402
from polyvae.analysis.structure import radius_of_gyration  # noqa: E402
from polyvae.io import (  # noqa: E402
    TruncatedTrajectoryError,
    atom_info,
    iter_chunks,
    make_universe,
    read_frames,
    read_mdtraj,
    read_universe,
    to_mdtraj,
    write_structures,
)

PSF, DCD, TPR, XTC, GRO = (
    datafiles.PSF,
    datafiles.DCD,
    datafiles.TPR,
    datafiles.XTC,
    datafiles.GRO,
)
PDB_small = datafiles.PDB_small

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def adk_ca():
    """CA positions (98, 214, 3), times and the AtomGroup, straight from MDAnalysis."""
    u = mda.Universe(PSF, DCD)
    ca = u.select_atoms("name CA")
    pos = np.array([ca.positions for _ in u.trajectory])
    times = np.array([ts.time for ts in u.trajectory])
    return pos, times, ca


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory, adk_ca):
    """A CA-only PDB topology and 10-frame DCD and XTC trajectories of it."""
    folder = tmp_path_factory.mktemp("ca")
    pos, _, ca = adk_ca
    paths = {"pdb": folder / "ca.pdb", "dcd": folder / "ca.dcd", "xtc": folder / "ca.xtc"}
    ca.write(paths["pdb"])
    for ext in ("dcd", "xtc"):
        with mda.Writer(str(paths[ext]), ca.n_atoms) as writer:
            for frame in pos[:10]:
                ca.positions = frame
                writer.write(ca)
    ca.universe.trajectory[0]
    return paths


def test_adk_ca_matches_mdanalysis(adk_ca):
    pos, times, ca = adk_ca
    f = read_universe(DCD, topology=PSF, select="name CA")
    assert (f.n_frames, f.n_atoms, f.unit) == (98, 214, "Å")
    assert f.positions.dtype == np.float32
    np.testing.assert_array_equal(f.positions, pos)
    np.testing.assert_allclose(f.times, times)
    np.testing.assert_allclose(f.masses, ca.masses)
    info = f.metadata["atoms"]
    assert info == atom_info(ca, "name CA")
    assert info["n_atoms_topology"] == 3341 and set(info["names"]) == {"CA"}
    assert info["resids"] == list(range(1, 215)) and info["resnames"][:3] == ["MET", "ARG", "ILE"]
    assert info["indices"] == ca.indices.tolist() and f.names == tuple(info["names"])
    assert f.metadata["frame_indices"] == list(range(98)) and not f.metadata["unwrapped"]


def test_start_stop_step_chunks_and_concatenation(adk_ca):
    pos, _, ca = adk_ca
    part = read_universe(DCD, topology=PSF, select="name CA", start=10, stop=50, step=7)
    assert part.metadata["frame_indices"] == list(range(10, 50, 7))
    np.testing.assert_array_equal(part.positions, pos[10:50:7])
    chunks = list(iter_chunks(ca.universe, select="name CA", chunk_size=10))
    assert [c.n_frames for c in chunks] == [10] * 9 + [8]
    np.testing.assert_array_equal(np.concatenate([c.positions for c in chunks]), pos)
    assert chunks[3].metadata["frame_indices"] == list(range(30, 40))
    from_group = read_universe(ca, chunk_size=7)  # an AtomGroup is used as given
    np.testing.assert_array_equal(from_group.positions, pos)
    twice = read_universe([DCD, DCD], topology=PSF, select="name CA")
    assert twice.n_frames == 196
    np.testing.assert_array_equal(twice.positions[98:], pos)


def _mda_unwrapped_rg(topology, trajectory):
    from MDAnalysis import transformations

    u = mda.Universe(topology, trajectory)
    protein = u.select_atoms("protein")
    u.trajectory.add_transformations(transformations.unwrap(protein))
    return np.array([protein.radius_of_gyration() for _ in u.trajectory])


def test_unwrapped_rg_matches_mdanalysis():
    """Acceptance: protein split across the (triclinic) box, TPR bonds, XTC frames."""
    f = read_universe(XTC, topology=TPR, select="protein")
    assert f.n_atoms == 3341 and f.n_frames == 10 and f.metadata["unwrapped"]
    rg = radius_of_gyration(f.positions, f.masses)
    np.testing.assert_allclose(rg, _mda_unwrapped_rg(TPR, XTC), atol=1e-3, rtol=0)
    wrapped = read_universe(XTC, topology=TPR, select="protein", unwrap=False)
    assert np.max(radius_of_gyration(wrapped.positions, wrapped.masses) - rg) > 3.0  # Å
    ca = read_universe(XTC, topology=TPR, select="name CA", chunk_size=3)  # whole via protein
    np.testing.assert_allclose(ca.positions, f.positions[:, np.array(f.names) == "CA"], atol=1e-4)


def test_box_without_bonds_needs_guess_bonds():
    with pytest.raises(ValueError, match="periodic box but the topology has no bonds.*guess_bonds"):
        read_universe(GRO, select="protein")
    f = read_universe(GRO, select="protein", guess_bonds=True)
    rg = radius_of_gyration(f.positions, f.masses)
    np.testing.assert_allclose(rg, _mda_unwrapped_rg(TPR, GRO), atol=1e-3, rtol=0)
    raw = read_universe(GRO, select="protein", unwrap=False)
    assert radius_of_gyration(raw.positions, raw.masses)[0] - rg[0] > 3.0


def test_mdtraj_reads_the_same_positions(adk_ca):
    pos, _, _ = adk_ca
    f = read_mdtraj(DCD, topology=PSF, select="name CA")
    assert (f.n_frames, f.n_atoms, f.unit) == (98, 214, "Å")
    np.testing.assert_allclose(f.positions, pos, atol=1e-4)  # nm -> Å
    assert f.metadata["atoms"]["resids"] == list(range(1, 215))
    np.testing.assert_allclose(f.masses, adk_ca[2].masses, rtol=1e-3)
    strided = read_mdtraj(md.load(DCD, top=PSF), select="name CA", stride=5)
    np.testing.assert_allclose(strided.positions, pos[::5], atol=1e-4)
    pdb = read_mdtraj(PDB_small)
    np.testing.assert_allclose(pdb.positions[0], mda.Universe(PDB_small).atoms.positions, atol=1e-4)


def test_to_mdtraj_round_trip(adk_ca):
    f = read_universe(DCD, topology=PSF, select="name CA", stop=4)
    traj = to_mdtraj(f.positions, f.metadata["atoms"], time=f.times)
    assert traj.n_frames == 4 and traj.n_residues == 214
    np.testing.assert_allclose(traj.xyz * 10, f.positions, atol=1e-5)
    assert {a.element.symbol for a in traj.topology.atoms} == {"C"}  # mass 12: CA is carbon
    back = read_mdtraj(traj)
    np.testing.assert_allclose(back.positions, f.positions, atol=1e-5)
    assert back.metadata["atoms"]["names"] == f.metadata["atoms"]["names"]
    again = to_mdtraj(f.positions, traj.topology)
    assert again.topology == traj.topology
    beads = to_mdtraj(np.zeros((2, 5, 2)), {"names": [f"Q{i}" for i in range(5)]})
    assert beads.xyz.shape == (2, 5, 3) and beads.topology.atom(0).element == md.element.virtual


@pytest.mark.parametrize("ext, atol", [("pdb", 1e-3), ("dcd", 1e-5), ("xtc", 5.1e-3)])
def test_writers_round_trip(tmp_path, adk_ca, ext, atol):
    f = read_universe(DCD, topology=PSF, select="name CA", stop=5)
    out = write_structures(tmp_path / "sub" / f"ca.{ext}", f.positions, atoms=f.metadata["atoms"])
    top = tmp_path / "top.pdb"
    write_structures(top, f.positions[:1], atoms=f.metadata["atoms"])
    u = mda.Universe(str(out)) if ext == "pdb" else mda.Universe(str(top), str(out))
    got = np.array([u.atoms.positions for _ in u.trajectory])
    assert got.shape == (5, 214, 3)
    np.testing.assert_allclose(got, f.positions, atol=atol, rtol=0)
    traj = md.load(str(out), top=str(top))
    np.testing.assert_allclose(traj.xyz * 10, f.positions, atol=atol + 1e-4, rtol=0)
    if ext == "pdb":
        info = f.metadata["atoms"]
        assert list(u.atoms.names) == info["names"] and list(u.atoms.resids) == info["resids"]
        assert list(u.atoms.resnames) == info["resnames"]
        assert [a.residue.resSeq for a in traj.topology.atoms] == info["resids"]


def test_many_models_are_written_as_mdanalysis_writes_them(tmp_path, monkeypatch):
    """A PDB of many models is formatted from MDAnalysis' first model: the same bytes
    as MDAnalysis writing every model itself; coordinates too wide for the columns go
    through MDAnalysis alone."""
    from polyvae.io import writers

    f = read_universe(DCD, topology=PSF, select="resid 1-3", stop=6)
    x = f.positions.copy()
    x[4, 0, 1] = -123.4567  # a negative one, wider than the others
    fast = write_structures(tmp_path / "fast.pdb", x, atoms=f.metadata["atoms"])
    monkeypatch.setattr(writers, "_PDB_MODELS", 0)  # every model through MDAnalysis
    plain = write_structures(tmp_path / "plain.pdb", x, atoms=f.metadata["atoms"])
    assert fast.read_bytes() == plain.read_bytes()
    assert fast.read_text().count("MODEL ") == 6
    assert writers._pdb_columns_hold(x) and not writers._pdb_columns_hold(x + 1e4)


def test_writer_defaults_2d_units_and_npz(tmp_path, caplog):
    x = np.random.default_rng(0).normal(size=(3, 6, 2)).astype(np.float32)
    with caplog.at_level("WARNING", logger="polyvae.io.writers"):
        out = write_structures(tmp_path / "beads.pdb", x, unit="sigma")
    assert "assumes Å" in caplog.text
    u = mda.Universe(str(out))
    assert list(u.atoms.names) == [f"B{i}" for i in range(6)] and u.trajectory.n_frames == 3
    np.testing.assert_allclose(u.atoms.positions[:, 2], 0.0)
    np.testing.assert_allclose(u.atoms.positions[:, :2], x[0], atol=1e-3)
    f = read_frames(out, unwrap=False)  # a self-contained format needs no topology
    np.testing.assert_allclose(f.positions[..., :2], x, atol=1e-3)
    npz = write_structures(tmp_path / "beads.npz", x, unit="sigma", times=[0.0, 2.0, 4.0])
    back = read_frames(npz)
    assert back.unit == "sigma" and back.names[0] == "B0"
    np.testing.assert_array_equal(back.positions, x)
    np.testing.assert_array_equal(back.times, [0.0, 2.0, 4.0])


def test_read_frames_dispatch(ca_files):
    f = read_frames(ca_files["dcd"], topology=ca_files["pdb"], select="resid 1-10")
    assert (f.n_frames, f.n_atoms) == (10, 10)
    with pytest.raises(ValueError, match=r"unsupported trajectory format '\.dcd'.*topology="):
        read_frames(ca_files["dcd"])


def _cut(path, tmp_path, fraction):
    data = path.read_bytes()
    out = tmp_path / f"cut{path.suffix}"
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


@pytest.mark.parametrize("ext", ["dcd", "xtc"])
def test_truncated_trajectory_keeps_frames(tmp_path, ca_files, ext):
    intact = read_universe(ca_files[ext], topology=ca_files["pdb"])
    cut = _cut(ca_files[ext], tmp_path, 0.6)
    pattern = r"is truncated: read (\d+) frames before frame (\d+) could not be read"
    with pytest.raises(TruncatedTrajectoryError, match=pattern) as info:
        read_universe(cut, topology=ca_files["pdb"], chunk_size=4)
    err = info.value
    n = err.n_frames_read
    assert 4 <= n <= 6 and re.search(pattern, str(err)).groups() == (str(n), str(n))
    assert err.frames.n_frames == n and err.frame_index == n and str(cut) in str(err)
    np.testing.assert_array_equal(err.frames.positions, intact.positions[:n])
    chunks = []
    with pytest.raises(TruncatedTrajectoryError) as info:
        chunks.extend(iter_chunks(cut, topology=ca_files["pdb"], chunk_size=4))
    assert [c.n_frames for c in chunks] == [4] and info.value.frames.n_frames == n - 4
    short = read_universe(cut, topology=ca_files["pdb"], stop=n)  # frames before the break
    np.testing.assert_array_equal(short.positions, intact.positions[:n])


def test_nan_coordinates_name_the_trajectory_frame(tmp_path, ca_files, adk_ca):
    pos, _, ca = adk_ca
    bad = pos[:5].copy()
    bad[3, 7, 1] = np.nan
    path = tmp_path / "nan.dcd"
    u = mda.Universe(str(ca_files["pdb"]))
    with mda.Writer(str(path), u.atoms.n_atoms) as writer:
        for frame in bad:
            u.atoms.positions = frame
            writer.write(u.atoms)
    with pytest.raises(ValueError, match="NaN or inf coordinates: first bad frame is 3"):
        read_universe(path, topology=ca_files["pdb"], chunk_size=2)


def test_errors(tmp_path, ca_files):
    with pytest.raises(ValueError, match="select 'name XYZ' matches no atoms"):
        read_universe(DCD, topology=PSF, select="name XYZ")
    with pytest.raises(
        ValueError,
        match=r"adk\.psf' has 3341 atoms but trajectory .*adk_oplsaa\.xtc' has 47681 atoms",
    ):
        make_universe(PSF, XTC)
    with pytest.raises(FileNotFoundError, match="missing.dcd"):
        read_universe(tmp_path / "missing.dcd", topology=PSF)
    with pytest.raises(FileNotFoundError, match="nothere.psf"):
        make_universe(tmp_path / "nothere.psf", DCD)
    with pytest.raises(FileNotFoundError, match="missing.xtc"):
        read_mdtraj(tmp_path / "missing.xtc", topology=ca_files["pdb"])
    with pytest.raises(ValueError, match="select 'name XYZ' matches no atoms"):
        read_mdtraj(ca_files["dcd"], topology=ca_files["pdb"], select="name XYZ")
    with pytest.raises(
        ValueError, match=r"unknown format '\.mol2'; expected a file ending in .*\.pdb, \.dcd"
    ):
        write_structures(tmp_path / "x.mol2", np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="topology is required"):
        read_universe(ca_files["dcd"])


def test_import_polyvae_does_not_import_md_packages():
    import subprocess
    import sys

    code = "import sys, polyvae; print('MDAnalysis' in sys.modules or 'mdtraj' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert polyvae.io.read_universe is read_universe
