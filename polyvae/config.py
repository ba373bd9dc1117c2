"""The settings of a model and of its training, and the choices they take.

Plain frozen dataclasses, checked when made: :class:`VAEConfig` (the network) and
:class:`TrainConfig` (the optimizer's schedule) are written to the model file as JSON
(:meth:`VAEConfig.to_dict`, :meth:`TrainConfig.to_dict`); :class:`TrainSettings` holds
everything :func:`polyvae.train` is asked for (those two and how the frames become
features) and gives both. This module imports no JAX: every layer of polyvae may use it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from polyvae._checks import ensure_choice, ensure_int, ensure_number

__all__ = [
    "VAEConfig",
    "TrainConfig",
    "TrainSettings",
    "ACTIVATION_NAMES",
    "LIKELIHOODS",
    "DECODERS",
    "ALIGN_METHODS",
    "FEATURES",
    "BOND_MODES",
    "DEFAULT_PATIENCE",
]

ACTIVATION_NAMES = ("relu", "tanh", "elu", "softplus")
"""Activations of the hidden layers (:data:`polyvae.nn.model.ACTIVATIONS` holds the functions)."""

LIKELIHOODS = ("gaussian", "categorical")
"""Decoder likelihoods: normal features, or one-hot classes."""

DECODERS = ("cartesian", "internal")
"""What a Gaussian decoder's features are: aligned coordinates, or those and internal
coordinates (:mod:`polyvae.features.layout`)."""

ALIGN_METHODS = ("principal", "kabsch", "none")
"""How frames are aligned before they are flattened (:class:`polyvae.features.pipeline.Pipeline`)."""

FEATURES = ("positions", "distances", "torsions")
"""What the encoder reads: aligned coordinates, interatomic distances, or dihedrals."""

BOND_MODES = ("auto", "topology", "guess")
"""The names ``bonds`` may take instead of an array, how a model's bonds are found
(:func:`polyvae.features.topology.model_bonds`)."""

DEFAULT_PATIENCE = 50
"""Epochs without a better validation loss after which training stops by default. Generous:
on the chapter's polymer the validation -ELBO reaches its best between epochs 38 and 122
(seeds 0-4), and its noise makes short patiences stop on a passing dip."""


@dataclass(frozen=True)
class VAEConfig:
    """Architecture and objective of a VAE.

    Parameters
    ----------
    n_features : int
        Input size F (N*D for Cartesian frames, the class count for one-hot data).
    latent_dim : int
        Size L of the latent space (>= 1).
    hidden : tuple of int
        Widths of the encoder's hidden layers; the decoder mirrors them.
    activation : {"relu", "tanh", "elu", "softplus"}
    likelihood : {"gaussian", "categorical"}
    sigma : float or None
        Gaussian decoder standard deviation (in standardized feature units): a fixed
        positive number, or None to learn one global value per feature.
    beta : float
        Weight of the KL term (>= 0); 1 gives the ELBO.
    n_inputs : int, optional
        Encoder input size when the encoder sees other features than the decoder
        reconstructs (e.g. interatomic distances in, Cartesian coordinates out);
        None: the encoder reads the same F features.
    decoder : {"cartesian", "internal"}
        What the Gaussian decoder's features are (see the module docstring).
    layout : InternalLayout, optional
        The fitted internal coordinates, required by ``decoder="internal"``. It is
        kept in the model file with the pipeline, not in :meth:`to_dict`.

    Attributes
    ----------
    kinds : FeatureKinds or None
        The kind of every feature, from ``layout``: all the likelihood uses of it.
        Configs compare by it, not by the layout, so models of one molecule share their
        compiled code.
    """

    n_features: int
    latent_dim: int = 2
    hidden: tuple[int, ...] = (128, 128, 128)
    activation: str = "relu"
    likelihood: str = "gaussian"
    sigma: float | None = None
    beta: float = 1.0
    n_inputs: int | None = None
    decoder: str = "cartesian"
    layout: Any = field(default=None, compare=False)
    kinds: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        ensure_int(self.n_features, "n_features", 1)
        if self.n_inputs is not None:
            ensure_int(self.n_inputs, "n_inputs", 1)
        ensure_int(self.latent_dim, "latent_dim", 1)
        hidden = self.hidden
        if isinstance(hidden, int | np.integer):
            hidden = (int(hidden),)
        try:
            hidden = tuple(hidden)
        except TypeError:
            raise TypeError(f"hidden must be a sequence of layer widths; got {hidden!r}") from None
        for width in hidden:
            ensure_int(width, "hidden", 1, what="every hidden layer width")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        ensure_choice(self.activation, "activation", ACTIVATION_NAMES)
        ensure_choice(self.likelihood, "likelihood", LIKELIHOODS)
        if self.sigma is not None:
            if self.likelihood != "gaussian":
                raise ValueError("sigma applies to the gaussian likelihood only; use sigma=None")
            sigma = ensure_number(self.sigma, "sigma (None: learned)", minimum=0, exclusive=True)
            object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "beta", ensure_number(self.beta, "beta", minimum=0))
        ensure_choice(self.decoder, "decoder", DECODERS)
        if self.decoder == "internal":
            if self.likelihood != "gaussian":
                raise ValueError('decoder="internal" needs the gaussian likelihood')
            n_layout = getattr(self.layout, "n_features", None)
            if n_layout != self.n_features:
                raise ValueError(
                    f'decoder="internal" needs a fitted layout with n_features={self.n_features} '
                    f"internal coordinates; got {self.layout!r:.60}"
                )
            object.__setattr__(self, "kinds", self.layout.kinds)
        elif self.layout is not None:
            raise ValueError('layout applies to decoder="internal" only')

    @property
    def learned_sigma(self) -> bool:
        return self.likelihood == "gaussian" and self.sigma is None

    def to_dict(self) -> dict:
        skip = ("layout", "kinds")
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict, layout: Any = None) -> VAEConfig:
        """Inverse of :meth:`to_dict`; ``layout`` for an internal decoder."""
        d = dict(d, layout=layout)
        d["hidden"] = tuple(d["hidden"])
        return cls(**d)


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer and schedule settings.

    Parameters
    ----------
    epochs : int
        Passes over the training frames.
    batch_size : int
        Frames per optimizer step; the last partial batch of each (reshuffled) epoch
        is left out of that epoch.
    learning_rate : float
        Adam step size (> 0).
    seed : int
        Seeds the initialization, the validation split, the shuffling and the
        reparameterization noise.
    validation_fraction : float
        Fraction of frames held out for validation (0 <= f < 1).
    patience : int or None
        Early stopping, with a validation split: stop when the validation loss has not
        improved for this many epochs (default :data:`DEFAULT_PATIENCE`), and return the
        parameters of the best validation epoch (``history["best_epoch"]``). None trains
        all ``epochs`` and returns the last parameters.
    split_seed : int or None
        Seeds the validation split instead of ``seed`` (the members of
        :func:`polyvae.training.ensemble.train_many` share one split); None: ``seed``.
    """

    epochs: int = 250
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    validation_fraction: float = 0.1
    patience: int | None = DEFAULT_PATIENCE
    split_seed: int | None = None

    def __post_init__(self) -> None:
        ensure_int(self.epochs, "epochs", 1)
        ensure_int(self.batch_size, "batch_size", 1)
        ensure_int(self.seed, "seed", 0)
        if self.split_seed is not None:
            ensure_int(self.split_seed, "split_seed", 0)
        if self.patience is not None:
            ensure_int(self.patience, "patience", 1)
        ensure_number(self.learning_rate, "learning_rate", minimum=0, exclusive=True)
        ensure_number(
            self.validation_fraction,
            "validation_fraction",
            minimum=0,
            maximum=1,
            exclusive_maximum=True,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _same(a: Any, b: Any) -> bool:
    """Equal setting values; arrays (atom indices, a reference structure) by content."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b) and bool(np.all(np.asarray(a) == np.asarray(b)))
    return a == b


@dataclass(frozen=True, eq=False)
class TrainSettings:
    """What :func:`polyvae.train` is asked to train, checked when made.

    The fields are :func:`polyvae.train`'s options, with its defaults; the frames, their
    weights, the output path, the progress bar, ``stream`` (how rows reach the device,
    which does not change the result) and ``resume`` are given per call instead.
    :meth:`vae_config` and :meth:`train_config` give the network's and the optimizer's
    settings; :meth:`replace` a copy with some fields changed.

    Parameters
    ----------
    latent_dim, hidden, activation, sigma, beta
        The network and its objective (:class:`VAEConfig`).
    epochs, batch_size, learning_rate, seed, validation_fraction, patience
        The optimizer's schedule (:class:`TrainConfig`).
    align, reference, features, pairs, angles, dihedrals, decoder, bonds
        How frames become features (:class:`polyvae.features.pipeline.Pipeline`):
        ``align`` one of :data:`ALIGN_METHODS`, ``features`` one of :data:`FEATURES`,
        ``decoder`` one of :data:`DECODERS` or None (chosen by the molecule's size),
        ``bonds`` an array (B, 2) or one of :data:`BOND_MODES` (None: ``"auto"``). The
        atom indices (``pairs``, ``angles``, ``dihedrals``, ``bonds``) and the
        ``reference`` structure are checked against the frames they are used on.

    Raises
    ------
    ValueError or TypeError
        A setting out of its range or of the wrong type, named in a one-line message.
    """

    # the network's and the schedule's defaults are those of VAEConfig and TrainConfig
    latent_dim: int = VAEConfig.latent_dim
    hidden: tuple[int, ...] = VAEConfig.hidden
    activation: str = VAEConfig.activation
    sigma: float | None = VAEConfig.sigma
    beta: float = VAEConfig.beta
    epochs: int = TrainConfig.epochs
    batch_size: int = TrainConfig.batch_size
    learning_rate: float = TrainConfig.learning_rate
    seed: int = TrainConfig.seed
    validation_fraction: float = TrainConfig.validation_fraction
    patience: int | None = TrainConfig.patience
    align: str = "principal"
    reference: Any = None
    features: str = "positions"
    pairs: Any = None
    angles: Any = None
    dihedrals: Any = None
    decoder: str | None = None
    bonds: Any = None

    def __post_init__(self) -> None:
        network = self.vae_config(1, decoder="cartesian")  # checks the network's settings
        for name in ("hidden", "sigma", "beta"):
            object.__setattr__(self, name, getattr(network, name))
        self.train_config()  # checks the schedule
        ensure_choice(self.align, "align", ALIGN_METHODS)
        ensure_choice(self.features, "features", FEATURES)
        if self.decoder is not None:
            ensure_choice(self.decoder, "decoder", DECODERS)
        if isinstance(self.bonds, str):
            ensure_choice(self.bonds, "bonds", BOND_MODES)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrainSettings):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    __hash__ = None  # arrays among the fields: settings are not hashable

    def replace(self, **changes: Any) -> TrainSettings:
        """A copy with ``changes`` (field names and values), checked again."""
        known = {f.name for f in fields(self)}
        for name in changes:
            if name not in known:
                raise TypeError(
                    f"{name!r} is not a training setting; the settings are "
                    f"{', '.join(f.name for f in fields(self))}"
                )
        return dataclasses.replace(self, **changes) if changes else self

    def vae_config(
        self,
        n_features: int,
        *,
        n_inputs: int | None = None,
        decoder: str | None = None,
        layout: Any = None,
        likelihood: str = "gaussian",
    ) -> VAEConfig:
        """The network's :class:`VAEConfig` for ``n_features`` features; what the fitted
        pipeline fixes (``n_inputs``, the ``decoder`` chosen and its ``layout``) or the
        data (``likelihood``) is given. ``decoder`` defaults to this one's, or
        ``"cartesian"``."""
        return VAEConfig(
            n_features=n_features,
            latent_dim=self.latent_dim,
            hidden=self.hidden,
            activation=self.activation,
            likelihood=likelihood,
            sigma=self.sigma,
            beta=self.beta,
            n_inputs=n_inputs,
            decoder=decoder or self.decoder or "cartesian",
            layout=layout,
        )

    def train_config(self, **changes: Any) -> TrainConfig:
        """The optimizer's :class:`TrainConfig`, with ``changes`` (e.g. ``split_seed``)."""
        values = {
            f.name: getattr(self, f.name) for f in fields(TrainConfig) if f.name != "split_seed"
        }
        return TrainConfig(**{**values, **changes})

    @classmethod
    def from_configs(
        cls, config: VAEConfig, train_config: TrainConfig, **rest: Any
    ) -> TrainSettings:
        """The settings that give ``config`` and ``train_config`` (its ``split_seed``
        aside); ``rest`` are the feature settings (default: the defaults)."""
        network = {
            f: getattr(config, f) for f in ("latent_dim", "hidden", "activation", "sigma", "beta")
        }
        schedule = {
            f.name: getattr(train_config, f.name)
            for f in fields(TrainConfig)
            if f.name != "split_seed"
        }
        return cls(**{**network, **schedule, "decoder": config.decoder, **rest})
