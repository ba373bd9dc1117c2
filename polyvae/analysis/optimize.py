"""Structure optimization in latent space.

Any differentiable function of a decoded structure is minimized over z with optax,
from several starts at once (vmapped, one compiled scan); the starts are the best of
many prior draws. Two optional guards
keep the answer physical:

- a prior penalty ``prior_weight * |z|^2 / 2`` (the negative log prior, up to a
  constant) keeps z where the decoder saw training data;
- a steric guard ``stiffness * sum relu(1 - d_ij / d_min)^2`` over non-bonded pairs
  stops the optimizer from buying a lower objective with overlapping atoms, which a
  decoder extrapolating away from its data readily offers. ``min_distance="train"``
  takes ``d_min`` as the training frames' 1st percentile of the closest non-bonded
  contact (stored in the model file at training), plus a 1% margin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from polyvae import geometry
from polyvae._checks import ensure_int, ensure_number, ensure_pairs

__all__ = ["OptimizationResult", "optimize_latent", "OBJECTIVES"]

logger = logging.getLogger(__name__)


def _rg_objective(masses):
    w = masses / jnp.sum(masses)
    return lambda x: geometry.radius_of_gyration(x, w)


OBJECTIVES: dict[str, Callable] = {"rg": _rg_objective}


@dataclass
class OptimizationResult:
    """Latent-space optimization from several starts, best first.

    Attributes
    ----------
    z : ndarray (S, L)
        Optimized latent points.
    positions : ndarray (S, N, D)
        Decoded structures (decoder mean), aligned frame, model units.
    objective : ndarray (S,)
        Objective of each structure (prior penalty not included).
    trace : ndarray (S, steps)
        Objective at every step of every start.
    feasible : ndarray (S,), bool
        Whether each structure keeps the steric guard's ``min_distance`` (all True
        when the guard is off). Feasible structures come first.
    """

    z: np.ndarray
    positions: np.ndarray
    objective: np.ndarray
    trace: np.ndarray
    feasible: np.ndarray | None = None

    def to_dict(self) -> dict:
        return {"objective": self.objective.tolist(), "z": self.z.tolist()}


def optimize_latent(
    model,
    objective: str | Callable = "rg",
    *,
    n_starts: int = 64,
    steps: int = 1000,
    n_candidates: int = 32768,
    learning_rate: float = 0.05,
    prior_weight: float = 0.0,
    min_distance: float | str | None = "train",
    bonds=None,
    stiffness: float = 100.0,
    seed: int = 0,
) -> OptimizationResult:
    """Minimize ``objective(decode(z))`` over z with Adam.

    Parameters
    ----------
    model : VAEModel
        A trained model with a Gaussian likelihood (coordinates).
    objective : "rg" or callable
        ``"rg"``: mass-weighted radius of gyration. A callable takes one structure
        (N, D) as a JAX array and returns a scalar; it must be differentiable.
    n_starts : int
        Independent starts: the best of ``n_candidates`` prior draws.
    n_candidates : int
        Prior draws screened with the objective (and penalties) to pick the starts.
    steps : int
        Adam steps per start.
    learning_rate : float
        Initial Adam step size in latent units (cosine-decayed to 1% over ``steps``).
    prior_weight : float
        Weight of the prior penalty |z|^2 / 2 (0 switches it off).
    min_distance : float, "train" or None
        Closest non-bonded contact allowed (model units), enforced by a penalty;
        "train" uses the training frames' 1st percentile (None if the model file does
        not hold it); None switches the guard off.
    bonds : array (B, 2), optional
        Bonded pairs excluded from the guard (default: a linear chain).
    stiffness : float
        Weight of the steric penalty.
    seed : int
        Seeds the starting points.

    Returns
    -------
    OptimizationResult
        Structures that keep ``min_distance`` first, each group sorted by objective.
    """
    if model.pipeline is None or model.config.likelihood != "gaussian":
        raise ValueError("model must be a coordinate model with a gaussian likelihood")
    if isinstance(objective, str):
        if objective not in OBJECTIVES:
            raise ValueError(
                f"objective must be one of {sorted(OBJECTIVES)} or a callable; got {objective!r}"
            )
        fn = OBJECTIVES[objective](jnp.asarray(model.pipeline.masses, jnp.float32))
    elif callable(objective):
        fn = objective
    else:
        raise TypeError(f"objective must be a name or a callable; got {type(objective).__name__}")
    ensure_int(n_starts, "n_starts", 1)
    ensure_int(steps, "steps", 1)
    ensure_int(n_candidates, "n_candidates", n_starts, what="at least n_starts")
    ensure_number(learning_rate, "learning_rate", minimum=0, exclusive=True)
    ensure_number(prior_weight, "prior_weight", minimum=0)

    n_atoms, latent_dim = model.n_atoms, model.latent_dim
    d_min = _resolve_min_distance(model, min_distance)
    bonds = (
        geometry.chain_bonds(n_atoms) if bonds is None else ensure_pairs(bonds, n_atoms, "bonds")
    )
    pairs = geometry.nonbonded_pairs(n_atoms, bonds)
    structure = model.structure_fn()

    def value(z):
        return fn(structure(z))

    def penalized(z):
        total = value(z) + prior_weight * 0.5 * jnp.sum(z**2)
        if d_min is not None:
            x = structure(z)
            d = geometry.pair_distances(x, pairs)
            total = total + stiffness * jnp.sum(jax.nn.relu(1.0 - d / (1.01 * d_min)) ** 2)
        return total

    # a decaying step settles each start into its minimum instead of circling it
    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01))
    grad = jax.value_and_grad(penalized)

    def run_one(z0):
        def step(carry, _):
            z, state = carry
            _, g = grad(z)
            updates, state = opt.update(g, state, z)
            z = optax.apply_updates(z, updates)
            return (z, state), value(z)

        (z, _), trace = jax.lax.scan(step, (z0, opt.init(z0)), None, length=steps)
        return z, trace

    # screen many prior draws with the (penalized) objective and refine the best ones:
    # the guarded landscape has many local minima, and a broad look costs one batched pass
    pool = jax.random.normal(jax.random.PRNGKey(seed), (n_candidates, latent_dim))
    scores = jax.jit(lambda zs: jax.lax.map(penalized, zs, batch_size=4096))(pool)
    z0 = pool[jnp.argsort(jnp.where(jnp.isfinite(scores), scores, jnp.inf))[:n_starts]]
    z, trace = jax.jit(jax.vmap(run_one))(z0)
    positions = jax.vmap(structure)(z)
    values = jax.vmap(fn)(positions)
    z, positions, values, trace = (np.asarray(a) for a in (z, positions, values, trace))
    if not np.all(np.isfinite(values)):
        raise FloatingPointError(
            "latent optimization produced non-finite objective values; lower learning_rate"
        )
    feasible = np.ones(len(values), bool)
    if d_min is not None:
        d = geometry.pair_distances(positions, pairs)
        feasible = d.min(axis=1) >= d_min
        if not feasible.any():
            logger.warning(
                "no start kept the closest non-bonded contact >= %.4g; raise stiffness or n_starts",
                d_min,
            )
    order = np.lexsort((values, ~feasible))  # feasible first, then by objective
    return OptimizationResult(
        z[order], positions[order], values[order], trace[order], feasible[order]
    )


def _resolve_min_distance(model, min_distance) -> float | None:
    if min_distance is None:
        return None
    if isinstance(min_distance, str):
        if min_distance != "train":
            raise ValueError(
                f'min_distance must be a number, "train" or None; got {min_distance!r}'
            )
        stats = model.train_stats
        return None if stats is None else stats.min_nonbonded_p01
    if not (isinstance(min_distance, int | float) and min_distance > 0):
        raise ValueError(f"min_distance must be a positive number; got {min_distance!r}")
    return float(min_distance)
