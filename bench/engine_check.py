"""The exported CV inside LAMMPS + Colvars, as figures (the tests assert the same bounds).

Trains the distance-feature model of ``tests/test_engine_cv.py`` on a LAMMPS run of the
12-bead chain, exports it with ``write_colvars`` and prints, as JSON:

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

from lammps_harness import read_colvars_traj, run_polymer, zigzag_chain  # noqa: E402

import polyvae  # noqa: E402
from polyvae.export import write_colvars  # noqa: E402
from polyvae.model import encode  # noqa: E402

N_BEADS = 12


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="polyvae-engine-"))
    start = zigzag_chain(N_BEADS, jitter=0.1, seed=1)
    run = run_polymer(work / "md", start, n_steps=60_000, dump_every=100, seed=11)
    frames = polyvae.Frames(run["positions"], masses=np.full(N_BEADS, 100.0))
    model = polyvae.train(
        frames,
        features="distances",
        activation="tanh",
        hidden=(32, 32),
        epochs=40,
        seed=0,
        progress=False,
    )
    model.metadata["atoms"] = {
        "indices": list(range(N_BEADS)),
        "names": [f"B{i}" for i in range(N_BEADS)],
    }
    config = write_colvars(model, work / "cv", colvars_trajectory_frequency=50)
    r = run_polymer(
        config.parent,
        run["positions"][-1],
        n_steps=10_000,
        dump_every=50,
        seed=5,
        colvars_config=config,
        backend="subprocess",
    )
    _, traj = read_colvars_traj(r["colvars_traj"])
    expected, _ = model.encode(r["positions"])
    cv_dev = float(np.abs(traj[:, 1:3] - expected).max())

    config = write_colvars(model, work / "cv2", colvars_trajectory_frequency=20)
    center, k = 1.5, 40.0
    config.write_text(
        config.read_text()
        + f"\nharmonic {{\n  name restraint\n  colvars z0\n  centers {center}\n  forceConstant {k}\n}}\n"
    )
    r = run_polymer(
        config.parent,
        run["positions"][-1],
        n_steps=2_000,
        dump_every=20,
        seed=6,
        colvars_config=config,
        thermostat=False,
        velocities=None,
        bond_k=0.0,
        angle_k=0.0,
        lj_epsilon=0.0,
        dump_forces=True,
        backend="subprocess",
    )
    pipe = model.pipeline
    i, j = jnp.asarray(pipe.pairs[:, 0]), jnp.asarray(pipe.pairs[:, 1])

    def cv(x):
        d = jnp.linalg.norm(x[i] - x[j], axis=-1)
        inputs = (d - pipe.in_mean) / pipe.in_scale
        return encode(model.params, inputs[None].astype(jnp.float32), model.config)[0][0]

    grad = jax.vmap(jax.grad(lambda p: 0.5 * k * (cv(p)[0] - center) ** 2))
    want = -np.asarray(grad(jnp.asarray(r["positions"], jnp.float32)), dtype=np.float64)
    scale = np.abs(want).max()
    print(
        json.dumps(
            {
                "frames_cv": int(len(traj)),
                "cv_max_abs_dev": cv_dev,
                "cv_max_rel_dev": cv_dev / float(np.abs(expected).max()),
                "frames_force": int(len(r["forces"])),
                "force_max_rel_dev": float(np.abs(r["forces"] - want).max() / scale),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
