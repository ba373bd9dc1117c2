"""Test data builders shared by the test modules."""

import os
from pathlib import Path

import numpy as np


def random_chain(rng, n_frames=64, n_atoms=8, dim=2, bond=1.0):
    """Random-walk chains (T, N, D) with unit bonds, a cheap stand-in for a polymer."""
    steps = rng.normal(size=(n_frames, n_atoms, dim))
    steps /= np.linalg.norm(steps, axis=-1, keepdims=True)
    return np.cumsum(bond * steps, axis=1).astype(np.float32)


ROOT = Path(__file__).resolve().parents[1]
ENGINE_CACHE = ROOT / ".pytest_cache" / "engine"


def engine_output(name: str, make, **args) -> Path:
    """A folder holding what ``make(folder, **args)`` writes (a simulation whose output a
    seed fixes), kept between runs under :data:`ENGINE_CACHE` and keyed by the hash of
    ``tools/peptide.py``, ``name`` and ``args``: a changed script or argument simulates
    anew. Written to a temporary folder and renamed, so an interrupted run leaves nothing."""
    import hashlib
    import json
    import shutil
    import tempfile

    key = hashlib.sha256((ROOT / "tools" / "peptide.py").read_bytes())
    key.update(json.dumps([name, args], sort_keys=True).encode())
    folder = ENGINE_CACHE / f"{name}-{key.hexdigest()[:16]}"
    if not folder.is_dir():
        ENGINE_CACHE.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=ENGINE_CACHE, prefix=".partial-"))
        try:
            make(work, **args)
            os.replace(work, folder)
        except OSError:  # another run made it first
            if not folder.is_dir():
                raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return folder
