"""Structural checks on training and generated conformations.

Distances, bond lengths, closest non-bonded contacts and radii of gyration of
positions ``(T, N, D)`` (lengths in the frames' unit), and :func:`compare_structures`.
Bonds default to a linear chain (``i``-``i + 1``); non-bonded pairs are all other
pairs. Functions of one set of positions also take a single frame ``(N, D)`` and then
drop the frame axis from their result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyvae import geometry
from polyvae._checks import (
    ensure_frames,
    ensure_int,
    ensure_masses,
    ensure_pairs,
    ensure_same_atoms,
)
from polyvae.frames import Frames
from polyvae.measures.marginals import wasserstein_columns

__all__ = ["all_pairs", "chain_bonds", "pairwise_distances", "bond_lengths", "nonbonded_pairs"]
__all__ += ["min_nonbonded_distance", "radius_of_gyration", "StructureReport", "compare_structures"]

logger = logging.getLogger(__name__)

OVERLAP_PERCENTILE = 1.0  # training percentile of min non-bonded distance that marks an overlap


def _bonds(bonds: Any, n_atoms: int) -> np.ndarray:
    if bonds is None:
        return geometry.chain_bonds(n_atoms)
    return ensure_pairs(bonds, n_atoms, "bonds")


def all_pairs(n_atoms: int) -> np.ndarray:
    """All index pairs ``i < j`` of ``n_atoms`` atoms in row-major order.

    Returns
    -------
    ndarray (N (N - 1) / 2, 2), int64
        ``(0, 1), (0, 2), ..., (0, N - 1), (1, 2), ...``.
    """
    return geometry.all_pairs(ensure_int(n_atoms, "n_atoms", 0))


def chain_bonds(n_atoms: int) -> np.ndarray:
    """Bonds of a linear chain: ``(i, i + 1)`` for ``i = 0 .. N - 2``.

    Returns
    -------
    ndarray (N - 1, 2), int64
    """
    return geometry.chain_bonds(ensure_int(n_atoms, "n_atoms", 1))


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
    x, single = ensure_frames(positions)
    n = x.shape[1]
    pairs = geometry.all_pairs(n) if pairs is None else ensure_pairs(pairs, n)
    d = geometry.pair_distances(x, pairs)
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
    x, single = ensure_frames(positions)
    d = geometry.pair_distances(x, _bonds(bonds, x.shape[1]))
    return d[0] if single else d


def nonbonded_pairs(n_atoms: int, bonds: Any = None) -> np.ndarray:
    """All pairs ``i < j`` that are not bonds, in row-major order.

    Bond orientation does not matter; ``bonds`` defaults to :func:`chain_bonds`.

    Returns
    -------
    ndarray (P, 2), int64
    """
    n_atoms = ensure_int(n_atoms, "n_atoms", 0)
    return geometry.nonbonded_pairs(n_atoms, _bonds(bonds, n_atoms))


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
    x, single = ensure_frames(positions)
    d = _min_nonbonded(x, _bonds(bonds, x.shape[1]))
    return float(d[0]) if single else d


def _min_nonbonded(x: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """Closest non-bonded contact of each frame (T,), from a neighbour list (memory
    linear in N: :func:`polyvae.geometry.closest_contact`)."""
    n = x.shape[1]
    if n * (n - 1) // 2 <= len(np.unique(geometry.pair_codes(bonds, n))):
        raise ValueError(f"bonds leave no non-bonded pairs among the N={n} atoms")
    return geometry.closest_contact(x, bonds)


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
    xp = geometry.array_namespace(positions, masses)
    if xp is not np:  # shapes only: values of tracers cannot be checked
        x = xp.asarray(positions) * 1.0  # * 1.0: ints to floats
        if x.ndim not in (2, 3) or x.shape[-1] not in (2, 3) or x.shape[-2] < 1:
            raise ValueError(
                f"positions must have shape (T, N, D) or (N, D), D = 2 or 3; got {x.shape}"
            )
        n = x.shape[-2]
        if masses is None:
            w = xp.full((n,), 1.0 / n, dtype=x.dtype)
        else:
            m = xp.asarray(masses, dtype=x.dtype)
            if m.shape != (n,):
                raise ValueError(f"masses must have shape (N,) = ({n},); got {m.shape}")
            w = m / xp.sum(m)
        return geometry.radius_of_gyration(x, w)
    x, single = ensure_frames(positions, min_atoms=1)
    w = geometry.mass_weights(ensure_masses(masses, x.shape[1]), x.shape[1])
    rg = geometry.radius_of_gyration(x, w)
    return rg[0] if single else rg


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
    names = ("train_positions", "generated_positions")
    train, _ = ensure_frames(train_positions, names[0], allow_single=False, min_atoms=3)
    gen, _ = ensure_frames(generated_positions, names[1], allow_single=False, min_atoms=3)
    ensure_same_atoms(train, gen, names)
    bonds = _bonds(bonds, train.shape[1])
    if bonds.shape[0] == 0:
        raise ValueError("bonds must hold at least one bond; got an empty array")
    b_train = geometry.pair_distances(train, bonds).ravel()
    b_gen = geometry.pair_distances(gen, bonds).ravel()
    mn_train = _min_nonbonded(train, bonds)
    mn_gen = _min_nonbonded(gen, bonds)
    threshold = np.percentile(mn_train, OVERLAP_PERCENTILE)
    overlap = float(np.mean(mn_gen < threshold))
    logger.debug("compare_structures: overlap threshold %.4g, fraction %.4g", threshold, overlap)
    return StructureReport(
        bond_mean_train=float(b_train.mean()),
        bond_std_train=float(b_train.std()),
        bond_mean_generated=float(b_gen.mean()),
        bond_std_generated=float(b_gen.std()),
        bond_w1=float(wasserstein_columns(b_train[:, None], b_gen[:, None])[0]),
        min_nonbonded_train=mn_train,
        min_nonbonded_generated=mn_gen,
        overlap_fraction_generated=overlap,
    )
