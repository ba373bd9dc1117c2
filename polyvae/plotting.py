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
from polyvae.measures.marginals import Marginals

__all__ = ["plot_history", "plot_latent", "plot_conformations", "plot_overlay"]
__all__ += ["plot_marginals", "plot_marginal_map", "plot_marginals_overview"]
__all__ += ["plot_optimization", "plot_structures", "plot_fes"]

logger = logging.getLogger(__name__)


def _subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    # heavy: loaded only when a figure is drawn
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
        ``val_recon``, ``val_kl`` and ``val_elbo``; ``best_epoch`` (int), the best
        validation epoch, is marked.
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
    best = history.get("best_epoch")
    if best is not None:
        kept = history.get("kept_epoch")
        how = ", kept" if kept == best else (f"; epoch {kept} kept" if kept else "")
        ax.axvline(best, color="0.4", lw=0.8, ls=":", label=f"best validation epoch {best}{how}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats/frame)")
    ax.legend(loc="best", ncols=2, fontsize="small")
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


def _rows(marginals: Marginals, pairs) -> list[int]:
    rows = []
    for i, j in np.asarray(pairs).reshape(-1, 2).tolist():
        try:
            rows.append(marginals.index(i, j))
        except KeyError as exc:
            raise ValueError(f"pairs: {exc.args[0]}") from None
    return rows


def _bond_rows(marginals: Marginals, bonds) -> list[int]:
    """Rows of the bonded pairs (default: a chain in atom order) present in the marginals."""
    if bonds is None:
        n = int(marginals.pairs.max()) + 1
        bonds = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)
    arr = np.asarray(bonds)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"bonds must have shape (B, 2); got shape {arr.shape}")
    rows = []
    for i, j in arr.tolist():
        try:
            rows.append(marginals.index(i, j))
        except KeyError:
            continue
    return rows


def _by_w1(marginals: Marginals, rows) -> list[int]:
    """Rows sorted by normalized W1, largest first (NaN last)."""
    key = np.nan_to_num(marginals.w1_normalized[list(rows)], nan=-np.inf)
    return [rows[k] for k in np.argsort(-key, kind="stable")]


def _default_pairs(marginals: Marginals, max_panels: int, bonds=None) -> list[int]:
    """The worst pairs (half the panels), then the worst bonded pairs."""
    n_worst = max(1, max_panels // 2)
    worst = _by_w1(marginals, list(range(marginals.n_pairs)))[:n_worst]
    bonded = [r for r in _by_w1(marginals, _bond_rows(marginals, bonds)) if r not in worst]
    rows = worst + bonded[: max_panels - len(worst)]
    rest = [r for r in _by_w1(marginals, list(range(marginals.n_pairs))) if r not in rows]
    return (rows + rest)[:max_panels]


def _draw_marginal(ax, marginals: Marginals, k: int, tag: str = "") -> None:
    edges = marginals.bin_edges[k]
    for hist, label in (
        (marginals.train_hist[k], "training"),
        (marginals.generated_hist[k], "generated"),
    ):
        ax.plot(edges, np.append(hist, hist[-1]), drawstyle="steps-post", label=label)
    i, j = marginals.pairs[k]
    unit = f" ({marginals.unit})" if marginals.unit else ""
    ax.set_title(f"{tag}({i}, {j})  W1/σ = {marginals.w1_normalized[k]:.3g}", fontsize=9)
    ax.set_xlabel(f"distance{unit}")
    ax.set_ylabel("density")


def plot_marginals(
    marginals: Marginals, axes=None, pairs: Any = None, max_panels: int = 8, bonds: Any = None
):
    """One panel per pair: training and generated distance histograms as steps.

    Parameters
    ----------
    marginals : Marginals
    axes : array of matplotlib Axes, optional
        At least as many as panels drawn.
    pairs : sequence of (i, j), optional
        Pairs to show; default the pairs with the largest W1/σ (half the panels), then
        the bonded pairs with the largest W1/σ.
    max_panels : int
        Most panels drawn.
    bonds : array (B, 2), optional
        The bonded pairs for the default choice (default: a chain in atom order).

    Returns
    -------
    ndarray (n_panels,) of matplotlib Axes
    """
    if not isinstance(marginals, Marginals):
        raise TypeError(f"marginals must be a Marginals; got {type(marginals).__name__}")
    max_panels = ensure_int(max_panels, "max_panels", 1)
    if pairs is None:
        rows = _default_pairs(marginals, max_panels, bonds)
    else:
        arr = np.asarray(pairs)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"pairs must have shape (P, 2); got shape {arr.shape}")
        rows = _rows(marginals, arr)[:max_panels]
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
    bonded = set(_bond_rows(marginals, bonds))
    for ax, k in zip(all_axes[:n], rows, strict=True):
        _draw_marginal(ax, marginals, k, "bond " if k in bonded else "")
    all_axes[0].legend(fontsize=8)
    return all_axes[:n]


MAP_ATOMS = 256
"""Rows and columns of :func:`plot_marginal_map` at most: larger molecules are shown in
blocks of consecutive atoms."""


def _w1_grid(marginals: Marginals) -> tuple[np.ndarray, int]:
    """The symmetric map of W1/σ, one cell per atom pair, or per block of ``step``
    consecutive atoms (the mean over its pairs) above :data:`MAP_ATOMS` atoms."""
    n = int(marginals.pairs.max()) + 1
    step = -(-n // MAP_ATOMS)
    m = -(-n // step)
    i, j = marginals.pairs[:, 0] // step, marginals.pairs[:, 1] // step
    value = marginals.w1_normalized
    keep = ~np.isnan(value)
    cells = np.concatenate([i * m + j, j * m + i])[np.concatenate([keep, keep])]
    total = np.bincount(cells, np.concatenate([value[keep], value[keep]]), m * m)
    count = np.bincount(cells, minlength=m * m)
    grid = np.full(m * m, np.nan)
    grid[count > 0] = total[count > 0] / count[count > 0]
    return grid.reshape(m, m), step


def plot_marginal_map(marginals: Marginals, ax=None):
    """Every pair's W1/σ as an i-j map (symmetric), with the mean W1/σ written in it.

    Above :data:`MAP_ATOMS` atoms a cell is a block of consecutive atoms and shows the
    mean W1/σ of the pairs compared in it.

    Parameters
    ----------
    marginals : Marginals
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    if not isinstance(marginals, Marginals):
        raise TypeError(f"marginals must be a Marginals; got {type(marginals).__name__}")
    grid, step = _w1_grid(marginals)
    n = len(grid)
    ax = _new_ax(ax)
    image = ax.imshow(grid, cmap="magma_r", origin="upper", vmin=0)
    ax.figure.colorbar(image, ax=ax, label="W1 / σ (training std)")
    ticks = np.arange(n) if n <= 16 else np.arange(0, n, max(1, n // 8))
    ax.set_xticks(ticks, ticks * step)
    ax.set_yticks(ticks, ticks * step)
    block = "" if step == 1 else f" (blocks of {step})"
    ax.set_xlabel(f"atom j{block}")
    ax.set_ylabel(f"atom i{block}")
    which = f"all {marginals.n_pairs}"
    if marginals.n_pairs_total is not None:
        which = f"{marginals.n_pairs} sampled of {marginals.n_pairs_total}"
    ax.set_title(f"{which} pairs: mean W1/σ = {marginals.mean_w1_normalized:.3f}")
    return ax


def plot_marginals_overview(
    marginals: Marginals, bonds: Any = None, n_worst: int = 4, n_bonds: int = 4
):
    """A figure a reader can judge the marginals by: the W1/σ map of every pair with its
    mean, W1/σ of every bond, and the histograms of the worst pairs and the worst bonds.

    Parameters
    ----------
    marginals : Marginals
    bonds : array (B, 2), optional
        The bonded pairs (default: a chain in atom order).
    n_worst, n_bonds : int
        Histogram panels of the pairs and of the bonds with the largest W1/σ.

    Returns
    -------
    matplotlib Figure
    """
    # heavy: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    if not isinstance(marginals, Marginals):
        raise TypeError(f"marginals must be a Marginals; got {type(marginals).__name__}")
    n_worst = ensure_int(n_worst, "n_worst", 1)
    n_bonds = ensure_int(n_bonds, "n_bonds", 0)
    bond_rows = _bond_rows(marginals, bonds)
    worst = _by_w1(marginals, list(range(marginals.n_pairs)))[:n_worst]
    worst_bonds = [r for r in _by_w1(marginals, bond_rows) if r not in worst][:n_bonds]
    ncols = max(4, n_worst, len(worst_bonds))
    nrows = 2 + bool(worst_bonds)
    fig = plt.figure(figsize=(3.2 * ncols, 2.9 * nrows + 0.6), constrained_layout=True)
    gs = fig.add_gridspec(nrows, ncols, height_ratios=[1.5] + [1] * (nrows - 1))
    half = ncols // 2
    plot_marginal_map(marginals, fig.add_subplot(gs[0, :half]))
    ax = fig.add_subplot(gs[0, half:])
    if bond_rows:
        labels = [f"{a}-{b}" for a, b in marginals.pairs[bond_rows]]
        ax.bar(np.arange(len(bond_rows)), marginals.w1_normalized[bond_rows], color="C2")
        ax.set_xticks(np.arange(len(bond_rows)), labels, rotation=90, fontsize=7)
        ax.axhline(marginals.mean_w1_normalized, color="k", ls="--", lw=1, label="mean, all pairs")
        ax.legend(fontsize=8)
    ax.set_xlabel("bond")
    ax.set_ylabel("W1 / σ")
    ax.set_title(f"bonded pairs ({len(bond_rows)})")
    bonded = set(bond_rows)
    for c, k in enumerate(worst):
        ax = fig.add_subplot(gs[1, c])
        _draw_marginal(ax, marginals, k, f"#{c + 1} {'bond ' if k in bonded else ''}")
        if c == 0:
            ax.legend(fontsize=8)
    for c, k in enumerate(worst_bonds):
        _draw_marginal(fig.add_subplot(gs[2, c]), marginals, k, "bond ")
    fig.suptitle(
        "distance marginals, training vs generated. Row 2: the pairs with the highest W1/σ "
        "(W1 over the training std of that distance); row 3: the bonds with the highest "
        "W1/σ not shown above",
        fontsize=9,
    )
    return fig


def plot_optimization(
    trace: Any,
    ax=None,
    *,
    penalty: Any = None,
    round_starts: Any = None,
    weights: Any = None,
    unit: str | None = None,
    label: str = "objective",
    penalty_ax=None,
    kept: Any = None,
):
    """Objective versus optimization step, one line per start; optionally the constraint
    penalty (dashed, log scale, right axis) and the rounds of a growing penalty weight.

    Parameters
    ----------
    trace : array (S,) or (n_starts, S)
    ax : matplotlib Axes, optional
    penalty : array like ``trace``, optional
        The unweighted constraint penalty at every step.
    round_starts : array (R,) of int, optional
        First step of each penalty round: marked with a vertical line, since the
        objective may rise where a stiffer penalty pushes the structure back into range.
    weights : array (R,), optional
        Penalty weight of each round, written at its line.
    unit : str, optional
        Unit of the objective, for the axis label.
    label : str
        Name of the objective.
    penalty_ax : matplotlib Axes, optional
        Where to draw the penalty (log scale); default a right-hand axis on ``ax``.
    kept : array (n_starts,), optional
        For starts whose result is the start itself (it was valid and lower than where
        the path ended), its objective, drawn as a star after the last step; NaN for
        the others.

    Returns
    -------
    matplotlib Axes
    """
    tr = np.asarray(trace, dtype=np.float64)
    tr = tr[None] if tr.ndim == 1 else tr
    if tr.ndim != 2 or tr.shape[1] < 1:
        raise ValueError(f"trace must have shape (S,) or (n_starts, S); got {np.shape(trace)}")
    pen = None
    if penalty is not None:
        pen = np.asarray(penalty, dtype=np.float64)
        pen = pen[None] if pen.ndim == 1 else pen
        if pen.shape != tr.shape:
            raise ValueError(f"penalty must have the shape of trace {tr.shape}; got {pen.shape}")
    ax = _new_ax(ax)
    steps = np.arange(tr.shape[1])
    kept = np.full(tr.shape[0], np.nan) if kept is None else np.asarray(kept, np.float64)
    for k, row in enumerate(tr):
        ax.plot(steps, row, lw=1.0, color=f"C{k % 10}", label=f"start {k}")
        if np.isfinite(kept[k]):
            ax.plot([steps[-1] + 1], [kept[k]], "*", ms=9, color=f"C{k % 10}",
                    label=f"start {k} kept: valid, lower than its path")  # fmt: skip
    if 1 < tr.shape[0] <= 10:
        ax.legend(fontsize=7, loc="center right")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{label} ({unit})" if unit else label)
    marked = [ax]
    if pen is not None:
        own = penalty_ax is not None
        pax = penalty_ax if own else ax.twinx()
        floor = 1e-12
        for k, row in enumerate(pen):
            pax.plot(steps, np.maximum(row, floor), "-" if own else "--", lw=0.7,
                     color=f"C{k % 10}", alpha=0.8)  # fmt: skip
        pax.set_yscale("log")
        pax.set_ylabel("constraint penalty (0 drawn at 1e-12)")
        if own:
            pax.set_xlabel("step")
            pax.set_title(
                "penalty: squared violations of bond, angle and contact ranges\n"
                "(unweighted; spikes: steps that cross a range limit and come back)",
                fontsize=8,
            )
            marked.append(pax)
    if round_starts is not None:
        starts = np.asarray(round_starts).ravel()
        w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
        for r, s0 in enumerate(starts):
            if s0 > 0:
                for a in marked:
                    a.axvline(s0, color="0.5", lw=0.8, ls=":")
            if w is not None and r < w.size:
                ax.annotate(
                    f"w={w[r]:.0e}",
                    (s0, 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(2, -10),
                    textcoords="offset points",
                    fontsize=7,
                    color="0.3",
                )
        grows = "a stiffer penalty weight w each round"
        if w is not None and w.size > 1 and w[0] > 0:
            grows = f"penalty weight w x{w[1] / w[0]:g} each round"
        ax.set_title(
            f"rounds (dotted): {grows}; the objective may rise as\n"
            "structures are pushed back into range, and Adam restarts with a smaller step",
            fontsize=8,
        )
    return ax


def plot_structures(structures: Mapping[str, Any], ax=None, note: str | None = None):
    """Overlay of named single structures (first two coordinates) with a legend.

    Parameters
    ----------
    structures : dict of str to array (N, D), length
        E.g. ``{"optimized": x, "most compact training frame": y}``.
    ax : matplotlib Axes, optional
    note : str, optional
        Text written in the lower left corner (e.g. the structure's checks).

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
    ax.legend(fontsize=8, loc="upper right")
    if note:
        xy = np.concatenate([a[:, :2] for a in arrays.values()])
        lo, hi = xy[:, 1].min(), xy[:, 1].max()  # room below the structures for the note
        ax.update_datalim([(xy[0, 0], lo - 0.5 * (hi - lo))])
        ax.autoscale_view()
        ax.text(
            0.02,
            0.02,
            note,
            transform=ax.transAxes,
            fontsize=7.5,
            family="monospace",
            va="bottom",
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"},
        )
    return ax


def plot_fes(fes, ax=None, max_kt: float = 10.0):
    """A free-energy surface (:class:`~polyvae.analysis.fes.FreeEnergySurface`).

    1D: F with its block-averaging error as a band; 2D: filled contours of F up to
    ``max_kt`` kT with a colour bar. Energies in kJ/mol; the title states kT.

    Returns
    -------
    matplotlib Axes
    """
    ax = _new_ax(ax)
    f, err, kt = fes.free_energy, fes.error, fes.kt
    title = f"T = {fes.temperature:g} K, kT = {kt:.3f} kJ/mol, {fes.n_blocks} blocks"
    if f.ndim == 1:
        x = fes.centers[0]
        ok = np.isfinite(f)
        ax.plot(x[ok], f[ok], color="C0", label="F")
        lo, hi = f - err, f + err
        ax.fill_between(x[ok], lo[ok], hi[ok], color="C0", alpha=0.3, label="± block error")
        ax.set_xlabel("CV 1")
        ax.set_ylabel("F (kJ/mol)")
        ax.legend()
    else:
        x, y = fes.centers
        shown = np.where(np.isfinite(f) & (f <= max_kt * kt), f, np.nan)
        levels = np.linspace(0.0, max_kt * kt, int(2 * max_kt) + 1)  # every half kT
        cs = ax.contourf(x, y, shown.T, levels=levels, cmap="viridis")
        bar = ax.figure.colorbar(
            cs, ax=ax, label=f"F (kJ/mol), contours every kT/2 to {max_kt:g} kT"
        )
        bar.set_ticks(np.arange(0.0, max_kt + 1e-9, 2.0) * kt)
        bar.set_ticklabels([f"{v * kt:.1f} ({v:g} kT)" for v in np.arange(0.0, max_kt + 1e-9, 2.0)])
        ax.set_xlabel("CV 1")
        ax.set_ylabel("CV 2")
        title += "; white: not sampled or above the scale"
    ax.set_title(title, fontsize=9)
    return ax
