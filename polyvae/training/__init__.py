"""Training: frames in, a fitted :class:`~polyvae.VAEModel` out.

:mod:`~polyvae.training.trainer` trains one model (:func:`~polyvae.train`);
:mod:`~polyvae.training.ensemble` trains several side by side and ranks them
(:func:`~polyvae.train_many`).
"""

from polyvae.training.ensemble import ACTIVE_VARIANCE, IW_SAMPLES, Ensemble, Member, train_many
from polyvae.training.trainer import (
    STREAM_ABOVE_BYTES,
    PostTrainingError,
    TrainingDivergedError,
    choose_cartesian_weight,
    fit,
    split_indices,
    train,
    training_stats,
    training_summary,
)

__all__ = [
    "ACTIVE_VARIANCE",
    "IW_SAMPLES",
    "STREAM_ABOVE_BYTES",
    "Ensemble",
    "Member",
    "PostTrainingError",
    "TrainingDivergedError",
    "choose_cartesian_weight",
    "fit",
    "split_indices",
    "train",
    "train_many",
    "training_stats",
    "training_summary",
]
