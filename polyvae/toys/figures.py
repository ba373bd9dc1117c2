"""Figures of the toy cases (PNG files; figures are closed after saving)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polyvae._outputs import savefig
from polyvae.plotting import plot_history
from polyvae.toys.data import mixture_density
from polyvae.toys.metrics import class_probabilities
from polyvae.vae import VAEModel


def _save(fig, path: Path) -> str:
    # heavy: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    fig.tight_layout()
    savefig(fig, path, dpi=120)
    plt.close(fig)
    return path.name


def _save_loss_figure(model: VAEModel, out: Path) -> str:
    # heavy: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    plot_history(model.history, ax=ax)
    # the first epochs' loss is far above the rest; keep the later plateau readable
    h = model.history
    skip = len(h["train_elbo"]) // 50
    curves = [-np.asarray(h["train_elbo"][skip:])] + [
        np.asarray(h[k][skip:])
        for k in ("train_recon", "train_kl", "val_recon", "val_kl")
        if k in h
    ]
    if "val_elbo" in h:
        curves.append(-np.asarray(h["val_elbo"][skip:]))
    lo, hi = min(c.min() for c in curves), max(c.max() for c in curves)
    pad = 0.05 * max(hi - lo, 1e-6)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_title(f"training history (beta = {model.config.beta:g})")
    return _save(fig, out / "loss.png")


def _discrete_figures(
    model: VAEModel, onehot: np.ndarray, edges: np.ndarray, metrics: dict, out: Path, seed: int
) -> list[str]:
    # heavy: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    n, n_classes = onehot.shape
    centers = 0.5 * (edges[:-1] + edges[1:])
    width = edges[1] - edges[0]
    drawn = model.generate(n, seed=seed)  # one-hot classes drawn from p(x|z)
    probs = model.generate(n, seed=seed, mean_only=True)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(centers, onehot.mean(axis=0), width=0.9 * width, color="0.75", label="training")
    ax.step(centers, drawn.mean(axis=0), where="mid", color="C1", label=f"VAE samples ({n})")
    ax.plot(centers, probs.mean(axis=0), "o", ms=3, color="C0", label="mean decoded p(class|z)")
    ax.set_xlabel("x (class centre)")
    ax.set_ylabel("class frequency")
    ax.set_title(f"beta = {model.config.beta:g}: TV distance {metrics['tv_distance']:.3f}")
    ax.legend()
    files = [_save(fig, out / "class_histograms.png")]

    row = 0
    true_class = int(onehot[row].argmax())
    mean, _ = model.encode(onehot[row : row + 1])
    decoded = class_probabilities(model, mean)[0]
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ["C3" if c == true_class else "C0" for c in range(n_classes)]
    ax.bar(np.arange(n_classes), decoded, color=colors)
    ax.axvline(true_class, color="C3", ls="--", lw=1, label=f"true class {true_class}")
    ax.set_xlabel("class")
    ax.set_ylabel("decoded probability")
    ax.set_title(
        f"reconstruction of training row {row} (z = {float(mean[0, 0]):.2f}); "
        f"accuracy {metrics['reconstruction_accuracy']:.2f}"
    )
    ax.legend()
    files.append(_save(fig, out / "reconstruction.png"))
    return files


def _regression_figures(
    model: VAEModel, x: np.ndarray, metrics: dict, out: Path, seed: int
) -> list[str]:
    # heavy: loaded only when a figure is drawn
    import matplotlib.pyplot as plt

    values = x[:, 0]
    samples = model.generate(len(values), seed=seed)[:, 0]
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(min(values.min(), samples.min()), max(values.max(), samples.max()), 50)
    ax.hist(values, bins=bins, density=True, color="0.75", label="training")
    ax.hist(samples, bins=bins, density=True, histtype="step", color="C1", label="VAE samples")
    grid = np.linspace(bins[0], bins[-1], 400)
    ax.plot(grid, mixture_density(grid), color="k", lw=1, label="true density")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title(f"W1 = {metrics['w1_over_std']:.3f} training std")
    ax.legend()
    files = [_save(fig, out / "histograms.png")]

    mean, _ = model.encode(x)
    decoded = model.decode(mean)[:, 0]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(values, decoded, ".", ms=2, alpha=0.5, color="C0")
    lims = [float(values.min()), float(values.max())]
    ax.plot(lims, lims, "k--", lw=1, label="identity")
    ax.set_xlabel("x")
    ax.set_ylabel("decoded mean at the encoder mean")
    ax.set_title(f"Pearson r = {metrics['pearson_r']:.4f}")
    ax.legend()
    files.append(_save(fig, out / "decoded_mean.png"))
    return files
