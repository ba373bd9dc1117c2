"""Test data builders shared by the test modules."""

import numpy as np


def random_chain(rng, n_frames=64, n_atoms=8, dim=2, bond=1.0):
    """Random-walk chains (T, N, D) with unit bonds, a cheap stand-in for a polymer."""
    steps = rng.normal(size=(n_frames, n_atoms, dim))
    steps /= np.linalg.norm(steps, axis=-1, keepdims=True)
    return np.cumsum(bond * steps, axis=1).astype(np.float32)
