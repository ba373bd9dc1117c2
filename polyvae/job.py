"""The main job: train on a trajectory and write every output to one results folder.

``run_job(frames, out_dir)`` writes::

    model.polyvae         the trained model (safe model file)
    latent.npz            latent CVs of the training frames: latent, latent_std, times
    generated.npz         generated conformations: positions (n, N, D), aligned frame
    marginals.json        per-pair Wasserstein-1 figures, training vs generated
    optimized.npz         latent-space Rg minimization: positions (best first), objective, z
    summary.json          the headline figures of all of the above
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

from polyvae.analysis.marginals import distance_marginals
from polyvae.analysis.optimize import optimize_latent
from polyvae.analysis.structure import (
    compare_structures,
    min_nonbonded_distance,
    radius_of_gyration,
)
from polyvae.frames import Frames
from polyvae.training import train
from polyvae.vae import VAEModel

__all__ = ["run_job", "write_marginals", "DEFAULT_DATA"]

logger = logging.getLogger(__name__)

# the bundled 2D bead-spring polymer, package data (a pathlib.Path for an installed package)
DEFAULT_DATA = resources.files("polyvae") / "data" / "polymer2d.npz"


def _validity(model: VAEModel, positions: np.ndarray) -> dict | None:
    report = model.check_structures(positions)
    return None if report is None else report.to_dict()


def _savefig(ax, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = np.ravel(ax)[0].figure
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _figure(ncols: int = 1, size=(5.0, 4.0)):
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
) -> dict:
    """Generate ``n`` frames, compare their distance marginals with ``frames``, write results.

    Writes ``marginals.json``, ``marginals.png`` and ``overlay.png`` to ``out_dir``.

    Returns
    -------
    dict
        The marginals' figures (as in ``marginals.json``).
    """
    from polyvae import plotting

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_pos = model.pipeline.align_frames(frames)
    generated = model.generate(n, seed=seed)
    marg = distance_marginals(train_pos, generated, unit=model.unit)
    report = compare_structures(train_pos, generated)
    result = {**marg.to_dict(), "n_generated": n, "structure": report.to_dict()}
    (out / "marginals.json").write_text(json.dumps(result, indent=2))
    _savefig(plotting.plot_marginals(marg, axes=_figure(4, (3.6, 3.2))), out / "marginals.png")
    _savefig(plotting.plot_overlay(train_pos, generated, axes=_figure(2)), out / "overlay.png")
    return result


def run_job(
    frames: Frames,
    out_dir: str | os.PathLike,
    *,
    n_generate: int = 2048,
    generate_seed: int = 1,
    progress: bool = True,
    **train_kwargs: Any,
) -> dict:
    """Train a VAE on ``frames`` and write model, CVs, samples, marginals and plots.

    Parameters
    ----------
    frames : Frames
    out_dir : path
        Results folder (created).
    n_generate : int
        Conformations to generate for the marginals.
    generate_seed : int
        Seed of the generated conformations.
    progress : bool
        Show progress bars.
    **train_kwargs
        Passed to :func:`polyvae.train` (latent_dim, epochs, seed, ...).

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    from polyvae import plotting

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = train(frames, output=out / "model.polyvae", progress=progress, **train_kwargs)
    t_train = time.perf_counter() - t0

    latent, latent_std = model.encode(frames)
    np.savez(out / "latent.npz", latent=latent, latent_std=latent_std, times=frames.times)
    generated = model.generate(n_generate, seed=generate_seed)
    np.savez(out / "generated.npz", positions=generated)
    marg = write_marginals(model, frames, out, n=n_generate, seed=generate_seed)

    opt = optimize_latent(model, "rg")
    np.savez(out / "optimized.npz", positions=opt.positions, objective=opt.objective, z=opt.z)
    aligned = model.pipeline.align_frames(frames)
    rg_train = radius_of_gyration(aligned, model.pipeline.masses)
    most_compact = aligned[int(np.argmin(rg_train))]

    _savefig(plotting.plot_history(model.history, ax=_figure()), out / "loss.png")
    axes = _figure(2)
    plotting.plot_latent(latent, ax=axes[0], color_by=rg_train)
    axes[0].set_title(f"latent CVs (colour: Rg / {model.unit})")
    plotting.plot_latent(latent, ax=axes[1], density=True)
    _savefig(axes, out / "latent.png")
    axes = _figure(2)
    plotting.plot_optimization(opt.trace[:8], ax=axes[0])
    plotting.plot_structures(
        {"optimized (lowest Rg)": opt.positions[0], "most compact training frame": most_compact},
        ax=axes[1],
    )
    _savefig(axes, out / "optimization.png")

    summary = {
        "data": frames.metadata.get("source", "frames"),
        "n_frames": frames.n_frames,
        "n_atoms": frames.n_atoms,
        "dim": frames.dim,
        "unit": model.unit,
        "model": model.config.to_dict(),
        "train": model.train_config.to_dict(),
        "train_seconds": round(t_train, 2),
        "final_train_elbo": model.history["train_elbo"][-1],
        "final_val_elbo": model.history.get("val_elbo", [None])[-1],
        "mean_w1_normalized": marg["mean_w1_normalized"],
        "bond_w1": marg["structure"]["bond_w1"],
        "rg_optimized": float(opt.objective[0]),
        "rg_training_min": float(rg_train.min()),
        "min_nonbonded_optimized": float(min_nonbonded_distance(opt.positions[0])),
        "min_nonbonded_training_p01": model.train_stats.min_nonbonded_p01,
        "validity_generated": _validity(model, generated),
        "validity_optimized": _validity(model, opt.positions[:1]),
        "files": sorted(p.name for p in out.iterdir()) + ["summary.json"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    logger.info("results written to %s", out)
    return summary
