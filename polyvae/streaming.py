"""Training on more frames than fit on the device: rows streamed from host memory.

:func:`fit_streaming` trains exactly like :func:`polyvae.train.fit` (same seeds, same
validation split, same history, :class:`~polyvae.train.TrainingDivergedError` on NaN)
but the feature matrix stays in host memory (a NumPy array or an :class:`numpy.memmap`).

Shuffling is a true per-epoch shuffle, the one ``fit`` draws: every epoch takes its
batch order and reparameterization noise from :func:`polyvae.train.epoch_plan` (made on
the host) and cuts the batches into blocks of ``block_frames // batch_size``. The rows
of one block are gathered on the host (in a background thread, in ascending row order so
that a memmap is read front to back), copied to the device with :func:`jax.device_put`
while the previous block is being trained on, and the compiled steps of
:func:`polyvae.train.make_steps` run the block. The device holds at most two blocks (the
one being trained on and the next one), so its memory is O(``block_frames``), not O(T).

Because the batch order, the noise and the steps are those of ``fit``, the
result does not depend on ``block_frames`` beyond floating-point rounding: with one
block (``block_frames`` >= the training rows) it equals ``fit``'s bit for bit (checked
on CPU); with several, the scan lengths differ and so does XLA's code, and parameters
agree to a few float32 ulps after an epoch. Host cost per epoch: the plan (about
12 + 4 L bytes per training row) and one random-access pass over the training rows; a
memmap larger than the page cache is then read at random.
"""

from __future__ import annotations

import logging

import jax
import numpy as np

from polyvae.model import VAEConfig, _check_int
from polyvae.train import (
    TrainConfig,
    check_inputs_given,
    epoch_plan,
    make_steps,
    prepare_run,
    run_epochs,
)
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


def _run_epoch(steps, params, opt_state, arrays, train_idx, plan, per_block):
    """Train one epoch block by block; returns params, opt_state, the mean (recon, kl), finite."""
    order, eps = plan
    n_batches, batch_size = order.shape
    starts = range(0, n_batches, per_block)

    def host_blocks():
        for b in starts:
            rows = train_idx[order[b : b + per_block].ravel()]
            n = min(per_block, n_batches - b)
            # the block's rows come in batch order: step i takes rows i*B .. (i+1)*B - 1
            positions = np.arange(n * batch_size, dtype=np.int32).reshape(n, batch_size)
            yield tuple(_gather(a, rows) for a in arrays), positions, eps[b : b + per_block]

    blocks = _prefetch(host_blocks(), depth=1)
    total = np.zeros(2)
    finite = True
    nxt = jax.device_put(next(blocks))
    for _ in starts:
        (data, positions, block_eps), nxt = nxt, None
        params, opt_state, metrics, block_finite = steps(
            params, opt_state, data, positions, block_eps
        )
        following = next(blocks, None)
        if following is not None:  # its copy overlaps the block dispatched above
            nxt = jax.device_put(following)
        # wait for this block before the next is dispatched: at most two on the device
        total += np.asarray(metrics, dtype=np.float64) * positions.shape[0]
        finite = finite and bool(block_finite)
        del data
    recon, kl = (float(v) for v in total / n_batches)
    return params, opt_state, (recon, kl), finite


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
    optimizer, steps = make_steps(config, float(tc.learning_rate))
    opt_state = optimizer.init(params)
    val_data = tuple(_Rows(a, val_idx) for a in arrays) if val_idx.size else None
    per_block = block_frames // tc.batch_size

    def run_epoch(params, opt_state, key):
        plan = epoch_plan(key, train_idx.size, tc.batch_size, config.latent_dim)
        new_params, new_state, (recon, kl), finite = _run_epoch(
            steps, params, opt_state, arrays, train_idx, plan, per_block
        )
        return new_params, new_state, recon, kl, finite

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
