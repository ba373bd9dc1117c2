"""Continuing a run: the checks that a saved model may go on training on the frames given,
and the fingerprint of its training frames."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from polyvae.config import TrainSettings
from polyvae.frames import Frames
from polyvae.vae import VAEModel

__all__ = ["FINGERPRINT_FRAMES", "RESUMED_SETTINGS", "data_fingerprint", "resumable"]


FINGERPRINT_FRAMES = 64
"""Frames (evenly spaced) whose positions make up a training data fingerprint."""


def data_fingerprint(frames: Frames) -> str:
    """A short hash of the training frames: their shape and the positions of up to
    :data:`FINGERPRINT_FRAMES` evenly spaced frames (constant cost for any length)."""
    x = frames.positions
    pick = np.unique(np.linspace(0, len(x) - 1, min(len(x), FINGERPRINT_FRAMES)).astype(int))
    h = hashlib.sha256(repr(x.shape).encode())
    h.update(np.ascontiguousarray(x[pick], np.float32).tobytes())
    return h.hexdigest()[:16]


# the settings that a resumed run keeps, and where the model holds them
_DEFAULTS = TrainSettings()

RESUMED_SETTINGS = {
    "latent_dim": lambda m: m.config.latent_dim,
    "hidden": lambda m: tuple(m.config.hidden),
    "activation": lambda m: m.config.activation,
    "beta": lambda m: m.config.beta,
    "batch_size": lambda m: m.train_config.batch_size,
    "learning_rate": lambda m: m.train_config.learning_rate,
    "seed": lambda m: m.train_config.seed,
    "validation_fraction": lambda m: m.train_config.validation_fraction,
    "patience": lambda m: m.train_config.patience,
    "align": lambda m: m.pipeline.align,
    "features": lambda m: m.pipeline.features,
}


def _conflicting_settings(model, name: str, settings: TrainSettings) -> None:
    """ValueError for the first of :data:`RESUMED_SETTINGS` given (not its default) that
    differs from the resumed ``model``'s: a resumed run keeps its own."""
    for key, kept_by in RESUMED_SETTINGS.items():
        value = getattr(settings, key)
        if value == getattr(_DEFAULTS, key):
            continue
        kept = kept_by(model)
        if value != kept:
            raise ValueError(
                f"resume: {name} was trained with {key}={kept!r}; got {key}={value!r}: a "
                f"resumed run keeps its settings; leave {key} out, or train anew"
            )


def resumable(resume: Any, frames: Frames, settings: TrainSettings, weights: Any = None):
    """The model a run continues from, checked against the frames, their ``weights`` and
    the ``settings`` (``epochs``, the total to reach; the others, where not their
    defaults, must be the model's)."""
    model = resume if isinstance(resume, VAEModel) else VAEModel.load(resume)
    name = "the model" if isinstance(resume, VAEModel) else str(resume)
    state = model.train_state
    if state is None or model.train_config is None or model.pipeline is None:
        raise ValueError(
            f"resume: {name} holds no training state (written by an earlier polyvae, or not by "
            "polyvae.train); train it anew"
        )
    epochs = settings.epochs
    if epochs <= state.epoch:
        raise ValueError(
            f"resume: {name} has trained {state.epoch} epochs already; epochs is the total to "
            f"reach, so it must exceed {state.epoch}; got {epochs}"
        )
    if "weights" in model.metadata and weights is None:
        raise ValueError(
            f"resume: {name} was trained with frame weights; pass the same weights to continue"
        )
    n = model.metadata.get("n_frames_trained")
    if n != frames.n_frames:
        raise ValueError(
            f"resume: {name} was trained on {n} frames; got {frames.n_frames}: continue on the "
            "same frames"
        )
    stored = model.metadata.get("data_fingerprint")
    if stored is not None and stored != data_fingerprint(frames):
        raise ValueError(
            f"resume: {name} was trained on other frames (as many, {n}, but other positions); "
            "continue on the same frames"
        )
    _conflicting_settings(model, name, settings)
    return model
