"""Toy data: a two-component 1D Gaussian mixture, as raw values and as one-hot classes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from polyvae._checks import ensure_int, ensure_onehot

MIXTURE_WEIGHTS = (0.5, 0.5)
MIXTURE_MEANS = (-1.0, 1.0)
MIXTURE_STDS = (0.5, 0.25)
TOYS = ("discrete", "regression")
REGRESSION_SIGMA = 0.1


def mixture_samples(n: int = 1024, seed: int = 0) -> np.ndarray:
    """Seeded samples of the two-component 1D Gaussian mixture.

    Parameters
    ----------
    n : int
        Number of samples (>= 1).
    seed : int
        Seed of a ``numpy.random.default_rng`` (>= 0).

    Returns
    -------
    ndarray (n,), float64
    """
    ensure_int(n, "n", 1)
    ensure_int(seed, "seed", 0)
    rng = np.random.default_rng(seed)
    component = rng.choice(len(MIXTURE_WEIGHTS), size=n, p=MIXTURE_WEIGHTS)
    means = np.asarray(MIXTURE_MEANS)[component]
    stds = np.asarray(MIXTURE_STDS)[component]
    return means + stds * rng.standard_normal(n)


def mixture_density(x: Any) -> np.ndarray:
    """Probability density of the mixture at points ``x`` (any shape), same shape."""
    x = np.asarray(x, dtype=np.float64)
    total = np.zeros_like(x)
    for w, m, s in zip(MIXTURE_WEIGHTS, MIXTURE_MEANS, MIXTURE_STDS, strict=True):
        total += w * np.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2.0 * math.pi))
    return total


def discrete_toy(
    n: int = 1024, n_classes: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mixture samples binned into equal-width classes and one-hot encoded.

    The ``n_classes`` bins split ``[min(x), max(x)]`` of the samples themselves into
    equal widths; the largest sample goes into the last class.

    Parameters
    ----------
    n : int
        Number of samples (>= 2, so that the range has a width).
    n_classes : int
        Number of classes C (>= 2).
    seed : int
        Seed of the samples (see :func:`mixture_samples`).

    Returns
    -------
    onehot : ndarray (n, C), float32
        One row per sample with a single 1 at its class.
    bin_edges : ndarray (C + 1,), float64
        Class boundaries in the units of x.
    """
    ensure_int(n, "n", 2)
    ensure_int(n_classes, "n_classes", 2)
    x = mixture_samples(n, seed)
    edges = np.linspace(x.min(), x.max(), n_classes + 1)
    classes = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n_classes - 1)
    return np.eye(n_classes, dtype=np.float32)[classes], edges


def regression_toy(n: int = 1024, seed: int = 0) -> np.ndarray:
    """The raw mixture samples as a feature matrix for the 1D regression case.

    Returns
    -------
    ndarray (n, 1), float32
        The same values as ``mixture_samples(n, seed)``; not standardized.
    """
    return mixture_samples(n, seed)[:, None].astype(np.float32)


def check_onehot(onehot: Any, n_classes: int | None = None, name: str = "onehot") -> np.ndarray:
    """Validate one-hot rows for the categorical likelihood.

    Parameters
    ----------
    onehot : array (T, C)
        Every row must hold only zeros and ones and sum to 1.
    n_classes : int, optional
        The class count the rows must have (e.g. the model's ``n_features``).
    name : str
        Argument name used in error messages.

    Returns
    -------
    ndarray (T, C), float32

    Raises
    ------
    ValueError
        Wrong shape, a class count other than ``n_classes``, or a row that is not
        one-hot (the first such row is named).
    """
    x = np.asarray(onehot, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 2:
        raise ValueError(f"{name} must have shape (T, C) with T >= 1 and C >= 2; got {x.shape}")
    return ensure_onehot(x, name, n_classes)


def _regression_data(x: Any, name: str = "x") -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != 1 or arr.shape[0] < 2:
        raise ValueError(f"{name} must have shape (n,) or (n, 1) with n >= 2; got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr
