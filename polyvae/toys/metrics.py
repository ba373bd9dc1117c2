"""The figures of merit the toy checks are stated in."""

from __future__ import annotations

from typing import Any

import numpy as np

from polyvae._checks import ensure_int
from polyvae.measures.marginals import wasserstein_columns
from polyvae.toys.data import _regression_data, check_onehot
from polyvae.toys.training import _check_model
from polyvae.vae import VAEModel


def class_probabilities(model: VAEModel, z: Any) -> np.ndarray:
    """Decoded class probabilities of latent points.

    Parameters
    ----------
    model : VAEModel
        A categorical-likelihood model.
    z : array (M, L) or (L,)

    Returns
    -------
    ndarray (M, C)
    """
    _check_model(model, "categorical")
    return model.decode(z)


def class_histogram_tv(model: VAEModel, onehot: Any, n_samples: int = 1024, seed: int = 0) -> float:
    """Total variation distance between the data's and the model's class histograms.

    The model's histogram is the decoded class probabilities summed over ``n_samples``
    prior draws z ~ N(0, I) and normalized, i.e. a Monte Carlo estimate of
    p(class) = E_z[p(class | z)].

    Parameters
    ----------
    model : VAEModel
        A categorical-likelihood model.
    onehot : array (T, C)
        The training rows.
    n_samples : int
        Prior draws.
    seed : int
        Seed of the prior draws.

    Returns
    -------
    float
        ``0.5 * sum_c |p_data(c) - p_model(c)|``, in [0, 1].
    """
    _check_model(model, "categorical")
    x = check_onehot(onehot, model.config.n_features)
    ensure_int(n_samples, "n_samples", 1)
    probs = model.generate(n_samples, seed=seed, mean_only=True)
    p_model = np.asarray(probs, dtype=np.float64).sum(axis=0)
    p_model /= p_model.sum()
    p_data = x.astype(np.float64).mean(axis=0)
    return float(0.5 * np.abs(p_data - p_model).sum())


def encoder_moments(model: VAEModel, x: Any) -> tuple[float, float]:
    """Average encoder mean and standard deviation over rows and latent dimensions.

    Parameters
    ----------
    model : VAEModel
    x : array (T, F)
        Model features (one-hot rows for a categorical model).

    Returns
    -------
    mean, std : float
        About 0 and 1 when q(z|x) equals the prior for every x (the latent is unused).
    """
    if not isinstance(model, VAEModel):
        raise TypeError(f"model must be a VAEModel; got {type(model).__name__}")
    mean, std = model.encode(x)
    return float(np.mean(mean)), float(np.mean(std))


def reconstruction_accuracy(model: VAEModel, onehot: Any) -> float:
    """Fraction of rows whose most probable decoded class, at the encoder mean, is right.

    Parameters
    ----------
    model : VAEModel
        A categorical-likelihood model.
    onehot : array (T, C)

    Returns
    -------
    float in [0, 1]
    """
    _check_model(model, "categorical")
    x = check_onehot(onehot, model.config.n_features)
    mean, _ = model.encode(x)
    probs = class_probabilities(model, mean)
    return float(np.mean(probs.argmax(axis=1) == x.argmax(axis=1)))


def regression_metrics(
    model: VAEModel, x: Any, n_samples: int = 16384, seed: int = 0
) -> dict[str, float]:
    """How well a Gaussian model of 1D values reconstructs and reproduces them.

    Parameters
    ----------
    model : VAEModel
        A Gaussian-likelihood model with one feature.
    x : array (n,) or (n, 1)
        The training values.
    n_samples : int
        Samples drawn from the model, decoder noise included, for the Wasserstein
        distance. The default is large so that the Monte Carlo error of the model side
        (several hundredths of the training std with only 1024 samples of this
        mixture) stays small next to a tolerance of 0.1 training std.
    seed : int
        Seed of the model samples.

    Returns
    -------
    dict
        ``pearson_r``: correlation between x and the decoded mean at the encoder mean
        of x; ``w1``: 1-Wasserstein distance between x and the model samples (units of
        x); ``train_std``: standard deviation of x; ``w1_over_std``: their ratio;
        ``decoder_sigma``: the decoder's (fixed or learned) standard deviation.
    """
    _check_model(model, "gaussian")
    if model.config.n_features != 1:
        raise ValueError(f"model must have one feature; got n_features={model.config.n_features}")
    ensure_int(n_samples, "n_samples", 1)
    data = _regression_data(x)
    mean, _ = model.encode(data)
    decoded = np.asarray(model.decode(mean), dtype=np.float64)[:, 0]
    values = data[:, 0].astype(np.float64)
    samples = np.asarray(model.generate(n_samples, seed=seed), dtype=np.float64)[:, 0]
    w1 = float(wasserstein_columns(values[:, None], samples[:, None])[0])
    std = float(values.std())
    sigma = float(model.decoder_sigma[0])
    return {
        "pearson_r": float(np.corrcoef(values, decoded)[0, 1]),
        "w1": w1,
        "train_std": std,
        "w1_over_std": w1 / std if std > 0 else float("nan"),
        "decoder_sigma": sigma,
    }
