"""polyvae: variational autoencoders for molecular-simulation trajectories.

Frames in (npz, MDAnalysis, mdtraj), centered and aligned, a VAE trained in JAX, and
out come latent collective variables, generated conformations, pairwise-distance
marginals and structures optimized in latent space.

Importing the package turns on JAX's persistent compilation cache in
``~/.cache/polyvae/jax`` (or ``$XDG_CACHE_HOME/polyvae/jax``), so that a new process
loads the compiled training step and the programs around it instead of compiling them
again (:mod:`polyvae._compile_cache`). Environment variables: ``POLYVAE_COMPILE_CACHE=0``
switches that off, another value names the folder; a cache set up through JAX
(``JAX_COMPILATION_CACHE_DIR``, or ``jax.config`` before the import) is used as it is.
"""

from polyvae._compile_cache import keep_compiled_code
from polyvae._version import __version__
from polyvae.config import TrainConfig, TrainSettings, VAEConfig
from polyvae.features.pipeline import Pipeline
from polyvae.frames import Frames
from polyvae.io import read_frames, read_npz, write_npz
from polyvae.metadata import AtomInfo, TrainingStats
from polyvae.training.ensemble import Ensemble, train_many
from polyvae.training.trainer import PostTrainingError, TrainingDivergedError, fit, train
from polyvae.vae import VAEModel, load_model

keep_compiled_code()  # importing compiles nothing: the first program finds the cache on

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
