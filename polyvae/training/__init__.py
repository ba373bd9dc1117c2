"""Training: frames in, a fitted :class:`~polyvae.VAEModel` out.

:mod:`~polyvae.training.trainer` trains one model (:func:`~polyvae.train`);
:mod:`~polyvae.training.ensemble` trains several side by side and ranks them
(:func:`~polyvae.train_many`). Both prepare the frames with
:mod:`~polyvae.training.data`, run the epochs of :mod:`~polyvae.training.loop` (its
history in :mod:`~polyvae.training.history`) and finish the models with
:mod:`~polyvae.training.finishing`; :mod:`~polyvae.training.resume` checks that a model
may continue training.
"""

from polyvae.training.data import STREAM_ABOVE_BYTES, split_indices, training_stats
from polyvae.training.ensemble import ACTIVE_VARIANCE, IW_SAMPLES, Ensemble, Member, train_many
from polyvae.training.finishing import PostTrainingError, choose_cartesian_weight
from polyvae.training.history import training_summary
from polyvae.training.loop import TrainingDivergedError
from polyvae.training.trainer import fit, train

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
