"""How close polyvae's compiled epoch comes to the machine's matrix-multiply speed.

For the chapter architecture (encoder 24-256-256-256-2, decoder mirrored, learned
sigma, relu, 2048 frames, Adam) at several batch sizes this script

- counts the floating-point operations of one epoch: analytically (2*m*k*n per
  forward matrix product, twice that for the backward pass: gradients with respect to
  the inputs and to the weights; plus an estimate of the elementwise work and of the
  Adam update) and as XLA counts them (``cost_analysis()`` of one compiled step);
- measures the dense float32 matrix-multiply rate of this machine: a jit-compiled
  chain of (1024 x 1024) @ (1024 x 1024) products (the peak), and the three products
  of a 256-wide layer at the step's own shapes, (B x 256) @ (256 x 256) forward,
  ``dY W^T`` and the weight gradient ``X^T dY``;
- times polyvae's epoch (``polyvae.nn.steps.epoch_plan`` + ``make_steps``) and, to see where the
  time goes, the same scanned epoch with parts of the step removed: the Adam update
  replaced by plain SGD (``p - lr * g``), and the loss alone without the backward pass.
  Rates and epochs are timed in the same rounds, taking turns (min of repeats after a
  warm-up each), as the machine's speed drifts;
- reports the FLOP-bound epoch time (matrix-product FLOPs / peak rate) and the
  fraction of it that polyvae reaches (FLOP-bound time / measured time).

Prints one JSON object. Run from the repository root: ``python bench/flops.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from epoch_time import interleaved_times, load_features, polyvae_epoch  # noqa: E402

from polyvae.nn.model import VAEConfig, init_params, loss  # noqa: E402
from polyvae.nn.steps import epoch_plan  # noqa: E402

ADAM_FLOPS_PER_PARAM = (
    14  # two moment updates (7), bias corrections (2), sqrt/add/div (3), scale + apply (2)
)


# ----------------------------------------------------------------------------- counting


def layer_sizes(config: VAEConfig) -> tuple[list[int], list[int]]:
    hidden = list(config.hidden)
    return (
        [config.n_features, *hidden, 2 * config.latent_dim],
        [config.latent_dim, *hidden[::-1], config.n_features],
    )


def n_params(config: VAEConfig) -> int:
    total = config.n_features if config.learned_sigma else 0
    for sizes in layer_sizes(config):
        total += sum(k * n + n for k, n in zip(sizes[:-1], sizes[1:], strict=True))
    return total


def analytic_step_flops(config: VAEConfig, batch: int) -> dict:
    """FLOPs of one optimizer step, counted by hand."""
    enc, dec = layer_sizes(config)
    matmul_fwd = sum(
        2 * batch * k * n
        for sizes in (enc, dec)
        for k, n in zip(sizes[:-1], sizes[1:], strict=True)
    )
    # backward: dX = dY W^T and dW = X^T dY, each as costly as the forward product;
    # the encoder's first layer needs no dX (the data are not differentiated).
    matmul_bwd = 2 * matmul_fwd - 2 * batch * enc[0] * enc[1]
    # elementwise, forward and backward together (rough): bias add, relu and its mask,
    # bias gradient (column sums) ~ 4 per hidden unit; loss terms ~ 10 per output.
    units = sum(enc[1:-1]) + sum(dec[1:-1])
    elementwise = batch * (4 * units + 10 * (enc[-1] + dec[-1]))
    adam = ADAM_FLOPS_PER_PARAM * n_params(config)
    return {
        "matmul_forward": matmul_fwd,
        "matmul_backward": matmul_bwd,
        "matmul_forward_backward": matmul_fwd + matmul_bwd,
        "matmul_3x_forward": 3 * matmul_fwd,
        "elementwise_estimate": elementwise,
        "adam_estimate": adam,
        "total_estimate": matmul_fwd + matmul_bwd + elementwise + adam,
    }


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older JAX: one dict per computation
        cost = cost[0] if cost else {}
    return dict(cost or {})


def xla_step_flops(config: VAEConfig, batch: int) -> dict:
    """XLA's own count for one compiled step (forward, backward, Adam)."""
    opt = optax.adam(1e-3)
    params = init_params(config, key=jax.random.PRNGKey(0))
    state = opt.init(params)
    grad_fn = jax.value_and_grad(partial(loss, config=config), has_aux=True)

    def step(params, state, x, key):
        (_, aux), grads = grad_fn(params, x, key=key)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, aux

    def fwd_bwd(params, x, key):
        return grad_fn(params, x, key=key)

    x = jnp.zeros((batch, config.n_features), jnp.float32)
    key = jax.random.PRNGKey(0)
    compiled = jax.jit(step).lower(params, state, x, key).compile()
    full = _cost(compiled)
    grad_only = _cost(jax.jit(fwd_bwd).lower(params, x, key).compile())
    text = compiled.as_text()
    entry = text[text.rindex("ENTRY") :]  # the step's own kernels, not the fused bodies
    return {
        "step_flops": float(full.get("flops", float("nan"))),
        "gradient_flops": float(grad_only.get("flops", float("nan"))),
        "step_bytes_accessed": float(full.get("bytes accessed", float("nan"))),
        "kernels_per_step": {
            "matmul_fusions": entry.count("kind=kCustom") + entry.count(" dot("),
            "elementwise_fusions": entry.count("kind=kLoop") + entry.count("kind=kInput"),
        },
    }


# ----------------------------------------------------------------------------- rates


def _timed(fn, *args):
    """A runner for ``interleaved_times``: one blocking call of ``fn(*args)``."""

    def run():
        jax.block_until_ready(fn(*args))

    return run


def matmul_chain(m: int, k: int, n: int, chain: int):
    """``chain`` dependent (m x k) @ (k x n) products in one jit call: (runner, FLOPs).

    The weight is orthogonal (k == n) so the values neither grow nor shrink (no
    denormals); the chain amortizes the dispatch of small products.
    """
    assert k == n
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((k, k)))
    w = jnp.asarray(q, jnp.float32)
    x = jnp.asarray(rng.standard_normal((m, k)), jnp.float32)
    run = jax.jit(lambda x, w: lax.fori_loop(0, chain, lambda _, x: x @ w, x))
    return _timed(run, x, w), 2.0 * m * k * n * chain


def layer_products(batch: int, width: int, n: int) -> dict:
    """The three products of a dense layer, each as a scan over ``n`` batches.

    forward ``X W`` (B x H)(H x H); input gradient ``dY W^T``; weight gradient
    ``X^T dY`` (a contraction over the batch axis). Each scan step reads a fresh
    (B x H) block, so nothing is loop-invariant, and adds the product to the carry
    (which stays in cache, as a layer's output does in the training step).
    Returns ``{name: (runner, FLOPs)}``.
    """
    rng = np.random.default_rng(1)
    xs = jnp.asarray(rng.standard_normal((n, batch, width)), jnp.float32)
    ys = jnp.asarray(rng.standard_normal((n, batch, width)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((width, width)) / np.sqrt(width), jnp.float32)
    products = {
        "forward_XW": (lambda x, y: x @ w, (batch, width)),
        "input_grad_dYWt": (
            lambda x, y: lax.dot_general(y, w, (((1,), (1,)), ((), ()))),
            (batch, width),
        ),
        "weight_grad_XtdY": (
            lambda x, y: lax.dot_general(x, y, (((0,), (0,)), ((), ()))),
            (width, width),
        ),
    }
    flops = 2.0 * batch * width * width * n
    out = {}
    for name, (f, shape) in products.items():
        run = jax.jit(
            lambda xs, ys, f=f, shape=shape: lax.scan(
                lambda c, xy: (c + f(*xy), None), jnp.zeros(shape, jnp.float32), (xs, ys)
            )[0]
        )
        out[name] = (_timed(run, xs, ys), flops)
    return out


# ----------------------------------------------------------------------------- epoch variants


def variant_epoch(x, config: VAEConfig, batch_size: int, mode: str):
    """The epoch of ``polyvae.nn.steps.make_steps`` with parts of the step removed.

    ``mode="sgd"``: forward + backward, parameters updated by ``p - lr * g`` (no Adam);
    ``mode="forward"``: the loss alone, summed over the batches (no backward pass).
    The batch order and noise come from ``polyvae.nn.steps.epoch_plan``, as in training.
    """
    grad_fn = jax.value_and_grad(partial(loss, config=config), has_aux=True)

    @jax.jit
    def epoch(params, data, order, eps):
        def step(params, inputs):
            idx, eps_batch = inputs
            batch = data[idx]
            if mode == "forward":
                value, _ = loss(params, batch, config, eps=eps_batch)
                return params, value
            (value, _), grads = grad_fn(params, batch, eps=eps_batch)
            params = jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
            return params, value

        params, values = lax.scan(step, params, (order, eps), unroll=4)
        return params, jnp.mean(values)

    state = {"params": init_params(config, key=jax.random.PRNGKey(0))}
    data = jnp.asarray(x)
    key = [jax.random.PRNGKey(1)]

    def run():
        key[0], sub = jax.random.split(key[0])
        plan = jax.device_put(epoch_plan(sub, x.shape[0], batch_size, config.latent_dim))
        state["params"], value = epoch(state["params"], data, *plan)
        jax.block_until_ready(value)

    return run


# ----------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=2048)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256, 1024])
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args(argv)
    x, source = load_features(a.frames)
    config = VAEConfig(n_features=x.shape[1], latent_dim=2, hidden=(256, 256, 256))
    n_frames = int(x.shape[0])
    width = config.hidden[0]

    # every figure is timed in the same rounds, taking turns: this machine's speed
    # drifts (other load), so rates and epochs must see the same conditions
    flop_counts, runners = {}, {}
    runners["peak"], flop_counts["peak"] = matmul_chain(1024, 1024, 1024, chain=4)
    for b in a.batch_sizes:
        for name, (run, f) in layer_products(b, width, max(8, 4096 // b)).items():
            runners[f"{name}_{b}"], flop_counts[f"{name}_{b}"] = run, f
        runners[f"adam_{b}"] = polyvae_epoch(x, config, b)
        runners[f"sgd_{b}"] = variant_epoch(x, config, b, "sgd")
        runners[f"forward_{b}"] = variant_epoch(x, config, b, "forward")
    times = interleaved_times(runners, a.repeats)
    rates = {k: f / times[k]["min"] / 1e9 for k, f in flop_counts.items()}
    peak = rates["peak"]

    per_batch = {}
    for b in a.batch_sizes:
        n_steps = n_frames // b
        counted = analytic_step_flops(config, b)
        xla = xla_step_flops(config, b)
        epoch_matmul = counted["matmul_3x_forward"] * n_steps
        t_adam = times[f"adam_{b}"]["min"]
        t_sgd = times[f"sgd_{b}"]["min"]
        t_fwd = times[f"forward_{b}"]["min"]
        r = {k: rates[f"{k}_{b}"] for k in ("forward_XW", "input_grad_dYWt", "weight_grad_XtdY")}
        bound = epoch_matmul / (peak * 1e9)
        bound_own = epoch_matmul / (r["forward_XW"] * 1e9)
        # the same matrix products, each at the rate its orientation reaches alone
        kernel_bound = (
            (
                counted["matmul_forward"] / r["forward_XW"]
                + (counted["matmul_backward"] / 2) / r["input_grad_dYWt"]
                + (counted["matmul_backward"] / 2) / r["weight_grad_XtdY"]
            )
            * n_steps
            / 1e9
        )
        per_batch[str(b)] = {
            "steps_per_epoch": n_steps,
            "kernels_per_step": xla["kernels_per_step"],
            "epoch_flops_analytic": {k: v * n_steps for k, v in counted.items()},
            "epoch_flops_xla": {
                "step_x_steps": xla["step_flops"] * n_steps,
                "gradient_only_x_steps": xla["gradient_flops"] * n_steps,
                "bytes_accessed_x_steps": xla["step_bytes_accessed"] * n_steps,
            },
            "seconds_per_epoch_min": {
                "polyvae_compiled_epoch": round(t_adam, 5),
                "sgd_instead_of_adam": round(t_sgd, 5),
                "forward_only": round(t_fwd, 5),
            },
            "seconds_per_epoch_median": {
                "polyvae_compiled_epoch": round(times[f"adam_{b}"]["median"], 5),
                "sgd_instead_of_adam": round(times[f"sgd_{b}"]["median"], 5),
                "forward_only": round(times[f"forward_{b}"]["median"], 5),
            },
            "time_split": {
                "adam_update_share": round((t_adam - t_sgd) / t_adam, 3),
                "forward_share": round(t_fwd / t_adam, 3),
                "backward_and_sgd_share": round((t_sgd - t_fwd) / t_adam, 3),
            },
            "achieved_gflops": round(epoch_matmul / t_adam / 1e9, 1),
            "flop_bound_seconds_peak": round(bound, 5),
            "flop_bound_seconds_own_shape_rate": round(bound_own, 5),
            "fraction_of_flop_bound": round(bound / t_adam, 3),
            "fraction_of_flop_bound_own_shape_rate": round(bound_own / t_adam, 3),
            "fraction_of_flop_bound_without_adam": round(bound / t_sgd, 3),
            "layer_product_gflops": {k: round(v, 1) for k, v in r.items()},
            "matmul_seconds_at_layer_product_rates": round(kernel_bound, 5),
            "fraction_of_matmul_seconds_at_layer_product_rates": round(kernel_bound / t_adam, 3),
        }

    result = {
        "benchmark": "flops",
        "data": source,
        "frames": n_frames,
        "architecture": f"{x.shape[1]}-256-256-256-2 (decoder mirrored), learned sigma, relu",
        "parameters": n_params(config),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "flop_count_used": "matrix products only, 3 x forward per step (forward + dX + dW)",
        "peak_gflops_1024x1024_matmul": round(peak, 1),
        "batch_sizes": per_batch,
        "target_fraction_at_batch_ge_256": 0.75,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
