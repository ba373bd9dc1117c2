"""Training on more frames than fit on the device: rows streamed from host memory.

:func:`fit_streaming` trains exactly like :func:`polyvae.train.fit` (same seeds, same
validation split, same history, :class:`~polyvae.train.TrainingDivergedError` on NaN)
but the feature matrix stays in host memory (a NumPy array or an :class:`numpy.memmap`).

Shuffling is a true per-epoch shuffle, the one ``fit`` draws: every epoch draws a
permutation of all training rows from the epoch key (on the CPU device, so it never
takes device memory; JAX's permutation is a stable sort of random bits, so it is the
same permutation ``fit`` draws on any device) and cuts it into full batches. Those
batches are then taken ``block_frames // batch_size`` at a time: the rows of one block
are gathered on the host (in a background thread, in ascending row order so that a
memmap is read front to back), copied to the device with :func:`jax.device_put` while
the previous block is being trained on, and one compiled ``lax.scan`` runs the block's
optimizer steps. The device holds at most two blocks (the one being trained on and the
next one), so its memory is O(``block_frames``), not O(T).

Because the permutation, the per-step keys and the steps are those of ``fit``, the
result does not depend on ``block_frames`` beyond floating-point rounding: with one
block (``block_frames`` >= the training rows) it equals ``fit``'s bit for bit (checked
on CPU); with several, the scan lengths differ and so does XLA's code, and parameters
agree to a few float32 ulps after an epoch. Host cost per epoch: the permutation (about
12 bytes per training row) and one random-access pass over the training rows; a memmap
larger than the page cache is then read at random.
"""

from __future__ import annotations

import logging
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from polyvae.model import VAEConfig, _check_int, loss
from polyvae.train import TrainConfig, check_inputs_given, prepare_run, run_epochs
from polyvae.vae import _prefetch

__all__ = ["fit_streaming"]

logger = logging.getLogger(__name__)

_DEFAULT_TRAIN_CONFIG = TrainConfig()  # frozen dataclass: a safe shared default


class _Rows:
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


def _check_rows(array: np.ndarray, name: str, chunk: int, onehot: bool) -> None:
    """Raise ValueError naming the first non-finite (or, if ``onehot``, non-one-hot) row."""
    for start in range(0, array.shape[0], chunk):
        x = np.asarray(array[start : start + chunk], dtype=np.float32)
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            bad = start + int(np.flatnonzero(~finite)[0])
            raise ValueError(f"{name} contains NaN or inf: first bad row is {bad}")
        if onehot:
            binary = (x == 0) | (x == 1)
            good = binary.all(axis=1) & (x.sum(axis=1) == 1)
            if not good.all():
                row = int(np.flatnonzero(~good)[0])
                raise ValueError(
                    f"{name} must be one-hot rows for the categorical likelihood: row "
                    f"{start + row} is not (entries {x[row].tolist()[:8]})"
                )


def _as_host_matrix(a, name: str, n_rows: int | None, n_cols: int) -> np.ndarray:
    """``a`` as a 2D real NumPy array (a memmap kept as it is) of shape (n_rows, n_cols)."""
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must be a real-valued array; got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != n_cols or n_rows not in (None, a.shape[0]):
        want = f"({'T' if n_rows is None else n_rows}, {n_cols})"
        raise ValueError(f"{name} must have shape {want}; got {a.shape}")
    return a


@lru_cache(maxsize=8)
def _make_block_fn(config: VAEConfig, learning_rate: float, batch_size: int):
    """Adam and its compiled optimizer steps over one block (rows in batch order, a key per batch).

    The step is ``polyvae.train._make_epoch``'s, gathering each batch from the block
    instead of from the whole training array. Cached, so that repeated calls with the
    same settings reuse the compiled code.
    """
    optimizer = optax.adam(learning_rate)
    grad_fn = jax.value_and_grad(partial(loss, config=config), has_aux=True)

    @jax.jit
    def run_block(params, opt_state, data, keys):
        n_batches = keys.shape[0]
        # positions into the block, gathered in the step as fit gathers from the whole array
        batches = jnp.arange(n_batches * batch_size, dtype=jnp.int32).reshape(n_batches, -1)

        def step(carry, inputs):
            params, opt_state = carry
            idx, key = inputs
            batch = [a[idx] for a in data]  # (targets,) or (targets, encoder inputs)
            x_in = batch[1] if len(batch) > 1 else None
            (_, (recon, kl)), grads = grad_fn(params, batch[0], key=key, x_in=x_in)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), jnp.stack([recon, kl])

        (params, opt_state), metrics = jax.lax.scan(
            step, (params, opt_state), (batches, keys), unroll=4
        )
        return params, opt_state, jnp.mean(metrics, axis=0)

    return optimizer, run_block


@jax.jit
def _all_finite(params) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)]))


def _epoch_plan(k_epoch, n_train: int, n_batches: int, batch_size: int):
    """The epoch's batch order (positions into the training rows) and step keys, on the host.

    The same draws as ``polyvae.train._make_epoch``: split the epoch key, permute the
    training rows with the first half, split the second into one key per batch.
    """
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        k_perm, k_steps = jax.random.split(jax.device_put(k_epoch, cpu))
        order = np.asarray(jax.random.permutation(k_perm, n_train))[: n_batches * batch_size]
        keys = np.asarray(jax.random.split(k_steps, n_batches))
    return order, keys


def _run_epoch(block_fn, params, opt_state, arrays, train_idx, plan, batch_size, per_block):
    """Train one epoch block by block; returns params, opt_state and the mean (recon, kl)."""
    order, keys = plan
    n_batches = keys.shape[0]
    starts = range(0, n_batches, per_block)

    def host_blocks():
        for b in starts:
            rows = train_idx[order[b * batch_size : (b + per_block) * batch_size]]
            yield tuple(_gather(a, rows) for a in arrays), keys[b : b + per_block]

    blocks = _prefetch(host_blocks(), depth=1)
    total = np.zeros(2)
    nxt = jax.device_put(next(blocks))
    for _ in starts:
        (data, step_keys), nxt = nxt, None
        params, opt_state, metrics = block_fn(params, opt_state, data, step_keys)
        following = next(blocks, None)
        if following is not None:  # its copy overlaps the block dispatched above
            nxt = jax.device_put(following)
        # wait for this block before the next is dispatched: at most two on the device
        total += np.asarray(metrics, dtype=np.float64) * step_keys.shape[0]
        del data
    recon, kl = (float(v) for v in total / n_batches)
    return params, opt_state, (recon, kl)


def fit_streaming(
    features: np.ndarray,
    config: VAEConfig,
    train_config: TrainConfig = _DEFAULT_TRAIN_CONFIG,
    *,
    inputs: np.ndarray | None = None,
    params: dict | None = None,
    block_frames: int = 65536,
    progress: bool = True,
) -> tuple[dict, dict]:
    """Train a VAE on a feature matrix kept in host memory, streamed to the device in blocks.

    Same seeds, validation split, history and errors as :func:`polyvae.train.fit`, and
    up to floating-point rounding the same parameters, for any ``block_frames`` (see
    the module docstring). The rows are checked (finite; one-hot for the categorical
    likelihood) in one pass of ``block_frames`` rows at a time before training.

    Parameters
    ----------
    features : ndarray or numpy.memmap (T, F)
        Training rows (standardized coordinates, or one-hot rows); any real dtype,
        converted to float32 block by block. Never copied whole.
    config : VAEConfig
    train_config : TrainConfig
    inputs : ndarray or numpy.memmap (T, n_inputs), optional
        Encoder inputs when they differ from the reconstructed features
        (``config.n_inputs`` set).
    params : dict, optional
        Starting parameters (default: a fresh seeded initialization).
    block_frames : int
        Frames moved to the device at a time (rounded down to a multiple of
        ``batch_size``; at least ``batch_size``). Peak device memory is about
        ``2 * block_frames * (F + n_inputs) * 4`` bytes plus the model and optimizer.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    params : dict
        Trained parameters.
    history : dict of lists
        As :func:`polyvae.train.fit`: ``train_recon``, ``train_kl``, ``train_elbo``,
        ``train_loss`` (and ``val_*``), nats per frame; ``epoch_time_s``.

    Raises
    ------
    TrainingDivergedError
        When the loss becomes NaN/inf; it carries the last finite parameters.
    ValueError
        Shapes that do not match the model, NaN/inf rows (the first one is named),
        ``block_frames`` < ``batch_size``, fewer training rows than one batch.
    TypeError
        A non-numeric array, a non-integer ``block_frames``, wrong config types.
    """
    if not isinstance(config, VAEConfig):
        raise TypeError(f"config must be a VAEConfig; got {type(config).__name__}")
    if not isinstance(train_config, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig; got {type(train_config).__name__}")
    tc = train_config
    _check_int("block_frames", block_frames, tc.batch_size, "batch_size")
    x = _as_host_matrix(features, "features", None, config.n_features)
    arrays = [x]
    if check_inputs_given(config, inputs):
        arrays.append(_as_host_matrix(inputs, "inputs", x.shape[0], config.n_inputs))
    for a, name in zip(arrays, ("features", "inputs"), strict=False):
        onehot = config.likelihood == "categorical" and name == "features"
        _check_rows(a, name, block_frames, onehot)

    train_idx, val_idx, key, k_val, params = prepare_run(x.shape[0], config, tc, params)
    optimizer, block_fn = _make_block_fn(config, float(tc.learning_rate), tc.batch_size)
    opt_state = optimizer.init(params)
    val_data = tuple(_Rows(a, val_idx) for a in arrays) if val_idx.size else None
    n_batches = train_idx.size // tc.batch_size
    per_block = block_frames // tc.batch_size

    def run_epoch(params, opt_state, key):
        plan = _epoch_plan(key, train_idx.size, n_batches, tc.batch_size)
        new_params, new_state, (recon, kl) = _run_epoch(
            block_fn, params, opt_state, arrays, train_idx, plan, tc.batch_size, per_block
        )
        return new_params, new_state, recon, kl, bool(_all_finite(new_params))

    params, history = run_epochs(
        run_epoch, params, opt_state, config, tc, key, val_data, k_val, progress
    )
    logger.info(
        "trained %d epochs on %d frames streamed in blocks of %d: train -ELBO %.4f",
        tc.epochs,
        x.shape[0],
        per_block * tc.batch_size,
        -history["train_elbo"][-1],
    )
    return params, history
