"""Seconds per training epoch: polyvae's compiled epoch vs per-batch Python loops.

Chapter settings: 2048 frames of the 12-bead 2D polymer, encoder 24-256-256-256-2
(decoder mirrored), batch 32, Adam. The baselines are per-batch Python loops: one with a
jit-compiled gradient and an eager optax update, the same loop with the whole step
jit-compiled, and the method's reference loop as written (jit-compiled gradient, the
eager ``jax.example_libraries`` Adam, and a jit-compiled loss on 100 frames every batch
to track progress). Prints one JSON object. Run from the repository
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
from polyvae.nn.model import VAEConfig, init_params, loss, loss_terms
from polyvae.nn.steps import epoch_plan, make_steps

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT.parent / "shared" / "data" / "dmol" / "long_paths.npz"


def load_features(n_frames: int) -> tuple[np.ndarray, str]:
    path = CHAPTER if CHAPTER.exists() else ROOT / "polyvae" / "data" / "polymer2d.npz"
    frames = polyvae.read_npz(path)[:n_frames]
    return polyvae.Pipeline().fit(frames).transform(frames), path.name


def polyvae_epoch(x, config, batch_size):
    """One epoch as ``polyvae.training.trainer.fit`` runs it: the host-side plan, then the compiled steps."""
    _, steps = make_steps(config, 1e-3)
    opt = optax.adam(1e-3)
    state = {"params": init_params(config, key=jax.random.PRNGKey(0))}
    state["opt"] = opt.init(state["params"])
    data = (jnp.asarray(x),)
    key = [jax.random.PRNGKey(1)]

    def run():
        key[0], sub = jax.random.split(key[0])
        plan = jax.device_put(epoch_plan(sub, x.shape[0], batch_size, config.latent_dim))
        state["params"], state["opt"], metrics, _ = steps(
            state["params"], state["opt"], data, *plan
        )
        jax.block_until_ready(metrics)

    return run


def loop_epoch(x, config, batch_size, jit_update: bool):
    """Per-batch Python loop; the gradient is jit-compiled (and the update when asked)."""
    opt = optax.adam(1e-3)
    state = {"params": init_params(config, key=jax.random.PRNGKey(0))}
    state["opt"] = opt.init(state["params"])
    grad = jax.jit(jax.grad(lambda p, b, k: loss(p, b, config, key=k)[0]))

    def update(g, s, p):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    update = jax.jit(update) if jit_update else update
    data = jnp.asarray(x)
    key = [jax.random.PRNGKey(1)]

    def run():
        key[0], k_perm = jax.random.split(key[0])
        shuffled = data[jax.random.permutation(k_perm, data.shape[0])]
        params, opt_state = state["params"], state["opt"]
        for i in range(0, data.shape[0] - batch_size + 1, batch_size):
            key[0], sub = jax.random.split(key[0])
            g = grad(params, shuffled[i : i + batch_size], sub)
            params, opt_state = update(g, opt_state, params)
        jax.block_until_ready(params)
        state["params"], state["opt"] = params, opt_state

    return run


def chapter_loop_epoch(x, config, batch_size):
    """The method's reference training loop as written, on polyvae's model and loss.

    Per batch: split the key, read the parameters from the optimizer state, a
    jit-compiled gradient, ``jax.example_libraries.optimizers.adam``'s update (eager), and
    the loss of the first 100 frames through a jit-compiled function, kept in a list to
    track progress.
    """
    from jax.example_libraries import optimizers

    opt_init, opt_update, get_params = optimizers.adam(step_size=1e-3)
    state = {"opt": opt_init(init_params(config, key=jax.random.PRNGKey(0)))}
    fast_grad = jax.jit(jax.grad(lambda p, b, k: loss(p, b, config, key=k)[0]))
    fast_loss = jax.jit(lambda p, b, k: jnp.stack(loss_terms(p, b, config, key=k), axis=1))
    data = jnp.asarray(x)
    key = [jax.random.PRNGKey(1)]

    def run():
        key[0], k_perm = jax.random.split(key[0])
        shuffled = data[jax.random.permutation(k_perm, data.shape[0])]
        opt_state, losses = state["opt"], []
        for bi, i in enumerate(range(0, data.shape[0] - batch_size + 1, batch_size)):
            batch = shuffled[i : i + batch_size]
            key[0], subkey = jax.random.split(key[0])
            params = get_params(opt_state)
            grad = fast_grad(params, batch, key[0])
            opt_state = opt_update(bi, grad, opt_state)
            losses.append(jnp.mean(fast_loss(params, shuffled[:100], subkey), axis=0))
        jax.block_until_ready((opt_state, losses))
        state["opt"] = opt_state

    return run


def interleaved_times(runners: dict, repeats: int) -> dict:
    """Time each runner ``repeats`` times, taking turns, after one warm-up call each.

    Taking turns exposes every runner to the same machine load; the minimum over the
    repeats is the least disturbed figure.
    """
    for run in runners.values():
        run()
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return {name: {"min": min(t), "median": statistics.median(t)} for name, t in times.items()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args(argv)
    x, source = load_features(a.frames)
    config = VAEConfig(n_features=x.shape[1], latent_dim=2, hidden=(256, 256, 256))
    t = interleaved_times(
        {
            "polyvae_compiled_epoch": polyvae_epoch(x, config, a.batch_size),
            "python_loop_jit_grad": loop_epoch(x, config, a.batch_size, jit_update=False),
            "python_loop_jit_step": loop_epoch(x, config, a.batch_size, jit_update=True),
            "chapter_loop": chapter_loop_epoch(x, config, a.batch_size),
        },
        a.repeats,
    )
    best = {name: v["min"] for name, v in t.items()}
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
        "seconds_per_epoch_min": {k: round(v, 5) for k, v in best.items()},
        "seconds_per_epoch_median": {k: round(v["median"], 5) for k, v in t.items()},
        "speedup_vs_python_loop_jit_grad": round(
            best["python_loop_jit_grad"] / best["polyvae_compiled_epoch"], 1
        ),
        "speedup_vs_chapter_loop": round(best["chapter_loop"] / best["polyvae_compiled_epoch"], 1),
        "speedup_vs_python_loop_jit_step": round(
            best["python_loop_jit_step"] / best["polyvae_compiled_epoch"], 1
        ),
        "target_speedup": 15,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
