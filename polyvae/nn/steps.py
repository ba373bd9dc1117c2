"""The compiled core of training: an epoch's random plan and its optimizer steps.

:func:`epoch_plan` draws an epoch's batch order and reparameterization noise on the
host; :func:`make_steps` compiles the optimizer steps of a whole sequence of batches
into one ``jax.lax.scan``, so Python is entered once per epoch (or per streamed
block), not once per batch; :func:`evaluate` gives the validation loss.
:func:`polyvae.training.trainer.fit` drives them.

With several devices (GPUs, or CPU devices from
``XLA_FLAGS=--xla_force_host_platform_device_count=N``) the same code trains data
parallel: a one-axis mesh over the devices (:func:`data_mesh`), each batch's rows
sharded across it, parameters and optimizer state replicated; XLA inserts the
gradient all-reduce.
"""

from __future__ import annotations

import logging
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from polyvae._prefetch import prefetch
from polyvae.nn.keys import split_key
from polyvae.nn.model import VAEConfig, loss, loss_terms

__all__ = [
    "HostRows",
    "data_mesh",
    "epoch_plan",
    "evaluate",
    "initial_state",
    "make_ensemble_steps",
    "make_steps",
    "streamed_epoch",
]

logger = logging.getLogger(__name__)

_EVAL_CHUNK = 8192


def data_mesh(batch_size: int, devices=None) -> Mesh:
    """A one-axis device mesh for data-parallel training.

    Every available device when the batch divides evenly among them (each device
    then computes ``batch_size / n`` rows of every step, and the gradients are summed
    across devices); one device otherwise, with a warning.
    """
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) > 1 and batch_size % len(devices):
        logger.warning(
            "batch_size=%d does not divide among %d devices: training on one device",
            batch_size,
            len(devices),
        )
        devices = devices[:1]
    return Mesh(np.asarray(devices), ("batch",))


def epoch_plan(
    k_epoch: jax.Array, n_train: int, batch_size: int, latent_dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """An epoch's random draws, made on the host: batch order and reparameterization noise.

    Both come from NumPy's generator seeded with the epoch key's bits, so they do not
    depend on the device or on JAX's random-number implementation. The trainer
    (:func:`polyvae.training.trainer.fit`, in memory or streamed) takes every epoch from here,
    so the same seed gives the same batches and noise whatever the device or the
    block size.

    Returns
    -------
    order : ndarray (n_batches, batch_size) of int32
        Positions into the training rows: a uniform random permutation cut into full
        batches; the rows of the last partial batch sit this epoch out.
    eps : ndarray (n_batches, batch_size, latent_dim) of float32
        Standard-normal draws for ``z = mean + std * eps``, one per row and step.
    """
    n_batches = n_train // batch_size
    rng = np.random.default_rng(np.asarray(jax.random.key_data(k_epoch), dtype=np.uint32))
    perm = rng.permutation(n_train)
    order = perm[: n_batches * batch_size].astype(np.int32).reshape(n_batches, batch_size)
    eps = rng.standard_normal((n_batches, batch_size, latent_dim), dtype=np.float32)
    return order, eps


def _steps_fn(config: VAEConfig, optimizer, shard_rows=None):
    """The uncompiled ``steps(params, opt_state, data, order, eps, weights=None, beta=None)``
    of :func:`make_steps`; ``beta`` (a number, traced) replaces ``config.beta``."""
    grad_fn = jax.value_and_grad(partial(loss, config=config), has_aux=True)

    def steps(params, opt_state, data, order, eps, weights=None, beta=None):
        def step(carry, inputs):
            params, opt_state = carry
            idx, eps_batch = inputs
            batch = [a[idx] for a in data]
            w_batch = None if weights is None else weights[idx]
            if shard_rows is not None:
                batch = [jax.lax.with_sharding_constraint(b, shard_rows) for b in batch]
                eps_batch = jax.lax.with_sharding_constraint(eps_batch, shard_rows)
            x_in = batch[1] if len(batch) > 1 else None
            (_, (recon, kl)), grads = grad_fn(
                params, batch[0], eps=eps_batch, x_in=x_in, weights=w_batch, beta=beta
            )
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), jnp.stack([recon, kl])

        # unrolling a few steps lets XLA schedule across step boundaries (~15% faster on CPU)
        (params, opt_state), metrics = jax.lax.scan(
            step, (params, opt_state), (order, eps), unroll=4
        )
        finite = jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)])
        )
        return params, opt_state, jnp.mean(metrics, axis=0), finite

    return steps


@partial(jax.jit, static_argnums=0)
def initial_state(optimizer, params):
    """``optimizer.init(params)`` as one compiled program: op by op, the zeros of each
    parameter's shape and the step count compile one program each."""
    return optimizer.init(params)


@lru_cache(maxsize=16)
def make_steps(config: VAEConfig, learning_rate: float, mesh: Mesh | None = None):
    """Adam and one compiled function that runs a sequence of optimizer steps.

    ``steps(params, opt_state, data, order, eps, weights=None) -> (params, opt_state,
    (recon, kl), finite)`` gathers batch ``i`` as ``[a[order[i]] for a in data]`` (``data``
    is ``(targets,)`` or ``(targets, encoder_inputs)``; ``weights``, per row of ``data``
    and of mean 1, weigh each frame's loss) and steps through all rows of ``order`` inside one
    ``lax.scan``, so Python is entered once per call; ``(recon, kl)`` are the means over
    the steps, ``finite`` whether every parameter is still finite. With a mesh of several
    devices each batch's rows are sharded across it. Cached: repeated trainings with
    the same settings reuse the compiled code.

    Returns
    -------
    optimizer : optax.GradientTransformation
    steps : jit-compiled function
    """
    optimizer = optax.adam(learning_rate)
    # rows of each batch are split across the mesh's devices; parameters stay replicated
    shard_rows = None if mesh is None or mesh.size == 1 else NamedSharding(mesh, P("batch"))
    return optimizer, jax.jit(_steps_fn(config, optimizer, shard_rows))


@lru_cache(maxsize=16)
def make_ensemble_steps(config: VAEConfig, learning_rate: float):
    """:func:`make_steps` for M models at once, stacked along a leading model axis.

    ``steps(params, opt_state, data, order, eps, weights, beta)``: ``params`` and
    ``opt_state`` have a leading axis of M members, ``order`` (M, n_batches, B) and
    ``eps`` (M, n_batches, B, L) give each member its own batches and noise, ``beta``
    (M,) its KL weight; ``data`` and ``weights`` (or None) are shared. Returns stacked
    parameters and state, ``(recon, kl)`` of shape (M, 2) and ``finite`` (M,). One
    compiled function steps every member (``jax.vmap``).
    """
    optimizer = optax.adam(learning_rate)
    run = _steps_fn(config, optimizer)
    return optimizer, jax.jit(jax.vmap(run, in_axes=(0, 0, None, 0, 0, None, 0)))


def evaluate(
    params: dict, data: tuple, config: VAEConfig, *, key: jax.Array, weights=None
) -> tuple[float, float]:
    """Mean reconstruction loss and KL over ``data`` (one z sample per frame).

    ``data`` is ``(targets,)`` or ``(targets, encoder_inputs)``; ``weights`` (n,),
    optional, make the means weighted ones.
    """
    fn = _eval_fn(config)
    total = np.zeros(2)
    n = data[0].shape[0]
    for start in range(0, n, _EVAL_CHUNK):
        chunk = tuple(a[start : start + _EVAL_CHUNK] for a in data)
        key, sub = split_key(key)
        if weights is None:
            total += np.asarray(fn(params, chunk, sub), dtype=np.float64) * chunk[0].shape[0]
        else:
            w = np.asarray(weights[start : start + _EVAL_CHUNK], np.float32)
            total += np.asarray(_eval_weighted(config, params, chunk, sub, w), dtype=np.float64)
    recon, kl = total / (n if weights is None else float(np.sum(weights)))
    return float(recon), float(kl)


def _eval_terms(config, params, data, key):
    return loss_terms(params, data[0], config, key=key, x_in=data[1] if len(data) > 1 else None)


@partial(jax.jit, static_argnums=0)
def _eval_impl(config, params, data, key):
    recon, kl = _eval_terms(config, params, data, key)
    return jnp.stack([jnp.mean(recon), jnp.mean(kl)])


@partial(jax.jit, static_argnums=0)
def _eval_weighted(config, params, data, key, weights):
    """Weighted sums of the reconstruction loss and KL over the rows of ``data``."""
    recon, kl = _eval_terms(config, params, data, key)
    return jnp.stack([jnp.sum(weights * recon), jnp.sum(weights * kl)])


def _eval_fn(config):
    return partial(_eval_impl, config)


class HostRows:
    """Lazy ``array[index]`` (float32) that gathers only the rows of the slice asked for."""

    def __init__(self, array: np.ndarray, index: np.ndarray) -> None:
        self._array, self._index = array, index
        self.shape = (index.size, array.shape[1])

    def __getitem__(self, sl: slice) -> np.ndarray:
        return _gather(self._array, self._index[sl])


def _gather(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` as float32, read in ascending row order (sequential on a memmap)."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((rows.size, array.shape[1]), dtype=np.float32)
    out[order] = array[rows[order]]
    return out


def streamed_epoch(steps, params, opt_state, arrays, train_idx, plan, per_block, weights=None):
    """One epoch of :func:`make_steps`' ``steps`` over rows kept in host memory.

    ``arrays`` are host arrays (a memmap too) whose rows ``train_idx[order]`` form the
    batches of ``plan = (order, eps)`` (``weights``, optional, one per row of ``arrays``); ``per_block`` batches at a time are gathered on
    the host in a background thread (ascending row order) and copied to the device
    while the previous block trains, so the device holds at most two blocks.

    Returns
    -------
    params, opt_state, recon, kl, finite
    """
    order, eps = plan
    n_batches, batch_size = order.shape
    starts = range(0, n_batches, per_block)

    def host_blocks():
        for b in starts:
            rows = train_idx[order[b : b + per_block].ravel()]
            n = min(per_block, n_batches - b)
            # the block's rows come in batch order: step i takes rows i*B .. (i+1)*B - 1
            positions = np.arange(n * batch_size, dtype=np.int32).reshape(n, batch_size)
            w = None if weights is None else np.asarray(weights[rows], np.float32)
            yield tuple(_gather(a, rows) for a in arrays), positions, eps[b : b + per_block], w

    blocks = prefetch(host_blocks(), depth=1)
    total = np.zeros(2)
    finite = True
    nxt = jax.device_put(next(blocks))
    for _ in starts:
        (data, positions, block_eps, block_w), nxt = nxt, None
        params, opt_state, metrics, block_finite = steps(
            params, opt_state, data, positions, block_eps, block_w
        )
        following = next(blocks, None)
        if following is not None:  # its copy overlaps the block dispatched above
            nxt = jax.device_put(following)
        # wait for this block before the next is dispatched: at most two on the device
        total += np.asarray(metrics, dtype=np.float64) * positions.shape[0]
        finite = finite and bool(block_finite)
        del data
    recon, kl = (float(v) for v in total / n_batches)
    return params, opt_state, recon, kl, finite
