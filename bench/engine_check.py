"""The exported CV inside LAMMPS + Colvars, as figures (the tests assert the same bounds).

Trains the distance-feature model of ``tests/engines/test_engine_cv.py`` on a LAMMPS run of the
12-bead chain (``tools/engine_cv.py``), exports it with ``write_colvars`` and prints, as
JSON:

- ``cv_max_abs_dev``: largest |Colvars CV - encoder mean| over the dumped frames, and the
  same relative to the CV's largest magnitude;
- ``force_max_rel_dev``: largest |LAMMPS force - (-JAX gradient)| of a harmonic restraint
  on z0, relative to the largest force.

Run: ``python bench/engine_check.py`` (needs the ``lammps`` package of the test extra).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from engine_cv import add_restraint, jax_cv, restraint_only_run, train_chain_cv  # noqa: E402
from lammps_harness import read_colvars_traj, run_polymer  # noqa: E402

from polyvae.export import write_colvars  # noqa: E402


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="polyvae-engine-"))
    model, start = train_chain_cv(work)
    config = write_colvars(model, work / "cv", colvars_trajectory_frequency=50)
    r = run_polymer(
        config.parent, start, n_steps=10_000, dump_every=50, seed=5, colvars_config=config,
        backend="subprocess",
    )  # fmt: skip
    _, traj = read_colvars_traj(r["colvars_traj"])
    expected, _ = model.encode(r["positions"])
    cv_dev = float(np.abs(traj[:, 1:3] - expected).max())

    config = write_colvars(model, work / "cv2", colvars_trajectory_frequency=20)
    center, k = 1.5, 40.0
    add_restraint(config, center, k)
    r = restraint_only_run(
        config.parent, start, config, n_steps=2_000, dump_every=20, seed=6, backend="subprocess"
    )
    cv = jax_cv(model)
    grad = jax.vmap(jax.grad(lambda p: 0.5 * k * (cv(p)[0] - center) ** 2))
    want = -np.asarray(grad(jnp.asarray(r["positions"], jnp.float32)), dtype=np.float64)
    result = {
        "frames_cv": int(len(traj)),
        "cv_max_abs_dev": cv_dev,
        "cv_max_rel_dev": cv_dev / float(np.abs(expected).max()),
        "frames_force": int(len(r["forces"])),
        "force_max_rel_dev": float(np.abs(r["forces"] - want).max() / np.abs(want).max()),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
