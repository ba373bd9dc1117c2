"""Training: optax Adam, one jit-compiled function per epoch.

An epoch's random draws (a permutation of the training rows cut into full batches,
and the reparameterization noise) are made on the host in one go (:func:`epoch_plan`);
every optimizer step then runs inside a single compiled ``jax.lax.scan``
(:func:`make_steps`), so Python is entered once per epoch, not once per batch. The
same seed gives bit-identical parameters.

With several devices (GPUs, or CPU devices from
``XLA_FLAGS=--xla_force_host_platform_device_count=N``) the same code trains data
parallel: a one-axis mesh over the devices, each batch's rows sharded across it,
parameters and optimizer state replicated; XLA inserts the gradient all-reduce.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from polyvae.model import VAEConfig, _check_int, init_params, loss, loss_terms

__all__ = [
    "TrainConfig",
    "TrainingDivergedError",
    "fit",
    "split_indices",
    "data_mesh",
    "epoch_plan",
    "make_steps",
]

logger = logging.getLogger(__name__)

_EVAL_CHUNK = 8192


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer and schedule settings.

    Parameters
    ----------
    epochs : int
        Passes over the training frames.
    batch_size : int
        Frames per optimizer step; the last partial batch of each (reshuffled) epoch
        is left out of that epoch.
    learning_rate : float
        Adam step size (> 0).
    seed : int
        Seeds the initialization, the validation split, the shuffling and the
        reparameterization noise.
    validation_fraction : float
        Fraction of frames held out for validation (0 <= f < 1).
    """

    epochs: int = 250
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    validation_fraction: float = 0.1

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("seed", self.seed, 0)
        lr = self.learning_rate
        if (
            isinstance(lr, bool)
            or not isinstance(lr, int | float)
            or not math.isfinite(lr)
            or lr <= 0
        ):
            raise ValueError(f"learning_rate must be a positive number; got {lr!r}")
        vf = self.validation_fraction
        if not isinstance(vf, int | float) or not 0 <= vf < 1:
            raise ValueError(f"validation_fraction must be in [0, 1); got {vf!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class TrainingDivergedError(FloatingPointError):
    """The loss or the parameters became NaN/inf.

    Attributes
    ----------
    epoch : int
        1-based epoch in which the non-finite value appeared.
    params : dict
        The last finite parameters (from the end of the previous epoch).
    history : dict
        Per-epoch history up to the last finite epoch.
    """

    def __init__(self, epoch: int, params: dict, history: dict, saved_to=None):
        self.epoch, self.params, self.history, self.saved_to = epoch, params, history, saved_to
        where = f"; the last finite parameters were saved to {saved_to}" if saved_to else ""
        super().__init__(
            f"training diverged: the loss became NaN or inf in epoch {epoch}; the parameters "
            f"from epoch {epoch - 1} are kept{where}. Try a smaller learning_rate."
        )


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into training and validation indices."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(validation_fraction * n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


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
    depend on the device or on JAX's random-number implementation. Every trainer (:func:`fit`, :func:`polyvae.streaming.fit_streaming`) takes its
    epoch from here, so the same seed gives the same batches and noise whatever the
    device or the block size.

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


@lru_cache(maxsize=16)
def make_steps(config: VAEConfig, learning_rate: float, mesh: Mesh | None = None):
    """Adam and one compiled function that runs a sequence of optimizer steps.

    ``steps(params, opt_state, data, order, eps) -> (params, opt_state, (recon, kl), finite)``
    gathers batch ``i`` as ``[a[order[i]] for a in data]`` (``data`` is ``(targets,)`` or
    ``(targets, encoder_inputs)``) and steps through all rows of ``order`` inside one
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
    grad_fn = jax.value_and_grad(partial(loss, config=config), has_aux=True)
    # rows of each batch are split across the mesh's devices; parameters stay replicated
    shard_rows = None if mesh is None or mesh.size == 1 else NamedSharding(mesh, P("batch"))

    @jax.jit
    def steps(params, opt_state, data, order, eps):
        def step(carry, inputs):
            params, opt_state = carry
            idx, eps_batch = inputs
            batch = [a[idx] for a in data]
            if shard_rows is not None:
                batch = [jax.lax.with_sharding_constraint(b, shard_rows) for b in batch]
                eps_batch = jax.lax.with_sharding_constraint(eps_batch, shard_rows)
            x_in = batch[1] if len(batch) > 1 else None
            (_, (recon, kl)), grads = grad_fn(params, batch[0], eps=eps_batch, x_in=x_in)
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

    return optimizer, steps


def evaluate(
    params: dict, data: tuple, config: VAEConfig, *, key: jax.Array
) -> tuple[float, float]:
    """Mean reconstruction loss and KL over ``data`` (one z sample per frame).

    ``data`` is ``(targets,)`` or ``(targets, encoder_inputs)``.
    """
    fn = _eval_fn(config)
    total = np.zeros(2)
    n = data[0].shape[0]
    for start in range(0, n, _EVAL_CHUNK):
        chunk = tuple(a[start : start + _EVAL_CHUNK] for a in data)
        key, sub = jax.random.split(key)
        total += np.asarray(fn(params, chunk, sub), dtype=np.float64) * chunk[0].shape[0]
    recon, kl = total / n
    return float(recon), float(kl)


@partial(jax.jit, static_argnums=0)
def _eval_impl(config, params, data, key):
    recon, kl = loss_terms(
        params, data[0], config, key=key, x_in=data[1] if len(data) > 1 else None
    )
    return jnp.stack([jnp.mean(recon), jnp.mean(kl)])


def _eval_fn(config):
    return partial(_eval_impl, config)


def _check_onehot(x: np.ndarray, name: str) -> None:
    """Raise ValueError naming the first row of ``x`` (T, C) that is not one-hot (0/1, sum 1)."""
    binary = (x == 0) | (x == 1)
    good = binary.all(axis=1) & (x.sum(axis=1) == 1)
    if good.all():
        return
    row = int(np.flatnonzero(~good)[0])
    if binary[row].all():
        why = f"sum {float(x[row].sum())}"
    else:
        col = int(np.flatnonzero(~binary[row])[0])
        why = f"entry {float(x[row, col])} in column {col}"
    raise ValueError(
        f"{name} must be one-hot rows for the categorical likelihood: row {row} is not ({why})"
    )


def _record(history: dict, prefix: str, recon: float, kl: float, beta: float) -> None:
    history.setdefault(f"{prefix}_recon", []).append(recon)
    history.setdefault(f"{prefix}_kl", []).append(kl)
    history.setdefault(f"{prefix}_elbo", []).append(-(recon + kl))
    history.setdefault(f"{prefix}_loss", []).append(recon + beta * kl)


def check_inputs_given(config: VAEConfig, inputs) -> bool:
    """Whether encoder inputs are expected; raise if that and ``inputs`` disagree."""
    if config.n_inputs is None:
        if inputs is not None:
            raise ValueError("inputs given but config.n_inputs is None: the encoder reads features")
        return False
    if inputs is None:
        raise ValueError(
            f"inputs (T, {config.n_inputs}) are required: the model's encoder reads "
            f"n_inputs={config.n_inputs} features other than the {config.n_features} it "
            "reconstructs"
        )
    return True


def prepare_run(n_frames: int, config: VAEConfig, tc: TrainConfig, params=None):
    """Validation split, PRNG keys and initial parameters, the same for every trainer.

    Returns
    -------
    train_idx, val_idx, key, k_val, params
    """
    train_idx, val_idx = split_indices(n_frames, tc.validation_fraction, tc.seed)
    if train_idx.size < tc.batch_size:
        raise ValueError(
            f"batch_size={tc.batch_size} is larger than the {train_idx.size} training frames left "
            f"after the validation split of {n_frames} frames; use a smaller batch_size or more frames"
        )
    key, k_init, k_val = jax.random.split(jax.random.PRNGKey(tc.seed), 3)
    if params is None:
        params = init_params(config, key=k_init)
    return train_idx, val_idx, key, k_val, params


def run_epochs(
    run_epoch, params, opt_state, config: VAEConfig, tc: TrainConfig, key, val_data, k_val, progress
) -> tuple[dict, dict]:
    """The epoch loop shared by :func:`fit` and :func:`polyvae.streaming.fit_streaming`.

    ``run_epoch(params, opt_state, key) -> (params, opt_state, recon, kl, finite)``
    runs one epoch; this loop keys it, records the history, evaluates the validation
    rows, shows progress, and stops with :class:`TrainingDivergedError` (carrying the
    last finite parameters) when the loss or the parameters stop being finite.
    """
    history: dict[str, list] = {}
    bar = tqdm(
        range(1, tc.epochs + 1),
        desc="training",
        unit="epoch",
        disable=not progress,
        mininterval=1.0,
    )
    for epoch in bar:
        t0 = time.perf_counter()
        key, k_epoch = jax.random.split(key)
        new_params, new_state, recon, kl, finite = run_epoch(params, opt_state, k_epoch)
        if not (finite and math.isfinite(recon) and math.isfinite(kl)):
            bar.close()
            raise TrainingDivergedError(epoch, params, history)
        params, opt_state = new_params, new_state
        _record(history, "train", recon, kl, config.beta)
        if val_data is not None:
            _record(history, "val", *evaluate(params, val_data, config, key=k_val), config.beta)
        history.setdefault("epoch_time_s", []).append(time.perf_counter() - t0)
        if progress:
            bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}", refresh=False)
    return params, history


def fit(
    features,
    config: VAEConfig,
    train_config: TrainConfig = TrainConfig(),
    *,
    inputs=None,
    params: dict | None = None,
    progress: bool = True,
) -> tuple[dict, dict]:
    """Train a VAE on a feature matrix.

    Parameters
    ----------
    features : array (T, F)
        Training rows (standardized coordinates, or one-hot rows).
    config : VAEConfig
    train_config : TrainConfig
    inputs : array (T, n_inputs), optional
        Encoder inputs when they differ from the reconstructed features
        (``config.n_inputs`` set), e.g. standardized interatomic distances.
    params : dict, optional
        Starting parameters (default: a fresh seeded initialization).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    params : dict
        Trained parameters.
    history : dict of lists
        Per epoch: ``train_recon``, ``train_kl``, ``train_elbo``, ``train_loss`` (and the
        same with ``val_`` when a validation split is used), in nats per frame;
        ``epoch_time_s``.

    Raises
    ------
    TrainingDivergedError
        When the loss becomes NaN/inf; it carries the last finite parameters.
    """
    if not isinstance(config, VAEConfig):
        raise TypeError(f"config must be a VAEConfig; got {type(config).__name__}")
    if not isinstance(train_config, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig; got {type(train_config).__name__}")
    x = np.asarray(features, dtype=np.float32)
    if config.likelihood == "categorical" and x.ndim == 2 and x.shape[1] != config.n_features:
        raise ValueError(
            f"features have {x.shape[1]} classes but the model expects {config.n_features}"
        )
    if x.ndim != 2 or x.shape[1] != config.n_features:
        raise ValueError(
            f"features must have shape (T, {config.n_features}) to match the model's n_features; "
            f"got {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise ValueError(f"features contains NaN or inf: first bad row is {bad}")
    arrays = [x]
    if check_inputs_given(config, inputs):
        x_in = np.asarray(inputs, dtype=np.float32)
        if x_in.shape != (x.shape[0], config.n_inputs):
            raise ValueError(
                f"inputs must have shape (T, n_inputs) = ({x.shape[0]}, {config.n_inputs}); "
                f"got {x_in.shape}"
            )
        if not np.all(np.isfinite(x_in)):
            bad = int(np.flatnonzero(~np.isfinite(x_in).all(axis=1))[0])
            raise ValueError(f"inputs contains NaN or inf: first bad row is {bad}")
        arrays.append(x_in)
    if config.likelihood == "categorical":
        _check_onehot(x, "features")
    tc = train_config
    train_idx, val_idx, key, k_val, params = prepare_run(x.shape[0], config, tc, params)
    mesh = data_mesh(tc.batch_size)
    if mesh.size > 1:
        logger.info("data-parallel training on %d devices", mesh.size)
    optimizer, steps = make_steps(config, float(tc.learning_rate), mesh)
    replicated = NamedSharding(mesh, P())
    params = jax.device_put(params, replicated)
    opt_state = jax.device_put(optimizer.init(params), replicated)
    train_data = tuple(jax.device_put(a[train_idx], replicated) for a in arrays)
    val_data = (
        tuple(jax.device_put(a[val_idx], replicated) for a in arrays) if val_idx.size else None
    )

    def run_epoch(params, opt_state, key):
        plan = jax.device_put(
            epoch_plan(key, train_idx.size, tc.batch_size, config.latent_dim), replicated
        )
        new_params, new_state, metrics, finite = steps(params, opt_state, train_data, *plan)
        recon, kl = (float(v) for v in np.asarray(metrics))
        return new_params, new_state, recon, kl, bool(finite)

    params, history = run_epochs(
        run_epoch, params, opt_state, config, tc, key, val_data, k_val, progress
    )
    logger.info(
        "trained %d epochs: train -ELBO %.4f%s",
        tc.epochs,
        -history["train_elbo"][-1],
        f", validation -ELBO {-history['val_elbo'][-1]:.4f}" if "val_elbo" in history else "",
    )
    return params, history
