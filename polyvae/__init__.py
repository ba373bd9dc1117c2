"""polyvae: variational autoencoders for molecular-simulation trajectories.

Frames in (npz, MDAnalysis, mdtraj), centered and aligned, a VAE trained in JAX, and
out come latent collective variables, generated conformations, pairwise-distance
marginals and structures optimized in latent space.
"""

from polyvae._version import __version__
from polyvae.config import TrainConfig, TrainSettings, VAEConfig
from polyvae.features.pipeline import Pipeline
from polyvae.frames import Frames
from polyvae.io import read_frames, read_npz, write_npz
from polyvae.metadata import AtomInfo, TrainingStats
from polyvae.training.ensemble import Ensemble, train_many
from polyvae.training.trainer import PostTrainingError, TrainingDivergedError, fit, train
from polyvae.vae import VAEModel, load_model

__all__ = [
    "AtomInfo",
    "Ensemble",
    "Frames",
    "Pipeline",
    "PostTrainingError",
    "TrainConfig",
    "TrainSettings",
    "TrainingDivergedError",
    "TrainingStats",
    "VAEConfig",
    "VAEModel",
    "fit",
    "load_model",
    "read_frames",
    "read_npz",
    "train",
    "train_many",
    "write_npz",
    "__version__",
]
