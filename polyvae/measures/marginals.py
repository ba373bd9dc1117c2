"""Distance marginals: per-pair distributions of training versus generated frames.

For every atom pair the training and generated distances are histogrammed on
common bin edges and compared with the Wasserstein-1 distance (in length units),
which is then divided by the training standard deviation of that distance so that
stiff and floppy pairs can be compared on one scale.

A pair whose training distance does not vary (a rigid or constrained distance)
cannot be normalized: when its training standard deviation (population,
``ddof=0``) is at most ``STD_REL_TOL`` times the largest absolute training
coordinate (zero up to float32 round-off), its normalized W1 is NaN, it is listed
in ``rigid`` and left out of the mean, and a warning names it. Its W1 in length
units is still reported. No floor is applied, so a normalized W1 is never inflated
by one. If every pair is rigid, :func:`distance_marginals` raises ``ValueError``.

A large molecule has too many pairs to compare them all (3341 atoms: 5.6 million, a
(frames, pairs) array of tens of GB): by default :func:`distance_marginals` compares all
pairs of molecules with at most :data:`MAX_ALL_PAIRS` of them (214 atoms) and, above, a
seeded sample of :data:`SAMPLED_PAIRS` pairs, the same for the same atom count. The
result says so (:attr:`Marginals.n_pairs_total`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyvae import geometry
from polyvae._checks import ensure_frames, ensure_int, ensure_pairs, ensure_same_atoms
from polyvae.measures.weights import check_weights

__all__ = ["Marginals", "distance_marginals", "wasserstein_columns", "STD_REL_TOL"]
__all__ += ["MAX_ALL_PAIRS", "SAMPLED_PAIRS", "PAIR_SEED", "sample_pairs"]

logger = logging.getLogger(__name__)

STD_REL_TOL = 1e-6
"""A training std at most this times the largest |coordinate| counts as zero.

About ten times the round-off that float32 coordinates leave in a distance.
"""

MAX_ALL_PAIRS = 22_791
"""Molecules with at most this many atom pairs (214 atoms) are compared on all of them."""

SAMPLED_PAIRS = 20_000
"""Pairs compared, drawn at random, for molecules with more than :data:`MAX_ALL_PAIRS`."""

PAIR_SEED = 0
"""Seed of the pair sample (:func:`sample_pairs`)."""


@dataclass
class Marginals:
    """Per-pair distance distributions of training and generated frames.

    Attributes
    ----------
    pairs : ndarray (P, 2), int
        Atom index pairs.
    bin_edges : ndarray (P, bins + 1), length
        Common bin edges of each pair, spanning both sets' ranges.
    train_hist, generated_hist : ndarray (P, bins), 1/length
        Histogram densities (each integrates to 1 over its bins).
    w1 : ndarray (P,), length
        Wasserstein-1 distance between training and generated distances.
    train_std : ndarray (P,), length
        Standard deviation (``ddof=0``) of the training distances.
    w1_normalized : ndarray (P,)
        ``w1 / train_std`` (dimensionless).
    mean_w1_normalized : float
        Mean of ``w1_normalized`` over the pairs that are not rigid.
    unit : str, optional
        Length unit of the distances.
    rigid : ndarray (P,), bool, optional
        Pairs whose training distance does not vary (normalized W1 is NaN).
    n_pairs_total : int, optional
        Pairs of the molecule that :attr:`pairs` were drawn from, when they are a
        sample (:func:`sample_pairs`); None when the pairs were given or are all pairs.
    """

    pairs: np.ndarray
    bin_edges: np.ndarray
    train_hist: np.ndarray
    generated_hist: np.ndarray
    w1: np.ndarray
    train_std: np.ndarray
    w1_normalized: np.ndarray
    mean_w1_normalized: float
    unit: str | None = None
    rigid: np.ndarray | None = None
    n_pairs_total: int | None = None

    @property
    def n_pairs(self) -> int:
        """Number of pairs P."""
        return int(self.pairs.shape[0])

    def index(self, i: int, j: int) -> int:
        """Row of pair ``(i, j)`` (either order) in :attr:`pairs`.

        Raises
        ------
        KeyError
            If the pair is not among :attr:`pairs`.
        """
        hit = np.flatnonzero(
            ((self.pairs[:, 0] == i) & (self.pairs[:, 1] == j))
            | ((self.pairs[:, 0] == j) & (self.pairs[:, 1] == i))
        )
        if hit.size == 0:
            raise KeyError(
                f"pair ({i}, {j}) is not among the {self.n_pairs} pairs of these marginals"
            )
        return int(hit[0])

    def worst(self, k: int = 5) -> np.ndarray:
        """The ``k`` pairs with the largest normalized W1, largest first.

        Parameters
        ----------
        k : int
            Number of pairs (fewer if there are fewer pairs).

        Returns
        -------
        ndarray (min(k, P), 2), int
        """
        ensure_int(k, "k", 1)
        order = np.argsort(-self.w1_normalized, kind="stable")[:k]
        return self.pairs[order]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: pairs, per-pair W1 and normalized W1, their mean, the unit;
        ``n_pairs_total`` and ``pair_seed`` when the pairs are a sample of all pairs."""
        sampled = {}
        if self.n_pairs_total is not None:
            sampled = {"n_pairs_total": int(self.n_pairs_total), "pair_seed": PAIR_SEED}
        return {
            "unit": self.unit,
            "n_pairs": self.n_pairs,
            **sampled,
            "bins": int(self.train_hist.shape[1]),
            "mean_w1_normalized": float(self.mean_w1_normalized),
            "pairs": self.pairs.astype(int).tolist(),
            "w1": [float(v) for v in self.w1],
            "w1_normalized": [None if np.isnan(v) else float(v) for v in self.w1_normalized],
            "train_std": [float(v) for v in self.train_std],
            "rigid_pairs": []
            if self.rigid is None
            else self.pairs[self.rigid].astype(int).tolist(),
        }


def distance_marginals(
    train_positions: Any,
    generated_positions: Any,
    pairs: Any = None,
    bins: int = 50,
    unit: str | None = "Å",
    train_weights: Any = None,
) -> Marginals:
    """Histogram and compare the distance distribution of each atom pair.

    Parameters
    ----------
    train_positions : array (T_train, N, D), length
    generated_positions : array (T_gen, N, D), length
        Same N and D as the training frames.
    pairs : array (P, 2), int, optional
        Atom pairs; default all pairs ``i < j`` when there are at most
        :data:`MAX_ALL_PAIRS` (214 atoms), else :data:`SAMPLED_PAIRS` of them drawn
        with seed :data:`PAIR_SEED` (:func:`sample_pairs`), so that memory stays
        bounded; :attr:`Marginals.n_pairs_total` then gives the number of all pairs.
    bins : int
        Number of histogram bins per pair.
    unit : str, optional
        Length unit, recorded in the result.
    train_weights : array (T_train,), optional
        Per-frame weights of the training frames (e.g. from a biased run, see
        :mod:`polyvae.measures.weights`): their histograms, standard deviations and W1 are
        weighted ones, i.e. those of the unbiased ensemble.

    Returns
    -------
    Marginals

    Raises
    ------
    ValueError
        If no pair's training distance varies (see the module docstring).
    """
    names = ("train_positions", "generated_positions")
    train, _ = ensure_frames(train_positions, names[0], allow_single=False)
    gen, _ = ensure_frames(generated_positions, names[1], allow_single=False)
    ensure_same_atoms(train, gen, names)
    ensure_int(bins, "bins", 1)
    if unit is not None and not isinstance(unit, str):
        raise TypeError(f"unit must be a string or None; got {type(unit).__name__}")
    w_train = None
    if train_weights is not None:
        w_train = check_weights(train_weights, train.shape[0], "train_weights")
    n = train.shape[1]
    total = None
    if pairs is None:
        pairs = sample_pairs(n)
        if len(pairs) < n * (n - 1) // 2:
            total = n * (n - 1) // 2
            logger.debug(
                "distance marginals of %d of the %d atom pairs (a seeded sample)", len(pairs), total
            )
    else:
        pairs = ensure_pairs(pairs, n)
    if pairs.shape[0] == 0:
        raise ValueError("pairs must hold at least one pair; got an empty array")

    d_train = geometry.pair_distances(train, pairs)
    d_gen = geometry.pair_distances(gen, pairs)
    if w_train is None:
        train_std = d_train.std(axis=0)
    else:
        centred = d_train - np.average(d_train, axis=0, weights=w_train)
        train_std = np.sqrt(np.average(centred**2, axis=0, weights=w_train))
    tol = STD_REL_TOL * np.abs(train).max()
    rigid = train_std <= tol
    if rigid.all():
        raise ValueError(
            f"no pair's training distance varies (every std <= {tol:.3g}, float32 round-off), "
            "so no W1 can be normalized: the training frames are rigid copies of one structure"
        )
    if rigid.any():
        i, j = pairs[np.flatnonzero(rigid)[0]]
        logger.warning(
            "%d pair(s) have a rigid training distance, first (%d, %d); their normalized W1 is "
            "NaN and left out of the mean",
            rigid.sum(),
            i,
            j,
        )

    lo = np.minimum(d_train.min(axis=0), d_gen.min(axis=0))
    hi = np.maximum(d_train.max(axis=0), d_gen.max(axis=0))
    flat = hi - lo <= 1e-9 * np.maximum(np.abs(hi), 1.0)  # a rigid pair reproduced exactly
    lo = np.where(flat, lo - 1e-3 * np.maximum(np.abs(lo), 1.0), lo)
    hi = np.where(flat, hi + 1e-3 * np.maximum(np.abs(hi), 1.0), hi)
    edges = np.linspace(lo, hi, bins + 1, axis=1)
    h_train = _histograms(d_train, edges, w_train)
    h_gen = _histograms(d_gen, edges, None)
    w1 = wasserstein_columns(d_train, d_gen, w_train)
    w1_norm = np.where(rigid, np.nan, w1 / np.where(rigid, 1.0, train_std))
    logger.debug(
        "distance_marginals: %d pairs, %d training, %d generated frames",
        pairs.shape[0],
        train.shape[0],
        gen.shape[0],
    )
    return Marginals(
        pairs=pairs,
        bin_edges=edges,
        train_hist=h_train,
        generated_hist=h_gen,
        w1=w1,
        train_std=train_std,
        w1_normalized=w1_norm,
        mean_w1_normalized=float(np.nanmean(w1_norm)),
        unit=unit,
        rigid=rigid,
        n_pairs_total=total,
    )


def sample_pairs(n_atoms: int, size: int = SAMPLED_PAIRS, seed: int = PAIR_SEED) -> np.ndarray:
    """All pairs ``i < j`` of ``n_atoms`` atoms if there are at most :data:`MAX_ALL_PAIRS`,
    else ``size`` distinct pairs drawn uniformly with ``seed``: (P, 2) int64, row-major.

    The draw never forms all pairs: memory grows with ``size``, not with N².
    """
    n = int(n_atoms)
    total = n * (n - 1) // 2
    if total <= MAX_ALL_PAIRS or total <= size:
        return geometry.all_pairs(n)
    k = np.sort(np.random.default_rng(seed).choice(total, size=size, replace=False))
    # row i starts at code i (2n - i - 1) / 2: invert, then fix float round-off
    i = np.floor((2 * n - 1 - np.sqrt((2.0 * n - 1) ** 2 - 8.0 * k)) / 2).astype(np.int64)
    start = i * (2 * n - i - 1) // 2
    i = np.where(k < start, i - 1, i)
    start = i * (2 * n - i - 1) // 2
    ahead = k >= start + (n - 1 - i)
    i = np.where(ahead, i + 1, i)
    start = i * (2 * n - i - 1) // 2
    return np.stack([i, k - start + i + 1], axis=1).astype(np.int64)


_BLOCK_ELEMENTS = 1 << 22
"""Values sorted at once by :func:`wasserstein_columns` (bounds its memory)."""


def wasserstein_columns(u: np.ndarray, v: np.ndarray, u_weights: Any = None) -> np.ndarray:
    """Wasserstein-1 distance between the columns of ``u`` (n, P) and ``v`` (m, P).

    Column k of the result is ``scipy.stats.wasserstein_distance(u[:, k], v[:, k],
    u_weights)``: the integral of ``|F_u - F_v|`` over the merged, sorted values, computed
    for all columns at once (one sort along the frames axis per block of columns).

    Parameters
    ----------
    u : array (n, P)
    v : array (m, P)
    u_weights : array (n,), optional
        Non-negative weights of the rows of ``u`` (normalized here); ``v``'s are equal.

    Returns
    -------
    ndarray (P,)
    """
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    n, m = u.shape[0], v.shape[0]
    # unweighted CDFs count in integers, so identical sets give exactly 0
    wu = np.ones(n, np.int64) if u_weights is None else np.asarray(u_weights, np.float64)
    total = wu.sum()
    # each merged row moves F_u by its weight (rows of u) or F_v by 1/m (rows of v)
    u_step = np.concatenate([wu, np.zeros(m, wu.dtype)])
    v_step = np.concatenate([np.zeros(n, np.int64), np.ones(m, np.int64)])
    out = np.empty(u.shape[1])
    block = max(1, _BLOCK_ELEMENTS // (n + m))
    for start in range(0, u.shape[1], block):
        cols = slice(start, start + block)
        # columns as contiguous rows: the sort runs along memory
        merged = np.concatenate([u[:, cols], v[:, cols]]).T.copy()
        order = np.argsort(merged, axis=1)
        values = np.take_along_axis(merged, order, axis=1)
        # F_u - F_v after each merged value
        f_u = np.cumsum(u_step[order], axis=1)[:, :-1] / total
        gap = f_u - np.cumsum(v_step[order], axis=1)[:, :-1] / m
        out[cols] = np.einsum("ij,ij->i", np.abs(gap), np.diff(values, axis=1))
    return out


def _histograms(d: np.ndarray, edges: np.ndarray, weights: Any) -> np.ndarray:
    """Density histograms of the columns of ``d`` (T, P) on their evenly spaced ``edges``
    (P, bins + 1), as ``np.histogram(d[:, k], edges[k], density=True, weights=...)``:
    values outside a column's edges are left out, the last bin includes its right edge."""
    t, p = d.shape
    bins = edges.shape[1] - 1
    lo, hi = edges[:, 0], edges[:, -1]
    idx = np.floor((d - lo) * (bins / (hi - lo))).astype(np.int64)
    # a value computed into the neighbouring bin by round-off goes where the edges say
    idx -= (idx > 0) & (idx < bins) & (d < np.take_along_axis(edges.T, np.clip(idx, 0, bins), 0))
    upper = np.take_along_axis(edges.T, np.clip(idx + 1, 0, bins), 0)
    idx += (idx < bins - 1) & (idx >= 0) & (d >= upper)
    idx = np.where(d == hi, bins - 1, idx)
    inside = (idx >= 0) & (idx < bins) & (d >= lo) & (d <= hi)
    w = np.ones(t) if weights is None else np.asarray(weights, np.float64)
    flat = np.where(inside, idx + bins * np.arange(p), p * bins)
    counts = np.bincount(flat.ravel(), np.broadcast_to(w[:, None], d.shape).ravel(), p * bins + 1)
    counts = counts[:-1].reshape(p, bins)
    total = counts.sum(axis=1, keepdims=True)
    return counts / np.where(total > 0, total, 1.0) / np.diff(edges, axis=1)
