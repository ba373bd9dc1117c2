"""The polyvae CV of the 12-bead chain inside LAMMPS + Colvars: shared set-up.

Used by ``tests/engines/test_engine_cv.py`` (which asserts the bounds) and
``bench/engine_check.py`` (which prints the figures): a distance-feature model trained
on a LAMMPS run of the chain, the same CV in JAX, and a run in which only a harmonic
restraint on the CV acts.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from lammps_harness import run_polymer, zigzag_chain

import polyvae
from polyvae.nn.model import encode

N_BEADS = 12


def train_chain_cv(work: Path):
    """A tanh distance-feature model of a LAMMPS run of the chain, and the run's last frame."""
    start = zigzag_chain(N_BEADS, jitter=0.1, seed=1)
    run = run_polymer(Path(work) / "md", start, n_steps=60_000, dump_every=100, seed=11)
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
    return model, run["positions"][-1]


def jax_cv(model):
    """The CV of one frame (N, 3) in JAX: distances, standardization, encoder mean."""
    pipe = model.pipeline
    i, j = jnp.asarray(pipe.pairs[:, 0]), jnp.asarray(pipe.pairs[:, 1])

    def cv(x):
        d = jnp.linalg.norm(x[i] - x[j], axis=-1)
        inputs = (d - pipe.in_mean) / pipe.in_scale
        return encode(model.params, inputs[None].astype(jnp.float32), model.config)[0][0]

    return cv


def add_restraint(config: Path, center: float, k: float, colvar: str = "z0") -> None:
    """Append a Colvars harmonic restraint on ``colvar`` to a configuration file."""
    config.write_text(
        config.read_text()
        + f"\nharmonic {{\n  name restraint\n  colvars {colvar}\n  centers {center}\n"
        f"  forceConstant {k}\n}}\n"
    )


def restraint_only_run(workdir: Path, start, config: Path, **kwargs) -> dict:
    """A LAMMPS run in which only the Colvars biases act (no thermostat, no force field)."""
    return run_polymer(
        workdir,
        start,
        colvars_config=config,
        thermostat=False,
        velocities=None,
        bond_k=0.0,
        angle_k=0.0,
        lj_epsilon=0.0,
        dump_forces=True,
        **kwargs,
    )
