"""Training the toy models with the package's own :func:`polyvae.fit`, their network and
optimizer given as :class:`~polyvae.config.TrainSettings` (:data:`DISCRETE`,
:data:`REGRESSION`)."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from polyvae._checks import ensure_int
from polyvae.config import TrainConfig, TrainSettings, VAEConfig
from polyvae.toys.data import (
    REGRESSION_SIGMA,
    _regression_data,
    check_onehot,
    discrete_toy,
    regression_toy,
)
from polyvae.training.trainer import fit
from polyvae.vae import VAEModel

logger = logging.getLogger(__name__)


def _check_model(model: Any, likelihood: str) -> VAEModel:
    if not isinstance(model, VAEModel):
        raise TypeError(f"model must be a VAEModel; got {type(model).__name__}")
    if model.config.likelihood != likelihood:
        raise ValueError(
            f"model must have a {likelihood} likelihood; got {model.config.likelihood!r}"
        )
    return model


def _train(
    features: np.ndarray,
    config: VAEConfig,
    train_config: TrainConfig,
    metadata: dict,
    progress: bool,
) -> VAEModel:
    t0 = time.perf_counter()
    params, history = fit(features, config, train_config, progress=progress)
    metadata = {**metadata, "train_time_s": time.perf_counter() - t0}
    logger.info(
        "trained the %s toy in %.1f s: train -ELBO %.4f",
        metadata.get("toy"),
        metadata["train_time_s"],
        -history["train_elbo"][-1],
    )
    return VAEModel(config, params, None, train_config, history, metadata)


DISCRETE = TrainSettings(
    latent_dim=1,
    hidden=(32, 32),
    epochs=500,
    batch_size=64,
    learning_rate=3e-3,
    patience=None,  # the method's cases train their full length
)
"""The discrete case's network and optimizer."""

REGRESSION = DISCRETE.replace(epochs=1000, sigma=REGRESSION_SIGMA)
"""The regression case's network and optimizer."""


def _settings(settings: TrainSettings | None, default: TrainSettings, **changes: Any):
    """``settings`` (or the case's ``default``) with the ``changes`` that are not None."""
    if settings is None:
        settings = default
    elif not isinstance(settings, TrainSettings):
        raise TypeError(f"settings must be a TrainSettings; got {type(settings).__name__}")
    return settings.replace(**{k: v for k, v in changes.items() if v is not None})


def train_discrete(
    beta: float | None = None,
    seed: int | None = None,
    *,
    onehot: Any = None,
    n_classes: int | None = None,
    settings: TrainSettings | None = None,
    progress: bool = False,
    **options: Any,
) -> VAEModel:
    """Train a categorical-likelihood VAE on one-hot class rows.

    Parameters
    ----------
    beta : float, optional
        Weight of the KL term (>= 0); default the settings' (1).
    seed : int, optional
        Seeds the training (initialization, split, shuffling, noise) and, when
        ``onehot`` is not given, the toy data (``discrete_toy(seed=seed)``); default the
        settings' (0).
    onehot : array (T, C), optional
        Training rows; default: the discrete toy with 1024 samples.
    n_classes : int, optional
        Class count C of the generated toy (default 32); when ``onehot`` is given it
        must match its width.
    settings : TrainSettings, optional
        The network and optimizer (default :data:`DISCRETE`); ``beta``, ``seed`` and
        the ``options`` given replace its own (``latent_dim``, ``hidden``,
        ``activation``, ``epochs``, ``batch_size``, ``learning_rate``,
        ``validation_fraction``, ...). Its frame settings (alignment, features,
        decoder, bonds) do not apply to class rows.
    progress : bool
        Show a progress bar.

    Returns
    -------
    VAEModel
        With no pipeline: it encodes one-hot rows (T, C) directly.
    """
    settings = _settings(settings, DISCRETE, beta=beta, seed=seed, **options)
    if n_classes is not None:
        ensure_int(n_classes, "n_classes", 2)
    if onehot is None:
        n_classes = 32 if n_classes is None else n_classes
        onehot, _ = discrete_toy(n_classes=n_classes, seed=settings.seed)
    else:
        onehot = check_onehot(onehot, n_classes)
    config = settings.vae_config(onehot.shape[1], likelihood="categorical")
    metadata = {"toy": "discrete", "n_classes": int(onehot.shape[1]), "n_samples": len(onehot)}
    return _train(onehot, config, settings.train_config(), metadata, progress)


def train_regression(
    sigma: float | None = REGRESSION_SIGMA,
    seed: int | None = None,
    *,
    x: Any = None,
    beta: float | None = None,
    settings: TrainSettings | None = None,
    progress: bool = False,
    **options: Any,
) -> VAEModel:
    """Train a Gaussian-likelihood VAE on raw 1D values.

    Parameters
    ----------
    sigma : float or None
        Decoder standard deviation in the units of x (no standardization is applied),
        or None to learn one global value; it replaces the settings' sigma.
    seed : int, optional
        Seeds the training and, when ``x`` is not given, the toy data; default the
        settings' (0).
    x : array (n,) or (n, 1), optional
        Training values; default: ``regression_toy(seed=seed)`` (1024 samples).
    beta : float, optional
        Weight of the KL term (>= 0); default the settings' (1).
    settings : TrainSettings, optional
        The network and optimizer (default :data:`REGRESSION`); ``beta``, ``seed`` and
        the ``options`` given replace its own (``latent_dim``, ``hidden``,
        ``activation``, ``epochs``, ``batch_size``, ``learning_rate``,
        ``validation_fraction``, ...). Its frame settings (alignment, features,
        decoder, bonds) do not apply to raw values.
    progress : bool
        Show a progress bar.

    Returns
    -------
    VAEModel
        With no pipeline: it encodes rows (n, 1) of x directly.
    """
    settings = _settings(settings, REGRESSION, beta=beta, seed=seed, **options)
    settings = settings.replace(sigma=sigma)  # None: learned
    data = regression_toy(seed=settings.seed) if x is None else _regression_data(x)
    metadata = {"toy": "regression", "n_samples": len(data)}
    return _train(data, settings.vae_config(1), settings.train_config(), metadata, progress)
