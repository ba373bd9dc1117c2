"""Langevin simulation of a bead-spring polymer: the data behind ``polyvae/data/polymer2d.npz``.

Unit-mass beads in 2D or 3D, reduced LJ units (sigma, epsilon, sigma sqrt(m / epsilon)):
harmonic bonds k_bond/2 (r - r0)^2, harmonic angles k_angle/2 (theta - theta0)^2, truncated and
shifted Lennard-Jones between beads more than two apart along the chain; BAOAB Langevin dynamics
in JAX. Regenerate the shipped data (from the repository root, with polyvae installed) with
``python tools/bead_spring.py -o polyvae/data/polymer2d.npz``.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from polyvae.frames import Frames
from polyvae.io import write_npz

__all__ = ["PolymerModel", "potential_energy", "langevin_run", "simulate_polymer", "main"]

logger = logging.getLogger(__name__)


def _check_positive(allow_zero: bool = False, **values: float) -> None:
    for name, value in values.items():
        if not (np.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
            raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}; got {value!r}")


def _check_count(minimum: int, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or int(value) != value or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


@dataclass(frozen=True)
class PolymerModel:
    """Parameters of the bead-spring chain (reduced LJ units, unit masses).

    Parameters
    ----------
    n_beads, dim : int
        Number of beads N (at least 3) and spatial dimension D (2 or 3).
    k_bond, r0 : float
        Bond force constant (epsilon / sigma^2) and rest length (sigma).
    k_angle, theta0 : float
        Angle force constant (epsilon / rad^2) and rest angle (rad; pi = straight).
    epsilon, sigma, cutoff : float
        Lennard-Jones well depth (epsilon), diameter (sigma) and cutoff distance (sigma).
    """

    n_beads: int = 12
    dim: int = 2
    k_bond: float = 20.0
    r0: float = 1.0
    k_angle: float = 2.0
    theta0: float = float(np.pi)
    epsilon: float = 1.0
    sigma: float = 1.0
    cutoff: float = 2.5

    def __post_init__(self) -> None:
        _check_count(3, n_beads=self.n_beads)
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3; got {self.dim!r}")
        _check_positive(k_bond=self.k_bond, r0=self.r0, sigma=self.sigma, cutoff=self.cutoff)
        _check_positive(allow_zero=True, k_angle=self.k_angle, epsilon=self.epsilon)


def potential_energy(positions: ArrayLike, model: PolymerModel) -> jax.Array:
    """Total potential energy of one conformation.

    Parameters
    ----------
    positions : array (N, D)
        Bead coordinates in sigma.
    model : PolymerModel

    Returns
    -------
    Scalar jax array, energy in epsilon.
    """
    x = jnp.asarray(positions)
    bonds = x[1:] - x[:-1]  # (N-1, D)
    e_bond = 0.5 * model.k_bond * jnp.sum((jnp.linalg.norm(bonds, axis=-1) - model.r0) ** 2)

    # angle at bead i between a = x[i-1] - x[i] and c = x[i+1] - x[i]: arctan2(|a x c|, a.c),
    # with |a x c| written so that its gradient is 0 (not NaN) at theta = pi
    a, c = -bonds[:-1], bonds[1:]
    pad = ((0, 0), (0, 3 - model.dim))
    cross2 = jnp.sum(jnp.cross(jnp.pad(a, pad), jnp.pad(c, pad)) ** 2, axis=-1)
    sin_ac = jnp.where(cross2 > 0, jnp.sqrt(jnp.where(cross2 > 0, cross2, 1.0)), 0.0)
    theta = jnp.arctan2(sin_ac, jnp.sum(a * c, axis=-1))
    e_angle = 0.5 * model.k_angle * jnp.sum((theta - model.theta0) ** 2)

    i, j = np.triu_indices(model.n_beads, k=3)  # non-bonded pairs, |i - j| > 2
    d = x[i] - x[j]
    r2 = jnp.maximum(jnp.sum(d * d, axis=-1), 1e-6 * model.sigma**2)
    s6, sc6 = (model.sigma**2 / r2) ** 3, (model.sigma / model.cutoff) ** 6  # sc6: at cutoff
    e_lj = 4.0 * model.epsilon * (s6 * s6 - s6 - (sc6 * sc6 - sc6))
    return e_bond + e_angle + jnp.sum(jnp.where(r2 < model.cutoff**2, e_lj, 0.0))


@partial(jax.jit, static_argnames=("model", "n_frames", "stride"))
def _run(x, v, key, model, n_frames, stride, dt, kT, gamma):
    force = jax.grad(lambda pos: -potential_energy(pos, model))
    c1, c2 = jnp.exp(-gamma * dt), jnp.sqrt(-jnp.expm1(-2.0 * gamma * dt) * kT)

    def step(carry, noise):  # one BAOAB step, unit masses
        x, v, f = carry
        v = v + 0.5 * dt * f
        x = x + 0.5 * dt * v
        v = c1 * v + c2 * noise
        x = x + 0.5 * dt * v
        f = force(x)
        v = v + 0.5 * dt * f
        return (x, v, f), None

    def frame(carry, k):
        noise = jax.random.normal(k, (stride, *x.shape), dtype=x.dtype)
        carry, _ = jax.lax.scan(step, carry, noise)
        return carry, (carry[0], carry[1])

    # one key per saved frame, independent of n_frames: a short run repeats a long one's start
    keys = jax.vmap(partial(jax.random.fold_in, key))(jnp.arange(n_frames))
    _, (xs, vs) = jax.lax.scan(frame, (x, v, force(x)), keys)
    return xs, vs


def langevin_run(
    positions: ArrayLike,
    velocities: ArrayLike,
    key: jax.Array,
    model: PolymerModel = PolymerModel(),
    *,
    n_frames: int,
    stride: int,
    dt: float = 0.005,
    kT: float = 1.0,
    gamma: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """BAOAB Langevin dynamics from a given state, saving every ``stride`` steps.

    Parameters
    ----------
    positions, velocities : array (N, D)
        Initial state in sigma and sigma per reduced time unit (masses are 1).
    key : jax.Array
        PRNG key of the thermostat noise.
    model : PolymerModel
    n_frames, stride : int
        Saved frames and steps between them; frame k is saved after (k + 1) * stride steps.
    dt, kT, gamma : float
        Time step, temperature and friction (reduced units); gamma = 0 is NVE velocity Verlet.

    Returns
    -------
    positions, velocities : jax arrays (n_frames, N, D), float32
    """
    _check_count(1, n_frames=n_frames, stride=stride)
    _check_positive(dt=dt, kT=kT)
    _check_positive(allow_zero=True, gamma=gamma)
    x, v = jnp.asarray(positions, jnp.float32), jnp.asarray(velocities, jnp.float32)
    if x.shape != (shape := (model.n_beads, model.dim)) or v.shape != shape:
        raise ValueError(f"positions, velocities: expected shape {shape}, got {x.shape}, {v.shape}")
    dt, kT, gamma = np.float32(dt), np.float32(kT), np.float32(gamma)  # float32 even under x64
    return _run(x, v, key, model, int(n_frames), int(stride), dt, kT, gamma)


def simulate_polymer(
    model: PolymerModel = PolymerModel(),
    *,
    n_frames: int = 4096,
    stride: int = 1000,
    dt: float = 0.005,
    kT: float = 1.0,
    gamma: float = 1.0,
    n_equil: int = 10000,
    seed: int = 0,
    key: jax.Array | None = None,
) -> Frames:
    """Sample conformations of the polymer with Langevin dynamics.

    Starts from a straight chain with Maxwell-Boltzmann velocities, runs ``n_equil``
    unsaved steps, then saves ``n_frames`` frames ``stride`` steps apart.

    Parameters
    ----------
    model : PolymerModel
    n_frames, stride, n_equil : int
        Saved frames T, integration steps between them (default 1000 = 5 reduced time
        units) and equilibration steps before the first.
    dt, kT, gamma : float
        Time step (reduced time), temperature (epsilon) and friction (1 / reduced time).
    seed : int
        PRNG seed, used when ``key`` is None.
    key : jax.Array, optional
        Explicit PRNG key (overrides ``seed``).

    Returns
    -------
    Frames
        ``positions`` (T, N, D) float32 in sigma (``unit="sigma"``), unit masses, names
        ``"B0"...``, ``times`` = dt * stride * index (reduced time units).
    """
    _check_count(1, n_frames=n_frames, stride=stride)
    _check_count(0, n_equil=n_equil)
    _check_positive(dt=dt, kT=kT, gamma=gamma)
    key = jax.random.PRNGKey(seed) if key is None else key
    k_vel, k_equil, k_run = jax.random.split(key, 3)
    x = jnp.zeros((model.n_beads, model.dim)).at[:, 0].set(model.r0 * jnp.arange(model.n_beads))
    v = jnp.sqrt(kT) * jax.random.normal(k_vel, x.shape, jnp.float32)
    start, thermo = time.perf_counter(), dict(dt=dt, kT=kT, gamma=gamma)
    if n_equil > 0:
        xs, vs = langevin_run(x, v, k_equil, model, n_frames=1, stride=n_equil, **thermo)
        x, v = xs[-1], vs[-1]
    xs, _ = langevin_run(x, v, k_run, model, n_frames=n_frames, stride=stride, **thermo)
    xs = np.asarray(xs, np.float32)  # waits for the asynchronous JAX computation
    logger.info("%d frames x %d steps: %.1f s", n_frames, stride, time.perf_counter() - start)
    return Frames(
        xs,
        masses=np.ones(model.n_beads),
        names=[f"B{i}" for i in range(model.n_beads)],
        times=dt * stride * np.arange(n_frames, dtype=np.float64),
        unit="sigma",
        metadata={"model": model, "stride": stride, "n_equil": n_equil, "seed": seed, **thermo},
    )


def main(argv: list[str] | None = None) -> None:
    """Command line: simulate the default polymer and write it with ``write_npz``."""
    parser = argparse.ArgumentParser(prog="python tools/bead_spring.py", description=__doc__)
    parser.add_argument("-o", "--output", required=True, help="output .npz file")
    parser.add_argument("--frames", type=int, default=4096, help="number of frames (4096)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    frames = simulate_polymer(n_frames=args.frames, seed=args.seed)
    path = write_npz(args.output, frames)
    logger.info("wrote %s (%d frames)", path, frames.n_frames)


if __name__ == "__main__":
    main()
