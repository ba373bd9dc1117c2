"""The bonds users have: a PDB written by OpenMM (CONECT records for the caps only), bonds
guessed from distances, the bond modes of model_bonds and the CLI's --bonds."""

import logging

import numpy as np
import pytest
from helpers import engine_output

import polyvae
from polyvae.cli import main
from polyvae.features.elements import atom_elements, guess_bonds
from polyvae.features.topology import model_bonds
from polyvae.frames import Frames

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

FAST = ["--epochs", "2", "--hidden", "16", "--batch-size", "32"]

# a water dimer (Å): the donor's H1 points at the acceptor's O, 1.75 Å away
WATER_DIMER = np.array(
    [
        [0.000, 0.000, 0.000],  # O  donor
        [0.957, 0.000, 0.000],  # H1 donor, hydrogen-bonded to the acceptor O
        [-0.240, 0.927, 0.000],  # H2 donor
        [2.707, 0.000, 0.000],  # O  acceptor
        [3.000, 0.800, 0.500],  # H1 acceptor
        [3.000, -0.800, 0.500],  # H2 acceptor
    ]
)


def _pairs(bonds) -> set[tuple[int, int]]:
    return {tuple(sorted(map(int, b))) for b in np.asarray(bonds).reshape(-1, 2)}


@pytest.fixture(scope="session")
def openmm_ala2():
    """Alanine dipeptide as OpenMM writes it (tools/peptide.py): ala2.pdb, traj.dcd (200
    frames), and the 21 bonds OpenMM's own topology knows (standard residue templates)."""
    pytest.importorskip("openmm")
    pytest.importorskip("MDAnalysis")
    from openmm import app
    from peptide import write_openmm_files

    folder = engine_output("openmm_ala2", write_openmm_files, n_frames=200)
    pdb, dcd = folder / "ala2.pdb", folder / "traj.dcd"
    topology = app.PDBFile(str(pdb)).topology  # reads CONECT, adds the standard bonds
    topology.createStandardBonds()
    bonds = _pairs([(b.atom1.index, b.atom2.index) for b in topology.bonds()])
    assert len(bonds) == 21
    return pdb, dcd, bonds


@pytest.fixture(scope="session")
def openmm_frames(openmm_ala2):
    pdb, dcd, _ = openmm_ala2
    return polyvae.io.read_frames(dcd, topology=pdb)


# ---- the file OpenMM writes ----------------------------------------------------------------
def test_openmm_writes_conect_for_the_caps_only(openmm_ala2, openmm_frames):
    pdb, _, bonds = openmm_ala2
    lines = pdb.read_text().splitlines()
    residue = {
        int(line[6:11]): line[17:20] for line in lines if line.startswith(("ATOM", "HETATM"))
    }
    conect = [[int(v) for v in line[6:].split()] for line in lines if line.startswith("CONECT")]
    assert conect and all(
        "ACE" in {residue[a] for a in row} or "NME" in {residue[a] for a in row} for row in conect
    )
    assert openmm_frames.n_atoms == 22 and openmm_frames.n_frames == 200
    assert len(openmm_frames.bonds) == 12  # 5 + 5 in the caps, 2 joining them to ALA
    assert _pairs(openmm_frames.bonds) < bonds


def test_the_openmm_files_hold_the_run_of_the_npz_and_are_kept(
    openmm_ala2, openmm_frames, peptide_md
):
    from peptide import write_openmm_files

    np.testing.assert_allclose(openmm_frames.positions, peptide_md.positions[:200], atol=1e-3)
    pdb, dcd, _ = openmm_ala2
    stamp = dcd.stat().st_mtime_ns
    assert write_openmm_files(pdb.parent, n_frames=5) == (pdb, dcd)  # a cache
    assert dcd.stat().st_mtime_ns == stamp


# ---- model_bonds: the modes ----------------------------------------------------------------
def test_auto_completes_the_topology_bonds_and_says_how_many(openmm_ala2, openmm_frames, caplog):
    with caplog.at_level(logging.INFO, logger="polyvae.features.topology"):
        bonds = model_bonds(openmm_frames)
    assert _pairs(bonds) == openmm_ala2[2] and len(bonds) == 21
    assert bonds[:12].tolist() == openmm_frames.bonds.tolist()  # the topology's come first
    assert [r.getMessage() for r in caplog.records] == [
        "bonds: 12 from the topology, 9 added from distances (covalent radii) to join the 22 "
        "selected atoms"
    ]
    assert model_bonds(openmm_frames, bonds="auto").tolist() == bonds.tolist()


def test_topology_mode_names_the_atoms_left_apart(openmm_frames):
    with pytest.raises(
        ValueError,
        match=r"^bonds from the topology do not join all 22 selected atoms into one molecule: "
        r"15 atoms are left apart from the largest bonded group \(7 atoms\), by index and name "
        r"7 'H', 8 'CA', 9 'HA', 10 'CB', 11 'HB1' and 10 more; pass bonds=\"auto\" to complete "
        r"them from distances \(covalent radii\), bonds=\"guess\" to take every bond from "
        r"distances, or bonds=\[\[i, j\], \.\.\.\] \(0-based pairs\) that join all atoms; or "
        r"select one molecule$",
    ):
        model_bonds(openmm_frames, bonds="topology")
    bare = Frames(openmm_frames.positions, names=openmm_frames.names)
    with pytest.raises(ValueError, match=r"^bonds from the topology \(it has none\) do not join"):
        model_bonds(bare, bonds="topology")


def test_guess_finds_the_21_bonds_from_positions_alone(openmm_ala2, openmm_frames, caplog):
    names_only = Frames(openmm_frames.positions, names=openmm_frames.names)  # masses all 1
    masses_only = Frames(openmm_frames.positions, masses=openmm_frames.masses)  # names B0..
    with caplog.at_level(logging.INFO, logger="polyvae.features.topology"):
        for frames in (names_only, masses_only):
            assert _pairs(model_bonds(frames)) == openmm_ala2[2]  # auto: all-atom, so guessed
        assert _pairs(model_bonds(openmm_frames, bonds="guess")) == openmm_ala2[2]
    assert caplog.records[0].getMessage() == (
        "bonds: none known, 21 guessed from distances (covalent radii) to join the 22 selected "
        "atoms"
    )
    assert caplog.records[-1].getMessage() == (
        "bonds: 21 from distances (covalent radii) to join the 22 selected atoms"
    )


def test_guess_on_the_peptide_npz_without_bonds(peptide_md, tmp_path):
    bare = Frames(peptide_md.positions[::10], masses=peptide_md.masses, names=peptide_md.names)
    assert bare.bonds is None
    assert _pairs(model_bonds(bare)) == _pairs(peptide_md.bonds)
    path = polyvae.io.write_npz(tmp_path / "bare.npz", bare)
    assert _pairs(model_bonds(polyvae.io.read_npz(path), bonds="guess")) == _pairs(peptide_md.bonds)


def test_a_hydrogen_bond_is_not_a_bond():
    elements = ["O", "H", "H", "O", "H", "H"]
    assert _pairs(guess_bonds(WATER_DIMER, elements)) == {(0, 1), (0, 2), (3, 4), (3, 5)}
    # even at 1.5 Å from the acceptor the hydrogen keeps its one bond, to its own O
    squeezed = WATER_DIMER.copy()
    squeezed[3:] -= [0.25, 0.0, 0.0]
    assert np.linalg.norm(squeezed[3] - squeezed[1]) == pytest.approx(1.5)
    assert _pairs(guess_bonds(squeezed, elements)) == {(0, 1), (0, 2), (3, 4), (3, 5)}
    # two molecules: guessing does not join them, and says which atoms are left apart
    with pytest.raises(
        ValueError,
        match=r"^bonds from distances \(covalent radii\) do not join all 6 selected atoms into "
        r"one molecule: 3 atoms are left apart from the largest bonded group \(3 atoms\), by "
        r"index and name 3 'OW', 4 'HW1', 5 'HW2'; select one molecule, or pass "
        r"bonds=\[\[i, j\], \.\.\.\] \(0-based pairs\) that join all atoms$",
    ):
        model_bonds(Frames(WATER_DIMER, names=["OW", "HW1", "HW2"] * 2), bonds="guess")


def test_the_median_over_frames_decides_not_one_odd_frame():
    x = np.repeat(WATER_DIMER[None, :3], 10, axis=0)
    x[:, 2] = [3.0, 0.0, 0.0]  # H2 far from O in 9 frames ...
    x[4, 2] = [-0.24, 0.927, 0.0]  # ... bonded-close in one
    assert _pairs(guess_bonds(x, ["O", "H", "H"])) == {(0, 1)}
    assert _pairs(guess_bonds(x[4], ["O", "H", "H"])) == {(0, 1), (0, 2)}
    many = np.repeat(WATER_DIMER[None, :3], 1000, axis=0)  # 10 frames are read, not 1000
    assert _pairs(guess_bonds(many, ["O", "H", "H"])) == {(0, 1), (0, 2)}


def test_elements_from_masses_where_they_tell_else_from_names():
    names = ["CA", "CL", "HB1", "B0", "CA", "C"]
    assert atom_elements(names) == ("C", "C", "H", "B", "C", "C")
    masses = [12.011, 35.45, 3.024, 72.0, 14.007, 1.008]  # HMR hydrogen, a bead
    assert atom_elements(names, masses) == ("C", "Cl", "H", "B", "N", "H")
    assert atom_elements(names, np.ones(6)) == atom_elements(names)  # default masses


def test_chain_stays_for_calpha_traces_and_beads(caplog):
    from helpers import random_chain

    from polyvae import geometry

    beads = Frames(random_chain(np.random.default_rng(0), 8, 6, 3, bond=1.0))
    ca = Frames(random_chain(np.random.default_rng(1), 8, 6, 3, bond=3.8), names=["CA"] * 6)
    with caplog.at_level(logging.INFO, logger="polyvae.features.topology"):
        for frames in (beads, ca):
            assert model_bonds(frames).tolist() == geometry.chain_bonds(6).tolist()
    assert caplog.text == ""


def test_guess_mode_errors():
    with pytest.raises(
        ValueError,
        match=r"^bonds=\"guess\" needs atoms of elements with a covalent radius \(H, C, N, O, "
        r"F, Si, P, S, Cl, Fe, Cu, Zn, Se, Br, I\); 3 atoms have none, the first atom 0 'B0' "
        r"\(element 'B' by its name and mass\)$",
    ):
        model_bonds(Frames(WATER_DIMER[:3]), bonds="guess")
    with pytest.raises(ValueError, match=r"^bonds=\"guess\" needs positions in 3D; got 2D"):
        model_bonds(Frames(WATER_DIMER[:3, :2], names=["O", "H", "H"]), bonds="guess")
    with pytest.raises(ValueError, match=r"^bonds=\"guess\" needs positions to guess bonds"):
        model_bonds({"names": ["O", "H", "H"]}, bonds="guess")
    with pytest.raises(
        ValueError, match=r"^bonds must be one of \('auto', 'topology', 'guess'\); got 'ring'$"
    ):
        model_bonds(n_atoms=3, bonds="ring")
    with pytest.raises(ValueError, match=r"^positions must have shape \(T, 3, 3\) or \(3, 3\)"):
        model_bonds(n_atoms=3, bonds="guess", positions=np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"^guessing bonds needs elements with a covalent radius"):
        guess_bonds(WATER_DIMER[:3], ["O", "H", "X"])
    with pytest.raises(ValueError, match=r"^guessing bonds needs positions \(T, N, 3\) in Å"):
        guess_bonds(WATER_DIMER[:3, :2], ["O", "H", "H"])
    with pytest.raises(ValueError, match=r"^elements must name 3 atoms; got 2$"):
        guess_bonds(WATER_DIMER[:3], ["O", "H"])


def test_train_takes_the_bond_modes(openmm_frames):
    """train() passes a mode to model_bonds (the CLI tests below train with each)."""
    with pytest.raises(ValueError, match=r"^bonds from the topology do not join all 22"):
        polyvae.train(openmm_frames, bonds="topology", epochs=1, progress=False)


# ---- the command line ----------------------------------------------------------------------
def _train(openmm_ala2, out, *extra, quiet=True):
    pdb, dcd, _ = openmm_ala2
    args = ["train", str(dcd), "--top", str(pdb), *FAST, *map(str, extra), "-o", str(out)]
    return main([*args] if quiet else args)


@pytest.mark.parametrize("features", ["positions", "torsions"])
def test_cli_trains_on_the_openmm_pdb_without_options(openmm_ala2, tmp_path, capsys, features):
    assert _train(openmm_ala2, tmp_path / "m.polyvae", "--features", features, quiet=False) == 0
    err = capsys.readouterr().err
    assert (
        "polyvae: bonds: 12 from the topology, 9 added from distances (covalent radii) to join "
        "the 22 selected atoms\n" in err
    )
    model = polyvae.load_model(tmp_path / "m.polyvae")
    assert _pairs(model.bonds) == openmm_ala2[2] and len(model.bonds) == 21
    if features == "torsions":  # phi and psi found through the completed bonds
        assert model.pipeline.dihedrals.shape == (2, 4)


def _one_line_error(capsys, message):
    err = capsys.readouterr().err
    assert err.startswith("polyvae: error: ") and err.count("\n") == 1, err
    assert "bonds=" not in err, err  # no Python argument in a command-line message
    assert __import__("re").search(message, err), err


def test_cli_bonds_topology_names_the_atoms_left_apart_and_the_option(
    openmm_ala2, tmp_path, capsys
):
    assert _train(openmm_ala2, tmp_path / "m.polyvae", "--bonds", "topology") == 2
    _one_line_error(
        capsys,
        r"^polyvae: error: bonds from the topology do not join all 22 selected atoms into one "
        r"molecule: 15 atoms are left apart from the largest bonded group \(7 atoms\), by index "
        r"and name 7 'H', 8 'CA', 9 'HA', 10 'CB', 11 'HB1' and 10 more; use --bonds auto \(the "
        r"default\) to complete them from distances \(covalent radii\), --bonds guess to take "
        r"every bond from distances, or --bonds FILE \(two 0-based atom indices per line\) that "
        r"join all atoms; or select one molecule\n$",
    )
    assert not (tmp_path / "m.polyvae").exists()


def test_cli_bonds_guess(openmm_ala2, tmp_path):
    assert _train(openmm_ala2, tmp_path / "m.polyvae", "--bonds", "guess") == 0
    assert _pairs(polyvae.load_model(tmp_path / "m.polyvae").bonds) == openmm_ala2[2]


@pytest.mark.parametrize("kind", ["txt", "npy"])
def test_cli_bonds_file(openmm_ala2, tmp_path, kind):
    bonds = sorted(openmm_ala2[2])
    if kind == "npy":
        path = tmp_path / "bonds.npy"
        np.save(path, np.array(bonds))
    else:
        path = tmp_path / "bonds.txt"
        path.write_text("# i j\n" + "".join(f"{i} {j}\n" for i, j in bonds) + "\n")
    assert _train(openmm_ala2, tmp_path / "m.polyvae", "--bonds", str(path)) == 0
    assert polyvae.load_model(tmp_path / "m.polyvae").bonds.tolist() == [list(b) for b in bonds]


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "0 1\n1 x\n",
            r"--bonds file '.*b\.txt' must hold two 0-based atom indices of the "
            r"selection per line, or a \.npy array \(B, 2\); line 2 is '1 x'$",
        ),
        ("0 1 2\n", r"--bonds file '.*b\.txt' must hold two .*; line 1 is '0 1 2'$"),
        ("# nothing\n", r"--bonds file '.*b\.txt' holds no bonds; it must hold two 0-based"),
        (
            "0 1\n1 22\n",
            r"--bonds file '.*b\.txt' must index atoms 0 \.\. 21; got indices from "
            r"0 to 22$",
        ),
        (
            "0 1\n1 1\n",
            r"--bonds file '.*b\.txt' must join different atoms \(i != j\); row 1 "
            r"is \[1, 1\]$",
        ),
        (
            "0 1\n1 2\n",
            r"^polyvae: error: bonds do not join all 22 atoms into one molecule: 19 "
            r"atoms are left apart from the largest bonded group \(3 atoms\), by index and name "
            r"3 'H3', 4 'C', 5 'O', 6 'N', 7 'H' and 14 more; give a --bonds FILE whose bonds "
            r"join every atom$",
        ),
    ],
)
def test_cli_bad_bonds_file_is_one_line_naming_the_option(
    openmm_ala2, tmp_path, capsys, content, message
):
    (tmp_path / "b.txt").write_text(content)
    assert _train(openmm_ala2, tmp_path / "m.polyvae", "--bonds", tmp_path / "b.txt") == 2
    _one_line_error(capsys, message)


def test_cli_bonds_names_and_npy_errors(openmm_ala2, tmp_path, capsys):
    assert _train(openmm_ala2, tmp_path / "m", "--bonds", "chain") == 2
    _one_line_error(
        capsys,
        r"--bonds must be auto, topology, guess or a file of bonds; 'chain' is none of them "
        r"\(no such file\)$",
    )
    np.save(tmp_path / "b.npy", np.zeros((3, 3), dtype=np.int64))
    assert _train(openmm_ala2, tmp_path / "m", "--bonds", tmp_path / "b.npy") == 2
    _one_line_error(
        capsys, r"--bonds file '.*b\.npy' must hold .*; got an array of shape \(3, 3\) and dtype"
    )
    (tmp_path / "c.npy").write_text("not numpy")
    assert _train(openmm_ala2, tmp_path / "m", "--bonds", tmp_path / "c.npy") == 2
    _one_line_error(capsys, r"--bonds file '.*c\.npy' is not a readable \.npy file")
