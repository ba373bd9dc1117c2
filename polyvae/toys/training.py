"""Training the toy models with the package's own :func:`polyvae.train.fit`."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from polyvae._checks import ensure_int
from polyvae.nn.model import VAEConfig
from polyvae.toys.data import (
    REGRESSION_SIGMA,
    _regression_data,
    check_onehot,
    discrete_toy,
    regression_toy,
)
from polyvae.training.trainer import TrainConfig, fit
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


def train_discrete(
    beta: float = 1.0,
    seed: int = 0,
    *,
    onehot: Any = None,
    n_classes: int | None = None,
    latent_dim: int = 1,
    hidden: tuple[int, ...] = (32, 32),
    activation: str = "relu",
    epochs: int = 500,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    validation_fraction: float = 0.1,
    progress: bool = False,
) -> VAEModel:
    """Train a categorical-likelihood VAE on one-hot class rows.

    Parameters
    ----------
    beta : float
        Weight of the KL term (>= 0).
    seed : int
        Seeds the training (initialization, split, shuffling, noise) and, when
        ``onehot`` is not given, the toy data (``discrete_toy(seed=seed)``).
    onehot : array (T, C), optional
        Training rows; default: the discrete toy with 1024 samples.
    n_classes : int, optional
        Class count C of the generated toy (default 32); when ``onehot`` is given it
        must match its width.
    latent_dim, hidden, activation
        Architecture, see :class:`polyvae.nn.model.VAEConfig`.
    epochs, batch_size, learning_rate, validation_fraction
        See :class:`polyvae.train.TrainConfig`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    VAEModel
        With no pipeline: it encodes one-hot rows (T, C) directly.
    """
    tconfig = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        validation_fraction=validation_fraction,
        patience=None,  # the method's cases train their full length
    )
    if n_classes is not None:
        ensure_int(n_classes, "n_classes", 2)
    if onehot is None:
        onehot, _ = discrete_toy(n_classes=32 if n_classes is None else n_classes, seed=seed)
    else:
        onehot = check_onehot(onehot, n_classes)
    config = VAEConfig(
        n_features=onehot.shape[1],
        latent_dim=latent_dim,
        hidden=hidden,
        activation=activation,
        likelihood="categorical",
        beta=beta,
    )
    metadata = {"toy": "discrete", "n_classes": int(onehot.shape[1]), "n_samples": len(onehot)}
    return _train(onehot, config, tconfig, metadata, progress)


def train_regression(
    sigma: float | None = REGRESSION_SIGMA,
    seed: int = 0,
    *,
    x: Any = None,
    beta: float = 1.0,
    latent_dim: int = 1,
    hidden: tuple[int, ...] = (32, 32),
    activation: str = "relu",
    epochs: int = 1000,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    validation_fraction: float = 0.1,
    progress: bool = False,
) -> VAEModel:
    """Train a Gaussian-likelihood VAE on raw 1D values.

    Parameters
    ----------
    sigma : float or None
        Decoder standard deviation in the units of x (no standardization is applied),
        or None to learn one global value.
    seed : int
        Seeds the training and, when ``x`` is not given, the toy data.
    x : array (n,) or (n, 1), optional
        Training values; default: ``regression_toy(seed=seed)`` (1024 samples).
    beta : float
        Weight of the KL term (>= 0).
    latent_dim, hidden, activation
        Architecture, see :class:`polyvae.nn.model.VAEConfig`.
    epochs, batch_size, learning_rate, validation_fraction
        See :class:`polyvae.train.TrainConfig`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    VAEModel
        With no pipeline: it encodes rows (n, 1) of x directly.
    """
    tconfig = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        validation_fraction=validation_fraction,
        patience=None,  # the method's cases train their full length
    )
    config = VAEConfig(
        n_features=1,
        latent_dim=latent_dim,
        hidden=hidden,
        activation=activation,
        likelihood="gaussian",
        sigma=sigma,
        beta=beta,
    )
    data = regression_toy(seed=seed) if x is None else _regression_data(x)
    metadata = {"toy": "regression", "n_samples": len(data)}
    return _train(data, config, tconfig, metadata, progress)
