"""Where generated structures start: the training frames' latent codes, or the prior.

A VAE is trained so that the latent codes of its training frames, taken together (the
aggregate posterior, the mixture of the encoder's normal distributions
``N(mu_t, sigma_t^2)`` over the frames), come close to the prior ``N(0, I)``; close, but
not equal. Where a basin of the molecule sits in the prior's tail, prior draws visit it
less often than the trajectory did: alanine dipeptide (20 ns, 2D latent) gave 24 % of
structures in the alpha-R basin from prior draws against 28 % in MD and 28 % from the
codes of its frames, over five seeds.

:class:`LatentCodes` keeps the codes of up to :data:`KEPT_CODES` training frames (with
their frame weights, for a reweighted biased run) in the model file, and draws latent
points from their mixture: a frame, by weight, then a point from its encoder
distribution. :meth:`polyvae.VAEModel.generate` draws from them by default
(``latent="training"``); ``latent="prior"`` draws from ``N(0, I)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["KEPT_CODES", "LATENT_SOURCES", "LatentCodes"]

KEPT_CODES = 4096
"""The most training frames whose codes a model keeps (evenly spread through them)."""

LATENT_SOURCES = ("training", "prior")
"""Where :meth:`polyvae.VAEModel.generate` draws latent points from."""


@dataclass(frozen=True)
class LatentCodes:
    """Encoder distributions of training frames: the aggregate posterior, as a mixture.

    Attributes
    ----------
    mean, std : ndarray (M, L) float32
        Encoder mean and standard deviation of each kept frame.
    weight : ndarray (M,) float64
        Probability of each kept frame (its training weight, normalized).
    n_frames : int
        Number of training frames the M were taken from.
    """

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    n_frames: int

    @classmethod
    def of(cls, model, frames, weights=None, limit: int = KEPT_CODES) -> LatentCodes:
        """The codes of ``frames`` (anything :meth:`polyvae.VAEModel.encode` takes) under
        ``model``, at most ``limit`` of them evenly spread, weighted by ``weights`` (T,)."""
        positions = frames.positions if hasattr(frames, "positions") else frames
        n = len(positions)
        w = np.ones(n) if weights is None else np.asarray(weights, np.float64).reshape(n)
        counted = np.flatnonzero(w > 0)  # frames of weight 0 are not part of the ensemble
        spread = np.linspace(0, len(counted) - 1, min(len(counted), int(limit)))
        pick = counted[np.unique(spread.round().astype(np.int64))]
        mean, std = model.encode(positions[pick])
        w = w[pick]
        return cls(np.asarray(mean, np.float32), np.asarray(std, np.float32), w / w.sum(), n)

    def draw(self, n: int, key: jax.Array) -> np.ndarray:
        """``n`` latent points (n, L) float32 from the mixture."""
        t, eps = _frames_and_noise(self.weight, key, int(n), self.mean.shape[1])
        t = np.asarray(t)
        # on the host: compiled, XLA may fuse the product and the sum (one rounding, not two)
        return self.mean[t] + self.std[t] * np.asarray(eps)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean,
            "std": self.std,
            "weight": self.weight,
            "n_frames": np.asarray([self.n_frames]),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], latent_dim: int) -> LatentCodes:
        mean = np.asarray(arrays["mean"], np.float32).reshape(-1, latent_dim)
        std = np.asarray(arrays["std"], np.float32).reshape(mean.shape)
        weight = np.asarray(arrays["weight"], np.float64).reshape(len(mean))
        if len(mean) == 0 or not np.all(std > 0) or not np.isclose(weight.sum(), 1.0):
            raise ValueError(
                "latent codes must hold at least one frame, std > 0, weights summing to 1"
            )
        return cls(mean, std, weight, int(np.asarray(arrays["n_frames"]).ravel()[0]))


@partial(jax.jit, static_argnums=(2, 3))
def _frames_and_noise(weight, key, n: int, latent_dim: int):
    """The random draws of :meth:`LatentCodes.draw` in one compiled program (op by op, a
    dozen): ``n`` frames by ``weight``, and standard-normal noise (n, latent_dim)."""
    k_frame, k_noise = jax.random.split(key)
    t = jax.random.choice(k_frame, weight.shape[0], (n,), p=weight)
    return t, jax.random.normal(k_noise, (n, latent_dim), jnp.float32)
