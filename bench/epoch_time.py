"""Seconds per training epoch: polyvae's compiled epoch vs per-batch Python loops.

Chapter settings: 2048 frames of the 12-bead 2D polymer, encoder 24-256-256-256-2
(decoder mirrored), batch 32, Adam. Prints one JSON object. Run from the repository
root: ``python bench/epoch_time.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import polyvae
from polyvae.model import VAEConfig, init_params, loss
from polyvae.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT.parent / "shared" / "data" / "dmol" / "long_paths.npz"


def load_features(n_frames: int) -> tuple[np.ndarray, str]:
    path = CHAPTER if CHAPTER.exists() else ROOT / "data" / "polymer2d.npz"
    frames = polyvae.read_npz(path)[:n_frames]
    return polyvae.Pipeline().fit(frames).transform(frames), path.name


def time_polyvae(x, config, batch_size, epochs) -> float:
    tc = TrainConfig(epochs=epochs, batch_size=batch_size, validation_fraction=0.0)
    _, history = fit(x, config, tc, progress=False)
    return statistics.median(history["epoch_time_s"][2:])  # first epochs include compilation


def time_loop(x, config, batch_size, epochs, jit_update: bool) -> float:
    """Per-batch Python loop; the gradient is jit-compiled (and the update when asked)."""
    opt = optax.adam(1e-3)
    params = init_params(config, key=jax.random.PRNGKey(0))
    state = opt.init(params)
    grad = jax.jit(jax.grad(lambda p, b, k: loss(p, b, config, key=k)[0]))

    def update(g, s, p):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    update = jax.jit(update) if jit_update else update
    data = jnp.asarray(x)
    key = jax.random.PRNGKey(1)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        key, k_perm = jax.random.split(key)
        shuffled = data[jax.random.permutation(k_perm, data.shape[0])]
        for i in range(0, data.shape[0] - batch_size + 1, batch_size):
            key, sub = jax.random.split(key)
            g = grad(params, shuffled[i : i + batch_size], sub)
            params, state = update(g, state, params)
        jax.block_until_ready(params)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=12)
    a = ap.parse_args(argv)
    x, source = load_features(a.frames)
    config = VAEConfig(n_features=x.shape[1], latent_dim=2, hidden=(256, 256, 256))
    t_polyvae = time_polyvae(x, config, a.batch_size, a.epochs)
    t_chapter = time_loop(x, config, a.batch_size, max(3, a.epochs // 3), jit_update=False)
    t_jit_step = time_loop(x, config, a.batch_size, max(3, a.epochs // 3), jit_update=True)
    result = {
        "benchmark": "epoch_time",
        "data": source,
        "frames": int(x.shape[0]),
        "architecture": f"{x.shape[1]}-256-256-256-2 (decoder mirrored)",
        "batch_size": a.batch_size,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "seconds_per_epoch": {
            "polyvae_compiled_epoch": round(t_polyvae, 5),
            "python_loop_jit_grad": round(t_chapter, 5),
            "python_loop_jit_step": round(t_jit_step, 5),
        },
        "speedup_vs_python_loop_jit_grad": round(t_chapter / t_polyvae, 1),
        "speedup_vs_python_loop_jit_step": round(t_jit_step / t_polyvae, 1),
        "target_speedup": 15,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
