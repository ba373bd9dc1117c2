"""Matplotlib figures for training histories, latent spaces, conformations and marginals.

Every function draws on the Axes it is given (``ax=`` or ``axes=``) and returns
them; only when none is given does it create a figure (``plt.subplots``). Nothing
is shown and no global matplotlib state is set: choose the backend, show or save
in the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from polyvae._checks import ensure_frames, ensure_int, ensure_same_atoms
from polyvae.analysis.marginals import Marginals

__all__ = ["plot_history", "plot_latent", "plot_conformations", "plot_overlay"]
__all__ += ["plot_marginals", "plot_optimization", "plot_structures"]

logger = logging.getLogger(__name__)


def _subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, squeeze=False, **kwargs)


def _new_ax(ax):
    return _subplots()[1][0, 0] if ax is None else ax


def _as_axes(axes, n: int) -> np.ndarray:
    arr = np.asarray(axes, dtype=object).ravel()
    if arr.size < n:
        raise ValueError(f"axes must hold at least {n} Axes; got {arr.size}")
    return arr


def plot_history(history: Mapping[str, Any], ax=None):
    """-ELBO, reconstruction and KL per epoch; validation dashed in the same colour.

    Parameters
    ----------
    history : dict of str to list of float
        ``train_recon``, ``train_kl`` and ``train_elbo`` per epoch (recon and KL are
        losses in nats/frame, ELBO the lower bound ``-(recon + kl)``), optionally
        ``val_recon``, ``val_kl`` and ``val_elbo``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    if not isinstance(history, Mapping):
        raise TypeError(f"history must be a dict of lists; got {type(history).__name__}")
    missing = [k for k in ("train_recon", "train_kl", "train_elbo") if k not in history]
    if missing:
        raise ValueError(f"history is missing key(s) {missing}; got keys {sorted(history)}")
    curves = []  # validate everything before a figure is made
    series = (("-ELBO", "elbo", "C0", -1.0), ("recon", "recon", "C1", 1.0), ("KL", "kl", "C2", 1.0))
    for label, key, color, sign in series:
        for split, style in (("train", "-"), ("val", "--")):
            name = f"{split}_{key}"
            if history.get(name) is not None:
                values = np.asarray(history[name], dtype=np.float64)
                if values.ndim != 1:
                    raise ValueError(f"history[{name!r}] must be a list; got shape {values.shape}")
                curves.append((sign * values, style, color, f"{split} {label}"))
    ax = _new_ax(ax)
    for values, style, color, label in curves:
        ax.plot(np.arange(1, values.size + 1), values, style, color=color, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats/frame)")
    ax.legend()
    return ax


def plot_latent(latent: Any, ax=None, color_by: Any = None, density: bool = False):
    """Latent codes: first two dimensions (or the only one against frame index).

    Parameters
    ----------
    latent : array (T, k) or (T,)
        Latent codes, e.g. encoder means.
    ax : matplotlib Axes, optional
    color_by : array (T,), optional
        Per-frame value shown as colour with a colorbar (ignored when ``density``).
    density : bool
        Draw a hexbin 2D histogram instead of points.

    Returns
    -------
    matplotlib Axes
    """
    z = np.asarray(latent, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"latent must have shape (T, k) with T, k >= 1; got shape {z.shape}")
    t = z.shape[0]
    c = None
    if color_by is not None:
        c = np.asarray(color_by, dtype=np.float64)
        if c.shape != (t,):
            raise ValueError(
                f"color_by must have shape (T,) = ({t},) to match latent; got {c.shape}"
            )
    ax = _new_ax(ax)
    if z.shape[1] == 1:
        x, y = np.arange(t), z[:, 0]
        ax.set_xlabel("frame")
        ax.set_ylabel("z1")
    else:
        x, y = z[:, 0], z[:, 1]
        ax.set_xlabel("z1")
        ax.set_ylabel("z2")
    if density:
        mappable = ax.hexbin(x, y, gridsize=40, mincnt=1, cmap="viridis")
        ax.figure.colorbar(mappable, ax=ax, label="frames")
    elif c is not None:
        mappable = ax.scatter(x, y, c=c, s=6, cmap="viridis")
        ax.figure.colorbar(mappable, ax=ax)
    elif z.shape[1] == 1:
        ax.plot(x, y, lw=0.8)
    else:
        ax.scatter(x, y, s=6, alpha=0.6)
    return ax


def _subsample(n: int, max_frames: int) -> np.ndarray:
    if n <= ensure_int(max_frames, "max_frames", 1):
        return np.arange(n)
    logger.debug("plotting %d of %d frames", max_frames, n)
    return np.unique(np.linspace(0, n - 1, max_frames).round().astype(int))


def plot_conformations(
    positions: Any, ax=None, max_frames: int = 200, color: Any = "C0", alpha: float | None = None
):
    """Overlay of bead chains (first two coordinates), one line per frame.

    Parameters
    ----------
    positions : array (T, N, D) or (N, D), length
    ax : matplotlib Axes, optional
    max_frames : int
        At most this many frames, evenly spaced, are drawn.
    color : matplotlib colour
    alpha : float, optional
        Line opacity; default scales down with the number of frames drawn.

    Returns
    -------
    matplotlib Axes
    """
    x, _ = ensure_frames(positions)
    idx = _subsample(x.shape[0], max_frames)
    if alpha is None:
        alpha = float(np.clip(10.0 / idx.size, 0.05, 1.0))
    ax = _new_ax(ax)
    for t in idx:
        ax.plot(x[t, :, 0], x[t, :, 1], "-o", color=color, alpha=alpha, lw=1.0, ms=2.5)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return ax


def plot_overlay(train_positions: Any, generated_positions: Any, axes=None, max_frames: int = 200):
    """Training and generated conformations side by side with the same axis limits.

    Parameters
    ----------
    train_positions : array (T_train, N, D), length
    generated_positions : array (T_gen, N, D), length
    axes : sequence of two matplotlib Axes, optional
    max_frames : int
        Frames drawn per panel at most.

    Returns
    -------
    ndarray (2,) of matplotlib Axes
    """
    names = ("train_positions", "generated_positions")
    train, _ = ensure_frames(train_positions, names[0])
    gen, _ = ensure_frames(generated_positions, names[1])
    ensure_same_atoms(train, gen, names)
    axes = _subplots(1, 2, figsize=(10, 5))[1].ravel() if axes is None else _as_axes(axes, 2)
    axes = axes[:2]
    plot_conformations(train, axes[0], max_frames=max_frames, color="C0")
    plot_conformations(gen, axes[1], max_frames=max_frames, color="C1")
    both = np.concatenate([train[..., :2].reshape(-1, 2), gen[..., :2].reshape(-1, 2)])
    lo, hi = both.min(axis=0), both.max(axis=0)
    pad = 0.05 * max(float((hi - lo).max()), 1e-12)
    for ax, title, n in zip(
        axes, ("training", "generated"), (train.shape[0], gen.shape[0]), strict=True
    ):
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        ax.set_title(f"{title} ({n} frames)")
    return axes


def _default_pairs(marginals: Marginals, max_panels: int) -> list[int]:
    rows = []
    for j in (1, 3, 5, 7):
        try:
            rows.append(marginals.index(0, j))
        except KeyError:
            continue
    return rows[:max_panels] if rows else list(range(min(max_panels, marginals.n_pairs)))


def plot_marginals(marginals: Marginals, axes=None, pairs: Any = None, max_panels: int = 8):
    """One panel per pair: training and generated distance histograms as steps.

    Parameters
    ----------
    marginals : Marginals
    axes : array of matplotlib Axes, optional
        At least as many as panels drawn.
    pairs : sequence of (i, j), optional
        Pairs to show; default ``(0, j)`` for ``j`` in 1, 3, 5, 7 where present,
        else the first ``max_panels`` pairs.
    max_panels : int
        Most panels drawn.

    Returns
    -------
    ndarray (n_panels,) of matplotlib Axes
    """
    if not isinstance(marginals, Marginals):
        raise TypeError(f"marginals must be a Marginals; got {type(marginals).__name__}")
    max_panels = ensure_int(max_panels, "max_panels", 1)
    if pairs is None:
        rows = _default_pairs(marginals, max_panels)
    else:
        arr = np.asarray(pairs)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"pairs must have shape (P, 2); got shape {arr.shape}")
        rows = []
        for i, j in arr.tolist():
            try:
                rows.append(marginals.index(i, j))
            except KeyError as exc:
                raise ValueError(f"pairs: {exc.args[0]}") from None
        rows = rows[:max_panels]
    n = len(rows)
    if axes is None:
        ncols = min(4, n)
        nrows = -(-n // ncols)
        size = (3.2 * ncols, 2.6 * nrows)
        _, grid = _subplots(nrows, ncols, figsize=size, constrained_layout=True)
        all_axes = grid.ravel()
        for ax in all_axes[n:]:
            ax.set_visible(False)
    else:
        all_axes = _as_axes(axes, n)
    unit = f" ({marginals.unit})" if marginals.unit else ""
    for ax, k in zip(all_axes[:n], rows, strict=True):
        edges = marginals.bin_edges[k]
        for hist, label in (
            (marginals.train_hist[k], "training"),
            (marginals.generated_hist[k], "generated"),
        ):
            ax.plot(edges, np.append(hist, hist[-1]), drawstyle="steps-post", label=label)
        i, j = marginals.pairs[k]
        ax.set_title(f"({i}, {j})  W1/σ = {marginals.w1_normalized[k]:.3g}")
        ax.set_xlabel(f"distance{unit}")
        ax.set_ylabel("density")
    all_axes[0].legend()
    return all_axes[:n]


def plot_optimization(trace: Any, ax=None):
    """Objective versus optimization step, one line per start.

    Parameters
    ----------
    trace : array (S,) or (n_starts, S)
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    tr = np.asarray(trace, dtype=np.float64)
    tr = tr[None] if tr.ndim == 1 else tr
    if tr.ndim != 2 or tr.shape[1] < 1:
        raise ValueError(f"trace must have shape (S,) or (n_starts, S); got {np.shape(trace)}")
    ax = _new_ax(ax)
    steps = np.arange(tr.shape[1])
    for k, row in enumerate(tr):
        ax.plot(steps, row, lw=1.0, label=f"start {k}")
    if 1 < tr.shape[0] <= 10:
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("objective")
    return ax


def plot_structures(structures: Mapping[str, Any], ax=None):
    """Overlay of named single structures (first two coordinates) with a legend.

    Parameters
    ----------
    structures : dict of str to array (N, D), length
        E.g. ``{"optimized": x, "most compact training frame": y}``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    if not isinstance(structures, Mapping):
        raise TypeError(
            f"structures must be a dict of name to (N, D) array; got {type(structures).__name__}"
        )
    if not structures:
        raise ValueError("structures must hold at least one structure; got an empty dict")
    arrays = {str(name): np.asarray(value, dtype=np.float64) for name, value in structures.items()}
    for name, arr in arrays.items():
        if arr.ndim != 2 or arr.shape[1] not in (2, 3):
            raise ValueError(
                f"structures[{name!r}] must have shape (N, D), D = 2 or 3; got {arr.shape}"
            )
    ax = _new_ax(ax)
    for k, (name, arr) in enumerate(arrays.items()):
        ax.plot(arr[:, 0], arr[:, 1], "-o", color=f"C{k % 10}", ms=5, lw=1.5, label=name)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend()
    return ax
