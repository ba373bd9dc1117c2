"""Free-energy surfaces of collective variables: F(s) = -kT ln p(s) on a grid.

The density p is a (weighted) histogram of the CV values, 1D or 2D. F is given in
kJ/mol, shifted so that its minimum is 0, and with it ``kT`` at the temperature given, so
a surface can be read in kT as well. Its statistical error comes from block averaging:
the frames are cut into ``n_blocks`` consecutive blocks (a trajectory's correlated
frames stay together), the probability of every bin is estimated in each block, and the
standard error of the mean probability becomes ``sigma_F = kT sigma_p / p``. Bins no frame
(or only zero weight) reached have F = inf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from polyvae._checks import ensure_int
from polyvae.measures.weights import (
    KB_KJ_PER_MOL_K,
    check_temperature,
    check_weights,
    effective_sample_size,
)

__all__ = ["FreeEnergySurface", "free_energy_surface"]


@dataclass
class FreeEnergySurface:
    """F(s) on a grid of one or two CVs.

    Attributes
    ----------
    edges : list of ndarray
        Bin edges per CV (``bins + 1`` each).
    free_energy : ndarray (bins,) or (bins, bins)
        F in kJ/mol, minimum 0; ``inf`` where no frame counts.
    error : ndarray, like ``free_energy``
        Block-averaging standard error of F in kJ/mol (NaN where F is inf).
    temperature : float
        Kelvin.
    kt : float
        kT in kJ/mol.
    n_blocks : int
    effective_sample_size : float
        Of the frame weights (the frame count without weights).
    """

    edges: list
    free_energy: np.ndarray
    error: np.ndarray
    temperature: float
    kt: float
    n_blocks: int
    effective_sample_size: float

    @property
    def centers(self) -> list:
        return [0.5 * (e[1:] + e[:-1]) for e in self.edges]

    @property
    def in_kt(self) -> np.ndarray:
        """F in units of kT."""
        return self.free_energy / self.kt

    def to_npz_dict(self) -> dict:
        out = {
            "free_energy": self.free_energy,
            "error": self.error,
            "temperature": np.float64(self.temperature),
            "kt": np.float64(self.kt),
            "n_blocks": np.int64(self.n_blocks),
            "effective_sample_size": np.float64(self.effective_sample_size),
        }
        for k, (e, c) in enumerate(zip(self.edges, self.centers, strict=True)):
            out[f"edges_{k}"], out[f"centers_{k}"] = e, c
        return out


def free_energy_surface(
    cv: Any,
    *,
    temperature: float,
    weights: Any = None,
    bins: int | None = None,
    ranges: Any = None,
    n_blocks: int = 5,
) -> FreeEnergySurface:
    """F(s) = -kT ln p(s) of CV values ``cv`` (T,) or (T, 1) or (T, 2).

    Parameters
    ----------
    cv : array (T,), (T, 1) or (T, 2)
        CV values of T frames in trajectory order (blocks are consecutive frames).
    temperature : float
        Kelvin (> 0).
    weights : array (T,), optional
        Frame weights, e.g. ``exp(V/kT)`` of a biased run (:mod:`polyvae.measures.weights`).
    bins : int, optional
        Bins per CV (>= 2). Default: about 10 frames of the effective sample size per
        bin of the grid, 10 to 100 bins per CV in 1D and 10 to 50 in 2D.
    ranges : sequence of (low, high), optional
        Grid range per CV; default the CV's range.
    n_blocks : int
        Blocks for the error estimate (>= 2; at most a tenth of the frames).
    """
    s = np.asarray(cv, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2 or s.shape[1] not in (1, 2):
        raise ValueError(f"cv must have shape (T,), (T, 1) or (T, 2); got {np.shape(cv)}")
    if not np.all(np.isfinite(s)):
        raise ValueError("cv must be finite; it holds NaN or inf")
    check_temperature(temperature)
    if bins is not None:
        ensure_int(bins, "bins", 2)
    ensure_int(n_blocks, "n_blocks", 2)
    n = s.shape[0]
    if n < 10 * n_blocks:
        raise ValueError(
            f"n_blocks={n_blocks} needs at least {10 * n_blocks} frames (10 per block); got {n}"
        )
    w = np.ones(n) if weights is None else check_weights(weights, n)
    if bins is None:
        per_bin = effective_sample_size(w) / 10.0
        bins = (
            int(np.clip(per_bin, 10, 100))
            if s.shape[1] == 1
            else int(np.clip(np.sqrt(per_bin), 10, 50))
        )
    if ranges is None:
        ranges = [(float(c.min()), float(c.max())) for c in s.T]
    ranges = [tuple(map(float, r)) for r in ranges]
    if weights is None and len(ranges) == s.shape[1] and any(lo == hi for lo, hi in ranges):
        raise ValueError("cv does not vary over the frames: there is no surface to estimate")
    if len(ranges) != s.shape[1] or any(not hi > lo for lo, hi in ranges):
        raise ValueError(
            f"ranges must give (low, high) with high > low for each of the {s.shape[1]} CVs; "
            f"got {ranges}"
        )

    def density(rows):
        h, edges = np.histogramdd(s[rows], bins=bins, range=ranges, weights=w[rows])
        total = h.sum()
        return (h / total if total > 0 else np.full_like(h, np.nan)), edges

    p, edges = density(slice(None))
    blocks = np.array_split(np.arange(n), n_blocks)
    pb = np.stack([density(b)[0] for b in blocks])
    sigma_p = np.nanstd(pb, axis=0, ddof=1) / np.sqrt(n_blocks)
    kt = KB_KJ_PER_MOL_K * float(temperature)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = -kt * np.log(p)
        err = np.where(p > 0, kt * sigma_p / p, np.nan)
    f -= np.min(f[np.isfinite(f)])
    if s.shape[1] == 1:
        f, err = f.reshape(-1), err.reshape(-1)
    return FreeEnergySurface(
        list(edges), f, err, float(temperature), kt, int(n_blocks), effective_sample_size(w)
    )
