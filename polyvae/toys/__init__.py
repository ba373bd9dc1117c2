"""Two toy validation cases of the method, trained with the package's own VAE code.

Both cases start from the same one-dimensional data: samples of a two-component
Gaussian mixture (weights 1/2 and 1/2, means -1 and 1, standard deviations 0.5 and
0.25).

Discrete case
    The samples are binned into ``n_classes`` equal-width classes spanning the sample
    range and one-hot encoded; the VAE uses the categorical likelihood. At ``beta = 1``
    the KL term dominates: the encoder returns the prior N(0, 1) for every row (the
    latent carries no information about x) and the decoder alone reproduces the
    class histogram. A smaller ``beta`` (e.g. 0.2) makes storing x in the latent
    worth its KL cost: the encoder becomes narrow and rows are reconstructed.

Regression case
    The raw samples, shape (n, 1), with no standardization, fitted with a Gaussian
    likelihood whose sigma is fixed (0.1, in the units of x) or learned. The decoded
    mean of each encoding should track x, and samples of the model (decoder noise
    included) should follow the training distribution.

:func:`run_toy` trains one case, computes its metrics and optionally writes figures
and a ``summary.json``. Training goes through :func:`polyvae.fit`, the same code that
trains models on trajectories, with each case's :class:`~polyvae.config.TrainSettings`
(:data:`polyvae.toys.training.DISCRETE`, :data:`polyvae.toys.training.REGRESSION`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from polyvae._checks import ensure_int
from polyvae._outputs import write_text
from polyvae.toys.data import (
    MIXTURE_MEANS,
    MIXTURE_STDS,
    MIXTURE_WEIGHTS,
    REGRESSION_SIGMA,
    TOYS,
    check_onehot,
    discrete_toy,
    mixture_density,
    mixture_samples,
    regression_toy,
)
from polyvae.toys.figures import _discrete_figures, _regression_figures, _save_loss_figure
from polyvae.toys.metrics import (
    class_histogram_tv,
    class_probabilities,
    encoder_moments,
    reconstruction_accuracy,
    regression_metrics,
)
from polyvae.toys.training import DISCRETE, REGRESSION, train_discrete, train_regression

__all__ = [
    "MIXTURE_WEIGHTS",
    "MIXTURE_MEANS",
    "MIXTURE_STDS",
    "TOYS",
    "mixture_samples",
    "mixture_density",
    "discrete_toy",
    "regression_toy",
    "check_onehot",
    "train_discrete",
    "train_regression",
    "class_probabilities",
    "class_histogram_tv",
    "encoder_moments",
    "reconstruction_accuracy",
    "regression_metrics",
    "run_toy",
]

logger = logging.getLogger(__name__)


def run_toy(
    name: str,
    *,
    beta: float = 1.0,
    learn_sigma: bool = False,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Train one toy case, measure it and optionally write figures and a summary.

    Parameters
    ----------
    name : {"discrete", "regression"}
    beta : float
        Weight of the KL term (>= 0).
    learn_sigma : bool
        Regression only: learn the decoder's sigma instead of fixing it at 0.1 (units
        of x).
    out_dir : path, optional
        Directory (created if needed) for PNG figures and ``summary.json``. Discrete:
        ``class_histograms.png``, ``reconstruction.png``, ``loss.png``; regression:
        ``histograms.png``, ``decoded_mean.png``, ``loss.png``.
    seed : int
        Seeds the data, the training and the metric's samples.
    progress : bool
        Show a training progress bar.

    Returns
    -------
    dict
        JSON-ready metrics. Discrete: ``tv_distance``, ``encoder_mean``,
        ``encoder_std``, ``reconstruction_accuracy``; regression: ``pearson_r``,
        ``w1``, ``w1_over_std``, ``train_std``, ``decoder_sigma``, ``encoder_mean``,
        ``encoder_std``. Both also hold the settings (``toy``, ``beta``, ``seed``, ...),
        ``final_train_elbo`` and ``train_time_s``; with ``out_dir`` also ``files``.
    """
    if not isinstance(name, str) or name not in TOYS:
        raise ValueError(f"name must be one of {TOYS}; got {name!r}")
    if not isinstance(learn_sigma, bool):
        raise TypeError(f"learn_sigma must be a bool; got {type(learn_sigma).__name__}")
    if learn_sigma and name != "regression":
        raise ValueError(f"learn_sigma applies to the regression toy only; got name={name!r}")
    ensure_int(seed, "seed", 0)
    # checks beta before any data or training
    settings = (DISCRETE if name == "discrete" else REGRESSION).replace(beta=beta, seed=seed)
    if name == "discrete":
        onehot, edges = discrete_toy(seed=seed)
        model = train_discrete(onehot=onehot, settings=settings, progress=progress)
        mean, std = encoder_moments(model, onehot)
        metrics = {
            "toy": name,
            "beta": float(beta),
            "seed": seed,
            "n_samples": len(onehot),
            "n_classes": int(onehot.shape[1]),
            "tv_distance": class_histogram_tv(model, onehot, seed=seed),
            "encoder_mean": mean,
            "encoder_std": std,
            "reconstruction_accuracy": reconstruction_accuracy(model, onehot),
        }
    else:
        x = regression_toy(seed=seed)
        sigma = None if learn_sigma else REGRESSION_SIGMA
        model = train_regression(sigma, x=x, settings=settings, progress=progress)
        mean, std = encoder_moments(model, x)
        metrics = {
            "toy": name,
            "beta": float(beta),
            "seed": seed,
            "n_samples": len(x),
            "sigma": "learned" if learn_sigma else REGRESSION_SIGMA,
            **regression_metrics(model, x, seed=seed),
            "encoder_mean": mean,
            "encoder_std": std,
        }
    metrics["final_train_elbo"] = float(model.history["train_elbo"][-1])
    if "val_elbo" in model.history:
        metrics["final_val_elbo"] = float(model.history["val_elbo"][-1])
    metrics["train_time_s"] = float(model.metadata["train_time_s"])
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if name == "discrete":
            files = _discrete_figures(model, onehot, edges, metrics, out, seed)
        else:
            files = _regression_figures(model, x, metrics, out, seed)
        files.append(_save_loss_figure(model, out))
        metrics["files"] = [*files, "summary.json"]
        summary = {
            **metrics,
            "model": model.config.to_dict(),
            "train": model.train_config.to_dict(),
        }
        write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        logger.info("wrote the %s toy's figures and summary to %s", name, out)
    return metrics
