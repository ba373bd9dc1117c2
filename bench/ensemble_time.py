"""Several seeds in one run against one seed: wall time and where the limit lies.

On the bundled polymer (4096 frames, default settings: internal decoder, hidden
128-128-128, batch 32) this script times, after one warm-up run of each that compiles
everything:

- ``polyvae.train(seed=0)`` for ``--epochs`` epochs;
- ``polyvae.training.ensemble.train_many(seeds=0..M-1)`` for the same epochs, for each M of
  ``--members`` (the members train together, vmapped, in one compiled epoch);

each as the whole call (preparation, training, model assembly, and for the ensemble the
ranking) and as the sum of its epochs. It also reports the floating-point work of one
compiled epoch as XLA counts it (``cost_analysis``) for one model and for M, and this
machine's dense float32 matrix-multiply rate (a chain of 1024 x 1024 products), to
give the shortest time the epochs' work can take here. Prints one JSON object.
Run from the repository root: ``python bench/ensemble_time.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import polyvae
from polyvae.job import DEFAULT_DATA
from polyvae.nn.model import init_params
from polyvae.nn.steps import epoch_plan, make_ensemble_steps, make_steps
from polyvae.training.data import prepare_training
from polyvae.training.ensemble import train_many


def matmul_rate(repeats: int = 5) -> float:
    """GFLOP/s of a jit-compiled chain of three 1024 x 1024 float32 products."""
    x = jnp.ones((1024, 1024), jnp.float32)
    f = jax.jit(lambda a: a @ a @ a @ a)
    jax.block_until_ready(f(x))
    best = min(_timed(lambda: jax.block_until_ready(f(x))) for _ in range(repeats))
    return 3 * 2 * 1024**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def epoch_flops(frames, m: int) -> float:
    """XLA's count of the floating-point operations of one epoch of m members: four steps
    compiled without a loop (one unrolled scan body), scaled to the epoch's steps."""
    config, _, prepared, _ = prepare_training(frames)
    n_train = int(round(0.9 * frames.n_frames))
    data = (jnp.asarray(prepared.targets[:n_train]),)
    if config.n_inputs is not None:
        data += (jnp.asarray(prepared.inputs[:n_train]),)
    order, eps = epoch_plan(jax.random.PRNGKey(0), n_train, 32, config.latent_dim)
    n_steps = order.shape[0]
    order, eps = order[:4], eps[:4]  # the scan unrolls 4 steps: no loop is left to miscount
    if m == 1:
        opt, steps = make_steps(config, 1e-3)
        params = init_params(config, key=jax.random.PRNGKey(0))
        lowered = steps.lower(params, opt.init(params), data, order, eps)
    else:
        opt, steps = make_ensemble_steps(config, 1e-3)
        keys = jax.random.split(jax.random.PRNGKey(0), m)
        params = jax.vmap(lambda k: init_params(config, key=k))(keys)
        stack = (np.stack([order] * m), np.stack([eps] * m))
        lowered = steps.lower(params, jax.vmap(opt.init)(params), data, *stack, None, jnp.ones(m))
    cost = lowered.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan"))) / 4 * n_steps


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--members", type=int, nargs="+", default=[8])
    args = parser.parse_args(argv)

    frames = polyvae.read_npz(DEFAULT_DATA)
    kw = dict(epochs=args.epochs, progress=False)
    out = {
        "data": f"{DEFAULT_DATA.name}: {frames.n_frames} frames x {frames.n_atoms} atoms",
        "epochs": args.epochs,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
        },
    }
    # warm-up: every compiled function of both paths, so the timings below are runs only
    polyvae.train(frames, epochs=1, progress=False)
    for m in args.members:
        train_many(frames, seeds=range(m), epochs=1, progress=False)

    t0 = time.perf_counter()
    single = polyvae.train(frames, seed=0, **kw)
    one = {
        "wall_s": round(time.perf_counter() - t0, 2),
        "epochs_s": round(sum(single.history["epoch_time_s"]), 2),
    }
    out["one_seed"] = one
    flops_one = epoch_flops(frames, 1)
    rate = matmul_rate()
    out["matmul_gflops"] = round(rate, 1)
    out["one_seed"]["epoch_gflop"] = round(flops_one / 1e9, 3)
    out["one_seed"]["epoch_gflops_reached"] = round(
        flops_one * args.epochs / one["epochs_s"] / 1e9, 1
    )
    for m in args.members:
        t0 = time.perf_counter()
        ens = train_many(frames, seeds=range(m), **kw)
        wall = time.perf_counter() - t0
        epochs_s = sum(ens[0].model.history["epoch_time_s"]) * m  # the group's epochs
        flops = epoch_flops(frames, m)
        out[f"{m}_seeds"] = {
            "wall_s": round(wall, 2),
            "epochs_s": round(epochs_s, 2),
            "epoch_gflop": round(flops / 1e9, 3),
            "epoch_gflops_reached": round(flops * args.epochs / epochs_s / 1e9, 1),
            "wall_ratio_to_one": round(wall / one["wall_s"], 2),
            "epochs_ratio_to_one": round(epochs_s / one["epochs_s"], 2),
            "separate_runs_ratio": m,
            "flop_bound_epochs_s": round(flops * args.epochs / (rate * 1e9), 2),
            "flop_bound_ratio_to_one": round(
                flops * args.epochs / (rate * 1e9) / one["epochs_s"], 2
            ),
        }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
