"""Structure optimization in latent space, constrained to physically valid structures.

Any differentiable function of a decoded structure is minimized over z with optax,
from several starts at once (vmapped, one compiled scan per round). The structure
must stay valid by the model's :class:`~polyvae.measures.validity.StructureChecks`:
every bond and bond angle inside its training range (or a narrower stored percentile
band) and no pair beyond the excluded ones closer than the training minimum. A decoder
extrapolating away from its data readily offers a lower objective with stretched bonds
or overlapping atoms; three things keep the answer valid:

- a smooth penalty, the squared hinge of every violation (bond and angle outside its
  range, contact below the minimum), each measured relative to a scale (bond ranges'
  mid-length, one radian, the minimum contact) and aimed at ranges narrowed by
  ``margin`` so that a penalty that is small but not zero still leaves the structure
  inside the real ranges;
- rounds with a penalty weight that grows by ``penalty_growth`` each round (the
  objective may rise at a round's start: the stiffer penalty pushes structures back
  inside their ranges);
- a final check of every returned structure with the checks themselves: only the
  structures that pass are returned (``require_valid=True``), and an error says so
  when none does.

Starts are the best of many prior draws, screened with the objective plus the final
round's penalty, and, given ``start_frames``, the encoded latents of the training
frames with the lowest objective that pass the checks. With checks, a start that passes
them and is lower than where its rounds end is kept instead (``kept_start``): a weak
first round can carry a start out of a small valid basin.

Large molecules (more contact pairs than
:data:`~polyvae.measures.validity.ALL_PAIRS_LIMIT`) never form all atom pairs: the contact
penalty goes through a neighbour list per start (a k-d tree on the host, pairs within
:data:`NEIGHBOUR_REACH` times the contact bound), found anew every
:data:`NEIGHBOUR_STEPS` steps; the starts are screened without contacts and the best few
then ranked again with them.

An optional prior penalty ``prior_weight * |z|^2 / 2`` (the negative log prior, up to a
constant) keeps z where the decoder saw training data.

For the internal decoder the search runs over the model's samples, not its mean: over z
together with the decoder noise eps of the internal coordinates
(:meth:`~polyvae.vae.VAEModel.sample_structure_fn`). A decoder mean averages
neighbouring frames and rarely reaches the extremes of the data (the most compact
structures); a sample does, and a typical one is what the model generates. The noise is
held to the typical set, rms(eps) <= ``noise_rms`` (1: no farther from the mean than a
typical draw), by projection after every step, so the bound holds exactly for every
returned structure.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from polyvae import geometry
from polyvae._checks import ensure_int, ensure_number
from polyvae.measures import validity
from polyvae.measures.validity import StructureChecks, ValidityReport

__all__ = ["OptimizationResult", "optimize_latent", "OBJECTIVES", "NoValidStructureError"]

logger = logging.getLogger(__name__)


def _rg_objective(masses):
    w = masses / jnp.sum(masses)
    return lambda x: geometry.radius_of_gyration(x, w)


OBJECTIVES: dict[str, Callable] = {"rg": _rg_objective}


ROUND_LR_DECAY = 0.3
"""Each penalty round starts Adam at this fraction of the previous round's step size."""


NEIGHBOUR_STEPS = 25
"""Large molecules: Adam steps between the neighbour lists of the contact penalty."""

NEIGHBOUR_REACH = 1.5
"""Large molecules: pairs closer than this times the contact bound are in the neighbour
list (atoms move less than the difference within :data:`NEIGHBOUR_STEPS` steps)."""


SCREEN_COORDINATES = 1 << 22
"""Coordinates decoded at a time when screening candidate starts (the decoder's
intermediate arrays are several times this)."""


class NoValidStructureError(RuntimeError):
    """No optimized structure passes the structure checks."""


@dataclass
class OptimizationResult:
    """Latent-space optimization from several starts, valid structures first, best first.

    Attributes
    ----------
    z : ndarray (S, L)
        Optimized latent points.
    positions : ndarray (S, N, D)
        The structures, aligned frame, model units: the decoder mean at ``z``, or with
        ``noise`` the internal decoder's sample at ``z`` with that noise.
    objective : ndarray (S,)
        Objective of each structure (penalties not included).
    trace : ndarray (S, steps)
        Objective at every step of every start.
    valid : ndarray (S,) of bool, or None
        Whether each structure passes ``checks`` (None when optimized without checks).
        With ``require_valid=True`` all are True.
    penalty : ndarray (S,), or None
        Each structure's constraint penalty (unweighted, 0 inside the narrowed ranges).
    penalty_trace : ndarray (S, steps), or None
        The unweighted penalty at every step.
    round_starts : ndarray (R,) of int
        First step of each penalty round.
    weights : ndarray (R,)
        Penalty weight of each round.
    checks : StructureChecks or None
        The checks enforced (with the percentile band asked for).
    report : ValidityReport or None
        ``checks.check(positions)``: which check each structure passes.
    kept_start : ndarray (S,) of bool, or None
        Structures that are their start, kept because it passed the checks and was
        lower than where the optimization from it ended (``trace`` shows that path).
    noise : ndarray (S, Q), or None
        The internal decoder's standard-normal noise of each structure (None when the
        search ran over z alone).
    """

    z: np.ndarray
    positions: np.ndarray
    objective: np.ndarray
    trace: np.ndarray
    valid: np.ndarray | None = None
    penalty: np.ndarray | None = None
    penalty_trace: np.ndarray | None = None
    round_starts: np.ndarray | None = None
    weights: np.ndarray | None = None
    checks: Any = None
    report: Any = None
    kept_start: np.ndarray | None = None
    noise: np.ndarray | None = None

    @property
    def noise_rms(self) -> np.ndarray | None:
        """Root mean square of each structure's noise (S,), or None."""
        return None if self.noise is None else np.sqrt(np.mean(self.noise**2, axis=1))

    def to_dict(self) -> dict:
        out = {"objective": self.objective.tolist(), "z": self.z.tolist()}
        if self.valid is not None:
            out["valid"] = self.valid.tolist()
        return out


def _resolve_checks(model, checks, percentiles):

    if checks is None:
        if percentiles is not None:
            raise ValueError("percentiles needs structure checks; got checks=None")
        return None
    if isinstance(checks, str):
        if checks != "model":
            raise ValueError(f'checks must be "model", a StructureChecks or None; got {checks!r}')
        checks = model.structure_checks
        if checks is None:
            raise ValueError(
                "checks: the model file holds no structure checks (an older file?); pass "
                "checks=StructureChecks.from_training(frames), or checks=None to optimize "
                "without them"
            )
    elif not isinstance(checks, StructureChecks):
        raise TypeError(
            f'checks must be "model", a StructureChecks or None; got {type(checks).__name__}'
        )
    if checks.n_atoms != model.n_atoms:
        raise ValueError(
            f"checks must be for the model's {model.n_atoms} atoms; got {checks.n_atoms}"
        )
    return checks if percentiles is None else checks.band(percentiles)


def _uses_neighbour_lists(checks) -> bool:
    """Whether the contact pairs of ``checks`` are too many to form at once."""

    n = checks.n_atoms
    return n * (n - 1) // 2 - len(checks.excluded_codes) > validity.ALL_PAIRS_LIMIT


def _neighbour_lists(checks, x, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Per structure of ``x`` (S, N, D), its pairs beyond the excluded ones closer than
    :data:`NEIGHBOUR_REACH` times the contact bound: pairs (S, K, 2) int32 and a mask
    (S, K) float32 (0 for padding). K is rounded up (to a quarter of its power of two),
    so that lists of similar lengths share one compilation."""
    reach = NEIGHBOUR_REACH * float(checks.min_contact) * (1.0 + margin)
    found = [
        geometry.close_pairs(frame, reach, checks.excluded_codes)[0]
        for frame in np.asarray(x, np.float64)
    ]
    k = max(8, max(len(f) for f in found))
    quarter = 1 << max(0, int(k).bit_length() - 3)
    k = -(-k // quarter) * quarter
    pairs = np.zeros((len(found), k, 2), np.int32)
    pairs[..., 1] = 1
    mask = np.zeros((len(found), k), np.float32)
    for s, f in enumerate(found):
        pairs[s, : len(f)] = f
        mask[s, : len(f)] = 1.0
    return pairs, mask


def _penalty_fn(checks, margin: float):
    """Unweighted penalty ``(x (N, D), near) -> scalar``: squared hinges of scaled
    violations against the ranges narrowed by ``margin`` of their width (contacts: of
    their value). Contacts are those of every pair, or for large molecules those of the
    neighbour list ``near`` (pairs (K, 2), mask (K,)); without one, none."""
    bonds, triples = checks.bonds, checks.angles
    pairs = None if _uses_neighbour_lists(checks) else checks.pairs
    b_lo, b_hi = checks.bond_range[:, 0], checks.bond_range[:, 1]
    b_pad = margin * (b_hi - b_lo)
    b_scale = float(np.mean(b_lo + b_hi) / 2)
    a_lo, a_hi = checks.angle_range[:, 0], checks.angle_range[:, 1]
    a_pad = margin * (a_hi - a_lo)
    c_min = checks.min_contact * (1.0 + margin)
    c_scale = max(float(checks.min_contact), 1e-12)
    consts = [jnp.asarray(v, jnp.float32) for v in (b_lo + b_pad, b_hi - b_pad)]
    consts += [jnp.asarray(v, jnp.float32) for v in (a_lo + a_pad, a_hi - a_pad)]
    lo_b, hi_b, lo_a, hi_a = consts

    def hinge2(v):
        return jnp.sum(jax.nn.relu(v) ** 2, axis=-1)

    def penalty(x, near=None):
        b = geometry.pair_distances(x, bonds) / b_scale
        total = hinge2(lo_b / b_scale - b) + hinge2(b - hi_b / b_scale)
        if len(triples):
            a = geometry.bond_angles(x, triples)
            total = total + hinge2(lo_a - a) + hinge2(a - hi_a)
        if near is not None:
            near_pairs, mask = near
            d = geometry.pair_distances(x, near_pairs)
            return total + hinge2((c_min - d) / c_scale * mask)
        if pairs is None:
            return total
        d = geometry.pair_distances(x, pairs)
        return total + hinge2((c_min - d) / c_scale)

    return penalty


def optimize_latent(
    model,
    objective: str | Callable = "rg",
    *,
    n_starts: int = 64,
    steps: int = 1000,
    n_candidates: int = 32768,
    learning_rate: float = 0.05,
    prior_weight: float = 0.0,
    checks: Any = "model",
    percentiles: tuple[float, float] | None = None,
    rounds: int = 4,
    penalty_weight: float = 10.0,
    penalty_growth: float = 10.0,
    margin: float = 0.005,
    start_frames: Any = None,
    require_valid: bool = True,
    decoder_noise: bool | None = None,
    noise_rms: float = 1.0,
    seed: int = 0,
) -> OptimizationResult:
    """Minimize ``objective(decode(z))`` over z with Adam, keeping the structure valid.

    Parameters
    ----------
    model : VAEModel
        A trained model with a Gaussian likelihood (coordinates).
    objective : "rg" or callable
        ``"rg"``: mass-weighted radius of gyration. A callable takes one structure
        (N, D) as a JAX array and returns a scalar; it must be differentiable.
    n_starts : int
        Independent starts.
    steps : int
        Adam steps per start, over all rounds (at least ``rounds``).
    n_candidates : int
        Prior draws screened with the objective plus the last round's penalty to pick
        the starts.
    learning_rate : float
        Initial Adam step size in latent units of each round (cosine-decayed to 1%).
    prior_weight : float
        Weight of the prior penalty |z|^2 / 2 (0 switches it off).
    checks : "model", StructureChecks or None
        The checks to keep: ``"model"`` those of the model file; None optimizes without
        any (no penalty, ``valid`` is None).
    percentiles : (low, high), optional
        Enforce the bond and angle ranges of this stored percentile band of the checks
        (e.g. ``(0.5, 99.5)``, see :meth:`StructureChecks.band`); default the checks'
        own ranges.
    rounds : int
        Penalty rounds; the weight grows by ``penalty_growth`` from one to the next.
    penalty_weight : float
        Penalty weight of the first round (objective units).
    penalty_growth : float
        Factor between the weights of consecutive rounds (>= 1).
    margin : float
        The penalty aims at ranges narrowed by this fraction of their width (contacts:
        raised by this fraction), in [0, 0.5).
    start_frames : Frames or array (T, N, D), optional
        Training frames: the encoded latents of those with the lowest objective that
        pass the checks make up to a quarter of the starts.
    require_valid : bool
        Return only the structures that pass the checks and raise
        :class:`NoValidStructureError` if none does; False returns all, valid first,
        with ``valid`` flags.
    decoder_noise : bool, optional
        Search over z and the internal decoder's noise (see the module notes); default
        on for models with ``decoder="internal"``, which alone have it.
    noise_rms : float
        The bound on the root mean square of the noise (> 0).
    seed : int
        Seeds the starting points.

    Returns
    -------
    OptimizationResult
        Valid structures first, each group sorted by objective.

    Raises
    ------
    NoValidStructureError
        ``require_valid`` and no optimized structure passes the checks.
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
    ensure_int(rounds, "rounds", 1)
    ensure_int(steps, "steps", rounds, what="at least one per penalty round")
    ensure_int(n_candidates, "n_candidates", n_starts, what="at least n_starts")
    ensure_number(learning_rate, "learning_rate", minimum=0, exclusive=True)
    ensure_number(prior_weight, "prior_weight", minimum=0)
    ensure_number(penalty_weight, "penalty_weight", minimum=0, exclusive=True)
    ensure_number(penalty_growth, "penalty_growth", minimum=1)
    ensure_number(margin, "margin", minimum=0, maximum=0.5, exclusive_maximum=True)
    ensure_number(noise_rms, "noise_rms", minimum=0, exclusive=True)
    checks = _resolve_checks(model, checks, percentiles)
    if decoder_noise is None:
        decoder_noise = model.n_noise > 0
    elif decoder_noise and model.n_noise == 0:
        raise ValueError(
            'decoder_noise needs a model trained with decoder="internal"; this one has '
            f"decoder={model.config.decoder!r}"
        )

    latent_dim = model.latent_dim
    # the optimized vector: z, then (with decoder noise) eps
    structure, project = _searched_structure(model, bool(decoder_noise), noise_rms)
    n_vars = latent_dim + (model.n_noise if decoder_noise else 0)
    neighbours = checks is not None and _uses_neighbour_lists(checks)
    if checks is None:
        weights = np.zeros(rounds)

        def penalty(x, near=None):
            return jnp.zeros((), x.dtype)
    else:
        weights = penalty_weight * penalty_growth ** np.arange(rounds, dtype=np.float64)
        penalty = _penalty_fn(checks, margin)

    def parts(z, near=None):
        x = structure(z)
        return fn(x), penalty(x, near)

    def total(z, w, near=None):
        f, p = parts(z, near)
        return f + w * p + prior_weight * 0.5 * jnp.sum(z**2)

    grad = jax.grad(total)
    per_round = [steps // rounds + (k < steps % rounds) for k in range(rounds)]
    structures = jax.jit(jax.vmap(structure))

    def near_lists(x):
        """The neighbour lists of structures ``x`` (large molecules), else None."""
        return _neighbour_lists(checks, x, margin) if neighbours else None

    def schedule(n_round):
        return optax.chain(
            optax.scale_by_adam(),
            optax.scale_by_learning_rate(optax.cosine_decay_schedule(1.0, n_round, alpha=0.01)),
        )

    @functools.cache
    def make_run(n_round, n_steps):
        """``n_steps`` compiled steps of a round of ``n_round`` (the step size is an
        argument: rounds of one length share the compilation); the optimizer state is
        carried from one call to the next, and so is the schedule."""
        opt = schedule(n_round)

        def run_one(z0, state, w, lr, near):
            def step(carry, _):
                z, state = carry
                updates, state = opt.update(grad(z, w, near), state, z)
                z = project(z + lr * updates)
                return (z, state), parts(z, near)

            (z, state), trace = jax.lax.scan(step, (z0, state), None, length=n_steps)
            return z, state, trace

        return jax.jit(jax.vmap(run_one, in_axes=(0, 0, None, None, 0)))

    # screen many prior draws with the objective and the last round's penalty, refine the
    # best: the constrained landscape has many local minima, and a broad look is one pass
    w_last = float(weights[-1])
    pool = jax.random.normal(jax.random.PRNGKey(seed), (n_candidates, latent_dim))
    pool = jnp.pad(pool, ((0, 0), (0, n_vars - latent_dim)))  # starts without noise
    batch = _screen_batch(model.n_atoms * model.dim)
    scores = jax.jit(lambda zs: jax.lax.map(lambda z: total(z, w_last), zs, batch_size=batch))(pool)
    order = np.argsort(np.where(np.isfinite(scores), np.asarray(scores), np.inf), kind="stable")
    frame_starts = _frame_starts(model, fn, checks, start_frames, max(1, n_starts // 4))
    frame_starts = np.pad(frame_starts, ((0, 0), (0, n_vars - latent_dim)))
    n_drawn = n_starts - len(frame_starts)
    if neighbours:  # screened without contacts: rank the best few again with them
        short = np.asarray(pool)[order[: min(len(order), 4 * n_drawn)]]
        z_short = jnp.asarray(short, jnp.float32)
        near = near_lists(structures(z_short))
        rescored = jax.jit(jax.vmap(total, in_axes=(0, None, 0)))(z_short, w_last, near)
        rescored = np.where(np.isfinite(rescored), np.asarray(rescored), np.inf)
        drawn = short[np.argsort(rescored, kind="stable")[:n_drawn]]
    else:
        drawn = np.asarray(pool)[order[:n_drawn]]
    z0 = np.concatenate([frame_starts, drawn])
    z = jnp.asarray(z0, jnp.float32)
    chunk = NEIGHBOUR_STEPS if neighbours else max(per_round)
    traces, penalties = [], []
    for k, (n_round, w) in enumerate(zip(per_round, weights, strict=True)):
        # later rounds refine: a smaller first step keeps each start in its basin
        lr = jnp.float32(learning_rate * ROUND_LR_DECAY**k)
        state = jax.vmap(schedule(n_round).init)(z)
        for done in range(0, n_round, chunk):
            n_steps = min(chunk, n_round - done)
            near = near_lists(structures(z))
            z, state, (f_tr, p_tr) = make_run(n_round, n_steps)(z, state, jnp.float32(w), lr, near)
            traces.append(np.asarray(f_tr))
            penalties.append(np.asarray(p_tr))
    trace, penalty_trace = np.concatenate(traces, axis=1), np.concatenate(penalties, axis=1)

    def judged(zs):
        """Structures of latent points and their objective and penalty, each decoded once."""
        x = structures(jnp.asarray(zs, jnp.float32))
        return x, jax.vmap(fn)(x), jax.vmap(penalty)(x, near_lists(x))

    positions, values, pens = judged(z)
    z, positions, values, pens = (np.array(a) for a in (z, positions, values, pens))
    if not np.all(np.isfinite(values)):
        raise FloatingPointError(
            "latent optimization produced non-finite objective values; lower learning_rate"
        )
    if checks is not None:
        # a weak first round can carry a start out of a small valid basin lower than where
        # the rounds end: such a start is kept instead
        z0 = np.asarray(z0, np.float32)
        x0, f0, p0 = (np.asarray(a) for a in judged(z0))
        ok0, ok = checks.check(x0).valid, checks.check(positions).valid
        back = ok0 & np.isfinite(f0) & (~ok | (f0 < values))
        for kept, start in ((z, z0), (positions, x0), (values, f0), (pens, p0)):
            kept[back] = start[back]
    round_starts = np.cumsum([0, *per_round[:-1]])
    z, noise = z[:, :latent_dim], (z[:, latent_dim:] if decoder_noise else None)
    if checks is None:
        order = np.argsort(values, kind="stable")
        return OptimizationResult(
            z[order], positions[order], values[order], trace[order], None, None, None,
            round_starts, weights, noise=None if noise is None else noise[order],
        )  # fmt: skip
    report = checks.check(positions)
    valid = report.valid
    if not valid.any():
        msg = (
            f"none of the {len(valid)} optimized structures passes the structure checks "
            f"(percentiles {list(checks.percentiles)}: bonds in range in "
            f"{int(report.bonds_ok.sum())}, angles in {int(report.angles_ok.sum())}, "
            f"contacts in {int(report.contacts_ok.sum())}); raise n_starts, steps or "
            "penalty_weight, or pass require_valid=False to see them"
        )
        if require_valid:
            raise NoValidStructureError(msg)
        logger.warning(msg)
    order = np.lexsort((values, ~valid))  # valid first, then by objective
    if require_valid:
        order = order[: int(valid.sum())]
    logger.info(
        "latent optimization: %d of %d structures pass the checks", int(valid.sum()), len(valid)
    )
    sub = _subset_report(report, order)
    return OptimizationResult(
        z[order], positions[order], values[order], trace[order], valid[order], pens[order],
        penalty_trace[order], round_starts, weights, checks, sub, back[order],
        None if noise is None else noise[order],
    )  # fmt: skip


def _screen_batch(coordinates: int) -> int:
    """Structures decoded at a time when screening: 4096, fewer for large molecules (about
    :data:`SCREEN_COORDINATES` coordinates in all)."""
    return int(min(4096, max(1, SCREEN_COORDINATES // max(1, coordinates))))


def _searched_structure(model, noise: bool, noise_rms: float):
    """``structure(v)`` of the optimized vector v and the projection that keeps v allowed:
    v = z alone, or z then the internal decoder's noise (its root mean square over the
    non-rigid features held to ``noise_rms``; rigid features' noise at 0)."""
    if not noise:
        return model.structure_fn(), lambda v: v
    latent_dim, fn = model.latent_dim, model.sample_structure_fn()
    free = ~np.asarray(model.config.kinds.rigid, bool)
    mask = jnp.asarray(free, jnp.float32)
    n_free = max(int(free.sum()), 1)

    def structure(v):
        return fn(v[:latent_dim], v[latent_dim:])

    def project(v):
        eps = v[latent_dim:] * mask
        rms = jnp.sqrt(jnp.sum(eps**2) / n_free)
        eps = eps * jnp.minimum(1.0, noise_rms / jnp.maximum(rms, 1e-12))
        return jnp.concatenate([v[:latent_dim], eps])

    return structure, project


def _subset_report(report, order):

    return ValidityReport(
        report.bonds_ok[order], report.angles_ok[order], report.contacts_ok[order]
    )


def _frame_starts(model, fn, checks, frames, k: int) -> np.ndarray:
    """Encoder means of the ``k`` frames with the lowest objective that pass the checks."""
    if frames is None:
        return np.zeros((0, model.latent_dim), np.float32)
    aligned = model.pipeline.align_frames(frames)
    values = np.asarray(
        jax.jit(lambda x: jax.lax.map(fn, x, batch_size=_screen_batch(x[0].size)))(
            jnp.asarray(aligned, jnp.float32)
        )
    )
    ok = np.isfinite(values)
    if checks is not None:
        ok &= checks.check(aligned).valid
    if not ok.any():
        logger.warning("no start frame passes the checks; starting from prior draws alone")
        return np.zeros((0, model.latent_dim), np.float32)
    idx = np.flatnonzero(ok)[np.argsort(values[ok], kind="stable")[:k]]
    raw = np.asarray(frames.positions if hasattr(frames, "positions") else frames)
    mean, _ = model.encode(raw[idx])  # encode aligns the frames itself
    return np.asarray(mean, np.float32)
