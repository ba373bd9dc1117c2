"""Structural checks on training and generated conformations.

Distances, bond lengths, closest non-bonded contacts and radii of gyration of
positions ``(T, N, D)`` (lengths in the frames' unit), and :func:`compare_structures`.
Bonds default to a linear chain (``i``-``i + 1``); non-bonded pairs are all other
pairs. Functions of one set of positions also take a single frame ``(N, D)`` and then
drop the frame axis from their result.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from polyvae.frames import Frames, check_finite

__all__ = ["all_pairs", "chain_bonds", "pairwise_distances", "bond_lengths", "nonbonded_pairs"]
__all__ += ["min_nonbonded_distance", "radius_of_gyration", "StructureReport", "compare_structures"]

logger = logging.getLogger(__name__)

_CHUNK_ELEMENTS = 1 << 22  # float64 elements per temporary (T_chunk, P, D) block
OVERLAP_PERCENTILE = 1.0  # training percentile of min non-bonded distance that marks an overlap


def _positions(
    positions: Any, name: str = "positions", allow_single: bool = True, min_atoms: int = 2
) -> tuple[np.ndarray, bool]:
    """Validate coordinates; return float64 (T, N, D) and whether a single frame came."""
    if isinstance(positions, Frames):
        positions = positions.positions
    try:
        arr = np.asarray(positions)
    except ValueError:  # ragged lists
        arr = np.empty(0, dtype=object)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array of shape (T, N, D); got dtype {arr.dtype}")
    single = arr.ndim == 2 and allow_single
    if single:
        arr = arr[None]
    if arr.ndim != 3:
        expected = "(T, N, D) or (N, D)" if allow_single else "(T, N, D)"
        raise ValueError(f"{name} must have shape {expected}; got shape {arr.shape}")
    if arr.shape[2] not in (2, 3):
        raise ValueError(
            f"{name} must have D = 2 or 3 spatial dimensions (last axis); got D={arr.shape[2]}"
        )
    if arr.shape[1] < min_atoms or arr.shape[0] < 1:
        raise ValueError(
            f"{name} must hold at least one frame of at least {min_atoms} atoms; "
            f"got T={arr.shape[0]}, N={arr.shape[1]}"
        )
    arr = np.asarray(arr, dtype=np.float64)
    check_finite(arr, name)
    return arr, single


def _check_same_atoms(train: np.ndarray, generated: np.ndarray) -> None:
    for axis, what in ((1, "number of atoms"), (2, "dimension D")):
        if train.shape[axis] != generated.shape[axis]:
            raise ValueError(
                f"train_positions and generated_positions must have the same {what}; "
                f"got {train.shape[axis]} (train) and {generated.shape[axis]} (generated)"
            )


def _n_atoms(n_atoms: Any, minimum: int) -> int:
    if isinstance(n_atoms, bool) or not isinstance(n_atoms, (int, np.integer)):
        raise TypeError(f"n_atoms must be an int; got {type(n_atoms).__name__}")
    if n_atoms < minimum:
        raise ValueError(f"n_atoms must be at least {minimum}; got {n_atoms}")
    return int(n_atoms)


def _pairs(pairs: Any, n_atoms: int, name: str = "pairs") -> np.ndarray:
    """Validate an index-pair array against ``n_atoms``; return int64 (P, 2)."""
    arr = np.asarray(pairs)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (P, 2); got shape {arr.shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer atom indices; got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n_atoms:
        raise ValueError(
            f"{name} must index atoms 0 .. {n_atoms - 1}; "
            f"got indices from {arr.min()} to {arr.max()}"
        )
    same = np.flatnonzero(arr[:, 0] == arr[:, 1])
    if same.size:
        raise ValueError(
            f"{name} must join two different atoms (i != j); "
            f"row {same[0]} is {arr[same[0]].tolist()}"
        )
    return arr.astype(np.int64)


def _bonds(bonds: Any, n_atoms: int) -> np.ndarray:
    return chain_bonds(n_atoms) if bonds is None else _pairs(bonds, n_atoms, "bonds")


def all_pairs(n_atoms: int) -> np.ndarray:
    """All index pairs ``i < j`` of ``n_atoms`` atoms in row-major order.

    Returns
    -------
    ndarray (N (N - 1) / 2, 2), int64
        ``(0, 1), (0, 2), ..., (0, N - 1), (1, 2), ...``.
    """
    i, j = np.triu_indices(_n_atoms(n_atoms, 0), k=1)
    return np.stack([i, j], axis=1).astype(np.int64)


def chain_bonds(n_atoms: int) -> np.ndarray:
    """Bonds of a linear chain: ``(i, i + 1)`` for ``i = 0 .. N - 2``.

    Returns
    -------
    ndarray (N - 1, 2), int64
    """
    i = np.arange(_n_atoms(n_atoms, 1) - 1, dtype=np.int64)
    return np.stack([i, i + 1], axis=1)


def _distances(x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    out = np.empty((x.shape[0], pairs.shape[0]), dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // max(1, pairs.shape[0] * x.shape[2]))
    for start in range(0, x.shape[0], step):  # in blocks, to bound the (t, P, D) temporary
        block = x[start : start + step]
        diff = block[:, pairs[:, 0]] - block[:, pairs[:, 1]]
        out[start : start + step] = np.sqrt(np.einsum("tpd,tpd->tp", diff, diff))
    return out


def pairwise_distances(positions: Any, pairs: Any = None) -> np.ndarray:
    """Distances between atom pairs in every frame.

    Parameters
    ----------
    positions : array (T, N, D) or (N, D), length
    pairs : array (P, 2), int, optional
        Atom index pairs (``i != j``); default :func:`all_pairs`.

    Returns
    -------
    ndarray (T, P) or (P,) for a single frame, float64, length
    """
    x, single = _positions(positions)
    pairs = all_pairs(x.shape[1]) if pairs is None else _pairs(pairs, x.shape[1])
    d = _distances(x, pairs)
    return d[0] if single else d


def bond_lengths(positions: Any, bonds: Any = None) -> np.ndarray:
    """Bond lengths in every frame.

    Parameters
    ----------
    positions : array (T, N, D) or (N, D), length
    bonds : array (B, 2), int, optional
        Default :func:`chain_bonds`.

    Returns
    -------
    ndarray (T, B) or (B,) for a single frame, float64, length
    """
    x, single = _positions(positions)
    d = _distances(x, _bonds(bonds, x.shape[1]))
    return d[0] if single else d


def nonbonded_pairs(n_atoms: int, bonds: Any = None) -> np.ndarray:
    """All pairs ``i < j`` that are not bonds, in row-major order.

    Bond orientation does not matter; ``bonds`` defaults to :func:`chain_bonds`.

    Returns
    -------
    ndarray (P, 2), int64
    """
    pairs = all_pairs(n_atoms)
    bonds = _bonds(bonds, n_atoms)
    bonded = np.zeros((n_atoms, n_atoms), dtype=bool)
    bonded[bonds[:, 0], bonds[:, 1]] = True
    bonded[bonds[:, 1], bonds[:, 0]] = True
    return pairs[~bonded[pairs[:, 0], pairs[:, 1]]]


def min_nonbonded_distance(positions: Any, bonds: Any = None) -> np.ndarray | float:
    """Closest non-bonded contact in every frame.

    Parameters
    ----------
    positions : array (T, N, D) or (N, D), length
    bonds : array (B, 2), int, optional
        Excluded pairs; default :func:`chain_bonds`.

    Returns
    -------
    ndarray (T,) or float for a single frame, length
    """
    x, single = _positions(positions)
    pairs = nonbonded_pairs(x.shape[1], bonds)
    if pairs.shape[0] == 0:
        raise ValueError(f"bonds leave no non-bonded pairs among the N={x.shape[1]} atoms")
    d = _distances(x, pairs).min(axis=1)
    return float(d[0]) if single else d


def radius_of_gyration(positions: Any, masses: Any = None):
    """Mass-weighted radius of gyration about the mass-weighted centre of mass.

    ``Rg = sqrt(sum_i m_i |r_i - r_com|^2 / sum_i m_i)``. NumPy input gives NumPy
    output (float64); a JAX array (also a tracer inside ``jax.jit`` or ``jax.grad``)
    gives a JAX array in its own dtype (jax is only consulted if already imported,
    which a JAX argument implies). The square root is guarded so that the gradient is
    finite everywhere, zero where all atoms coincide.

    Parameters
    ----------
    positions : array (T, N, D) or (N, D), length
    masses : array (N,), optional
        Positive masses; default equal masses (the masses of a :class:`Frames`).

    Returns
    -------
    array (T,) or scalar for a single frame, length
    """
    if isinstance(positions, Frames):
        masses = positions.masses if masses is None else masses
        positions = positions.positions
    jax = sys.modules.get("jax")
    use_jax = jax is not None and any(isinstance(a, jax.Array) for a in (positions, masses))
    if use_jax:  # shapes only: values of tracers cannot be checked
        xp, x = jax.numpy, jax.numpy.asarray(positions) * 1.0  # * 1.0: ints to floats
        if x.ndim not in (2, 3) or x.shape[-1] not in (2, 3) or x.shape[-2] < 1:
            raise ValueError(
                f"positions must have shape (T, N, D) or (N, D), D = 2 or 3; got {x.shape}"
            )
    else:
        xp, (x, single) = np, _positions(positions, min_atoms=1)
        x = x[0] if single else x
    n = x.shape[-2]
    if masses is None:
        w = xp.full((n,), 1.0 / n, dtype=x.dtype)
    else:
        m = xp.asarray(masses, dtype=x.dtype)
        if m.shape != (n,):
            raise ValueError(f"masses must have shape (N,) = ({n},); got {m.shape}")
        if not use_jax and (not np.all(np.isfinite(m)) or np.any(m <= 0)):
            raise ValueError(f"masses must be finite and positive; got min={m.min():g}")
        w = m / xp.sum(m)
    com = xp.sum(w[:, None] * x, axis=-2, keepdims=True)
    msd = xp.sum(w * xp.sum((x - com) ** 2, axis=-1), axis=-1)
    positive = msd > 0
    rg = xp.where(positive, xp.sqrt(xp.where(positive, msd, 1.0)), 0.0)
    return rg if use_jax else rg[()]


def _summary(values: np.ndarray) -> dict[str, float]:
    q = np.percentile(values, [0, 1, 5, 50, 95, 99, 100]).tolist()
    names = ("min", "p01", "p05", "p50", "p95", "p99", "max")
    return {
        "n_frames": int(values.size),
        "mean": float(values.mean()),
        **dict(zip(names, q, strict=True)),
    }


_SCALARS = ("bond_mean_train", "bond_std_train", "bond_mean_generated", "bond_std_generated")
_SCALARS += ("bond_w1", "overlap_fraction_generated")


@dataclass
class StructureReport:
    """Bond-length and overlap statistics of generated versus training frames.

    Attributes
    ----------
    bond_mean_train, bond_std_train, bond_mean_generated, bond_std_generated : float, length
        Mean and standard deviation of the pooled bond lengths of each set.
    bond_w1 : float, length
        Wasserstein-1 distance between the pooled bond-length distributions.
    min_nonbonded_train, min_nonbonded_generated : ndarray (T_train,), (T_gen,), length
        Closest non-bonded contact of each frame.
    overlap_fraction_generated : float
        Fraction of generated frames whose closest non-bonded contact is below the
        1st percentile of ``min_nonbonded_train`` (:attr:`overlap_threshold`).
    """

    bond_mean_train: float
    bond_std_train: float
    bond_mean_generated: float
    bond_std_generated: float
    bond_w1: float
    min_nonbonded_train: np.ndarray
    min_nonbonded_generated: np.ndarray
    overlap_fraction_generated: float

    @property
    def overlap_threshold(self) -> float:
        """The training percentile (length) that defines an overlap."""
        return float(np.percentile(self.min_nonbonded_train, OVERLAP_PERCENTILE))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: floats, and percentiles in place of the per-frame arrays."""
        out = {k: float(getattr(self, k)) for k in _SCALARS}
        out["overlap_threshold"] = self.overlap_threshold
        for k in ("min_nonbonded_train", "min_nonbonded_generated"):
            out[k] = _summary(np.asarray(getattr(self, k)))
        return out


def compare_structures(
    train_positions: Any, generated_positions: Any, bonds: Any = None
) -> StructureReport:
    """Compare bond lengths and close contacts of generated frames with training frames.

    Parameters
    ----------
    train_positions : array (T_train, N, D), length
    generated_positions : array (T_gen, N, D), length
        Same N and D as the training frames.
    bonds : array (B, 2), int, optional
        Default :func:`chain_bonds`.

    Returns
    -------
    StructureReport
    """
    train, _ = _positions(train_positions, "train_positions", allow_single=False, min_atoms=3)
    gen, _ = _positions(generated_positions, "generated_positions", allow_single=False, min_atoms=3)
    _check_same_atoms(train, gen)
    bonds = _bonds(bonds, train.shape[1])
    if bonds.shape[0] == 0:
        raise ValueError("bonds must hold at least one bond; got an empty array")
    b_train = _distances(train, bonds).ravel()
    b_gen = _distances(gen, bonds).ravel()
    mn_train = min_nonbonded_distance(train, bonds)
    mn_gen = min_nonbonded_distance(gen, bonds)
    threshold = np.percentile(mn_train, OVERLAP_PERCENTILE)
    overlap = float(np.mean(mn_gen < threshold))
    logger.debug("compare_structures: overlap threshold %.4g, fraction %.4g", threshold, overlap)
    return StructureReport(
        bond_mean_train=float(b_train.mean()),
        bond_std_train=float(b_train.std()),
        bond_mean_generated=float(b_gen.mean()),
        bond_std_generated=float(b_gen.std()),
        bond_w1=float(wasserstein_distance(b_train, b_gen)),
        min_nonbonded_train=mn_train,
        min_nonbonded_generated=mn_gen,
        overlap_fraction_generated=overlap,
    )
