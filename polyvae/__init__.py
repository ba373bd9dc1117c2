"""polyvae: variational autoencoders for molecular-simulation trajectories.

Frames in (npz, MDAnalysis, mdtraj), centered and aligned, a VAE trained in JAX, and
out come latent collective variables, generated conformations, pairwise-distance
marginals and structures optimized in latent space.
"""

__version__ = "0.1.0"

from polyvae.frames import Frames
from polyvae.io import read_frames, read_npz, write_npz
from polyvae.model import VAEConfig
from polyvae.train import TrainConfig, TrainingDivergedError
from polyvae.transforms import Pipeline
from polyvae.vae import VAEModel, load_model, train

__all__ = [
    "Frames",
    "Pipeline",
    "TrainConfig",
    "TrainingDivergedError",
    "VAEConfig",
    "VAEModel",
    "load_model",
    "read_frames",
    "read_npz",
    "train",
    "write_npz",
    "__version__",
]
