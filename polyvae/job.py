"""The main job: train on a trajectory and write every output to one results folder.

``run_job(frames, out_dir)`` writes::

    model.polyvae         the trained model (safe model file)
    latent.npz            latent CVs of the training frames: latent, latent_std, times
    generated.npz         generated conformations: positions (n, N, D), aligned frame
    marginals.json        per-pair Wasserstein-1 figures, training vs generated
    optimized.npz         latent-space Rg minimization: positions (valid first, best first),
                          objective, z, valid
    summary.json          the headline figures of all of the above; lengths as
                          {"value": ..., "unit": ...}
    *.png                 loss curves, latent space, overlays, marginals, optimization
"""

from __future__ import annotations

import json
import logging
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from polyvae import geometry, plotting
from polyvae._outputs import savefig, savez, write_text
from polyvae.analysis.optimize import optimize_latent
from polyvae.analysis.structure import compare_structures, radius_of_gyration
from polyvae.config import TrainSettings
from polyvae.frames import Frames
from polyvae.measures.marginals import distance_marginals
from polyvae.measures.weights import effective_sample_size
from polyvae.training.trainer import train, training_summary
from polyvae.vae import VAEModel

__all__ = ["run_job", "write_marginals", "DEFAULT_DATA", "OPTIMIZE_PERCENTILES"]

logger = logging.getLogger(__name__)

# the bundled 2D bead-spring polymer, package data (a pathlib.Path for an installed package)
DEFAULT_DATA = resources.files("polyvae") / "data" / "polymer2d.npz"


#: The percentile band of every bond and angle that the optimized structure must keep.
OPTIMIZE_PERCENTILES = (0.5, 99.5)


def _length(value: float, unit: str) -> dict:
    return {"value": float(value), "unit": unit}


def _optimize(model: VAEModel, frames: Frames):
    """Rg minimization under the model's checks (the stored band, if the file has it)."""
    checks = model.structure_checks
    if checks is None:
        logger.warning("the model has no structure checks: the optimized structure is unchecked")
        return optimize_latent(model, "rg", checks=None, start_frames=frames)
    band = OPTIMIZE_PERCENTILES if OPTIMIZE_PERCENTILES in checks.bands else None
    return optimize_latent(model, "rg", percentiles=band, start_frames=frames, require_valid=False)


def _closest_contact(positions: np.ndarray, checks) -> float:
    """The closest contact of one structure (N, D) among the pairs ``checks`` hold to
    their contact bound (more than ``checks.exclude`` bonds apart), from a neighbour list."""
    return float(geometry.closest_contact(positions, checks.bonds, checks.exclude))


def _check_note(opt, rg_train_min: float, unit: str) -> str:
    """The returned structure's checks, as lines of text for the figure."""
    lines = [f"Rg {opt.objective[0]:.3f} {unit} (most compact training {rg_train_min:.3f})"]
    if opt.noise is not None:
        lines.append(f"a model sample: decoder noise rms {opt.noise_rms[0]:.2f} (bound 1)")
    if opt.report is None:
        return "\n".join([*lines, "no structure checks in the model file"])
    c, r = opt.checks, opt.report
    lo, hi = c.percentiles
    band = f"{lo:g}-{hi:g} pct"
    closest = _closest_contact(opt.positions[0], c)

    def ok(flag):
        return "ok" if flag else "FAILED"

    lines += [
        f"bonds in training {band}: {ok(r.bonds_ok[0])}",
        f"angles in training {band}: {ok(r.angles_ok[0])}",
        f"contacts: {ok(r.contacts_ok[0])} (min {closest:.3f} vs training {c.min_contact:.3f})",
        "VALID" if r.valid[0] else "NOT VALID: no start gave a valid structure",
    ]
    return "\n".join(lines)


def _optimized_checks(opt, unit: str) -> dict | None:
    """The checks the returned (first) optimized structure was held to, and how it fares."""
    if opt.report is None:
        return None
    c, r = opt.checks, opt.report
    closest = _closest_contact(opt.positions[0], c)
    return {
        "percentiles": list(c.percentiles),
        "valid": bool(r.valid[0]),
        "bonds_ok": bool(r.bonds_ok[0]),
        "angles_ok": bool(r.angles_ok[0]),
        "contacts_ok": bool(r.contacts_ok[0]),
        "min_contact": _length(closest, unit),
        "min_contact_training": _length(c.min_contact, unit),
        "n_valid": int(opt.valid.sum()),
        "n_starts": int(len(opt.valid)),
    }


def _validity(model: VAEModel, positions: np.ndarray, what: str | None = None) -> dict | None:
    """The structure checks' report as a dict; with ``what``, a warning in the log when
    fewer than half of the structures pass, naming the check that fails most."""
    report = model.check_structures(positions)
    if report is None:
        return None
    warning = None if what is None else report.warning(what, "the model's checks")
    if warning:
        logger.warning("%s", warning)
    return report.to_dict()


def _savefig(ax, path: Path) -> None:
    # heavy: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    fig = np.ravel(ax)[0].figure
    fig.tight_layout()
    savefig(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _figure(ncols: int = 1, size=(5.0, 4.0)):
    # heavy: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(size[0] * ncols, size[1]), squeeze=False)
    return axes[0] if ncols > 1 else axes[0, 0]


def write_marginals(
    model: VAEModel,
    frames: Frames | Any,
    out_dir: str | os.PathLike,
    *,
    n: int = 2048,
    seed: int = 1,
    weights: Any = None,
) -> dict:
    """Generate ``n`` frames, compare their distance marginals with ``frames``, write results.

    ``weights`` (one per frame of ``frames``) make the training side a weighted ensemble
    (see :func:`~polyvae.measures.marginals.distance_marginals`).

    Writes ``marginals.json``, ``marginals.png`` and ``overlay.png`` to ``out_dir``.

    Returns
    -------
    dict
        The marginals' figures (as in ``marginals.json``).
    """

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_pos = model.pipeline.align_frames(frames)
    generated = model.generate(n, seed=seed)
    marg = distance_marginals(train_pos, generated, unit=model.unit, train_weights=weights)
    report = compare_structures(train_pos, generated)
    result = {**marg.to_dict(), "n_generated": n, "structure": report.to_dict()}
    if weights is not None:
        result["weights"] = {"effective_sample_size": effective_sample_size(weights)}
    write_text(out / "marginals.json", json.dumps(result, indent=2))
    fig = plotting.plot_marginals_overview(marg, bonds=model.bonds)
    savefig(fig, out / "marginals.png", dpi=110)
    # heavy: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    plt.close(fig)
    _savefig(plotting.plot_overlay(train_pos, generated, axes=_figure(2)), out / "overlay.png")
    return result


def run_job(
    frames: Frames,
    out_dir: str | os.PathLike,
    settings: TrainSettings | None = None,
    *,
    n_generate: int = 2048,
    generate_seed: int = 1,
    progress: bool = True,
    **options: Any,
) -> dict:
    """Train a VAE on ``frames`` and write model, CVs, samples, marginals and plots.

    Parameters
    ----------
    frames : Frames
    out_dir : path
        Results folder (created).
    settings : TrainSettings, optional
        What to train, as in :func:`polyvae.train` (default ``TrainSettings()``).
    n_generate : int
        Conformations to generate for the marginals.
    generate_seed : int
        Seed of the generated conformations.
    progress : bool
        Show progress bars.
    **options
        Other keywords of :func:`polyvae.train`: fields of
        :class:`~polyvae.config.TrainSettings` (latent_dim, epochs, seed, ...), which
        replace those of ``settings``, and ``weights`` or ``stream``.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = train(frames, settings, output=out / "model.polyvae", progress=progress, **options)
    t_train = time.perf_counter() - t0

    latent, latent_std = model.encode(frames)
    savez(out / "latent.npz", latent=latent, latent_std=latent_std, times=frames.times)
    generated = model.generate(n_generate, seed=generate_seed)
    savez(out / "generated.npz", positions=generated)
    marg = write_marginals(model, frames, out, n=n_generate, seed=generate_seed)

    opt = _optimize(model, frames)
    valid = np.ones(len(opt.objective), bool) if opt.valid is None else opt.valid
    savez(
        out / "optimized.npz",
        positions=opt.positions,
        objective=opt.objective,
        z=opt.z,
        valid=valid,
        **({} if opt.noise is None else {"noise": opt.noise}),
    )
    aligned = model.pipeline.align_frames(frames)
    rg_train = radius_of_gyration(aligned, model.pipeline.masses)
    most_compact = aligned[int(np.argmin(rg_train))]

    _savefig(plotting.plot_history(model.history, ax=_figure()), out / "loss.png")
    axes = _figure(2)
    plotting.plot_latent(latent, ax=axes[0], color_by=rg_train)
    axes[0].set_title(f"latent CVs (colour: Rg / {model.unit})")
    plotting.plot_latent(latent, ax=axes[1], density=True)
    _savefig(axes, out / "latent.png")
    axes = _figure(3, (5.0, 4.8))
    shown = slice(0, 4)  # the best starts; more lines hide each other
    plotting.plot_optimization(
        opt.trace[shown],
        ax=axes[0],
        penalty=None if opt.penalty_trace is None else opt.penalty_trace[shown],
        round_starts=opt.round_starts,
        weights=opt.weights if opt.checks is not None else None,
        unit=model.unit,
        label="Rg",
        penalty_ax=axes[1] if opt.penalty_trace is not None else None,
        kept=None
        if opt.kept_start is None
        else np.where(opt.kept_start[shown], opt.objective[shown], np.nan),
    )
    if opt.penalty_trace is None:
        axes[1].set_visible(False)
    name = "optimized (lowest Rg" + (", valid)" if valid[0] else ", NOT valid)")
    plotting.plot_structures(
        {name: opt.positions[0], "most compact training frame": most_compact},
        ax=axes[2],
        note=_check_note(opt, float(rg_train.min()), model.unit),
    )
    _savefig(axes, out / "optimization.png")
    if opt.valid is not None and not opt.valid[0]:
        logger.warning("no optimized structure passes the structure checks; see summary.json")

    summary = {
        "data": frames.metadata.get("source", "frames"),
        "n_frames": frames.n_frames,
        "n_atoms": frames.n_atoms,
        "dim": frames.dim,
        "unit": model.unit,
        "model": model.config.to_dict(),
        "train": model.train_config.to_dict(),
        "train_seconds": round(t_train, 2),
        # epochs run, best and kept epoch, their ELBOs, train/validation gap, overfitting
        "training": training_summary(model.history, model.train_config.patience),
        "mean_w1_normalized": marg["mean_w1_normalized"],
        "bond_w1": marg["structure"]["bond_w1"],
        "rg_optimized": _length(opt.objective[0], model.unit),
        "rg_training_min": _length(rg_train.min(), model.unit),
        "optimized_checks": _optimized_checks(opt, model.unit),
        # the optimized structure is the model's sample at z with this noise (rms <= 1)
        "optimized_noise_rms": None if opt.noise is None else float(opt.noise_rms[0]),
        "validity_generated": _validity(model, generated, "generated structures"),
        "validity_optimized": _validity(model, opt.positions[:1]),
        "files": sorted(p.name for p in out.iterdir()) + ["summary.json"],
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    logger.info("results written to %s", out)
    return summary
