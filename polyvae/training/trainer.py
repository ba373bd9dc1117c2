"""Training: one trainer for frames in memory or streamed from host memory.

:func:`train` is what users call: it fits the :class:`~polyvae.features.pipeline.Pipeline`
on the frames (aligning them once), builds the model's configuration, and runs
:func:`fit`, which trains the VAE on the feature matrix with optax Adam. An epoch's
random draws come from :func:`polyvae.nn.steps.epoch_plan` and its optimizer steps run
inside one compiled scan (:func:`polyvae.nn.steps.make_steps`); the same seed gives
bit-identical parameters.

Frames in memory are copied to the device once. Larger feature matrices (above
:data:`STREAM_ABOVE_BYTES`, a :class:`numpy.memmap`, or ``stream=True``) stay in host
memory: each epoch's batches are cut into blocks of ``block_frames`` rows, gathered
on the host in a background thread (in ascending row order, so that a memmap is read
front to back) and copied to the device while the previous block trains. The device
then holds at most two blocks. Batch order, noise and steps are the same either way:
with one block the streamed result equals the in-memory one bit for bit (on CPU);
with several, parameters agree to a few float32 ulps after an epoch.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from polyvae import geometry
from polyvae._checks import (
    ensure_choice,
    ensure_finite_rows,
    ensure_int,
    ensure_onehot,
)
from polyvae._outputs import check_output
from polyvae.config import DECODERS, DEFAULT_PATIENCE, TrainConfig, VAEConfig
from polyvae.features.layout import CARTESIAN_WEIGHTS
from polyvae.features.pipeline import Pipeline
from polyvae.features.topology import backbone_dihedrals
from polyvae.features.topology import model_bonds as resolve_bonds
from polyvae.frames import Frames, evenly_spaced
from polyvae.measures.marginals import distance_marginals
from polyvae.measures.validity import StructureChecks
from polyvae.measures.weights import check_weights, effective_sample_size
from polyvae.metadata import TrainingStats
from polyvae.nn.latent_codes import LatentCodes
from polyvae.nn.model import init_params, sample
from polyvae.nn.steps import (
    HostRows,
    data_mesh,
    epoch_plan,
    evaluate,
    make_steps,
    streamed_epoch,
)
from polyvae.nn.train_state import TrainingInterrupted, TrainState
from polyvae.vae import VAEModel

__all__ = [
    "STREAM_ABOVE_BYTES",
    "PostTrainingError",
    "TrainingDivergedError",
    "choose_cartesian_weight",
    "fit",
    "split_indices",
    "train",
    "training_stats",
    "training_summary",
]

logger = logging.getLogger(__name__)

OVERFIT_NATS = 1.0
"""Validation -ELBO that rose by more than this (nats per frame) past its best epoch is
reported as overfitting."""


STREAM_ABOVE_BYTES = 1 << 30
"""Feature matrices larger than this (1 GiB, float32) are streamed from host memory."""


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

    def __init__(
        self,
        epoch: int,
        params: dict,
        history: dict,
        saved_to=None,
        output=None,
        output_existed: bool = True,
    ):
        self.epoch, self.params, self.history, self.saved_to = epoch, params, history, saved_to
        where = ""
        if saved_to is not None:
            where = f"; they were saved to {saved_to}"
        if output is not None:
            where += (
                f" and {output} was left as it was"
                if output_existed
                else f" and nothing was written to {output}"
            )
        super().__init__(
            f"training diverged: the loss became NaN or inf in epoch {epoch}; the parameters "
            f"from epoch {epoch - 1} are kept{where}. Try a smaller learning rate."
        )


class InterruptedAfterTraining(TrainingInterrupted):
    """SIGINT (or another interrupt) arrived in the work after the last epoch; the trained
    model was saved before it began (``saved_to``; None without an output path)."""

    def __init__(self, step: str, epoch: int, saved_to=None):
        KeyboardInterrupt.__init__(
            self,
            f"interrupted after training (epoch {epoch}), while {step}; "
            + (
                "nothing saved: no output file was given"
                if saved_to is None
                else f"the trained model is saved in {saved_to} without that step "
                f"(continue training with resume={saved_to})"
            ),
        )
        self.step, self.epoch, self.saved_to = step, epoch, saved_to


class PostTrainingError(RuntimeError):
    """A step after the fit failed (e.g. out of memory); the trained model is kept.

    The model was trained; only the step named failed. With an output path, the model
    was saved there before that step, so the file holds the trained model without what
    the step adds.

    Attributes
    ----------
    step : str
        What failed, e.g. ``"choosing the Cartesian weight"``.
    model : VAEModel
        The trained model without what the step adds (for the internal decoder: the
        default Cartesian weight), ready to use or save.
    saved_to : Path or None
        Where that model was saved, if an output path was given.
    """

    def __init__(self, step: str, cause: BaseException, model, saved_to=None):
        self.step, self.model, self.saved_to = step, model, saved_to
        text = " ".join(str(cause).split())
        text = text if len(text) <= 200 else text[:197] + "..."
        why = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
        kept = (
            f"the trained model is saved in {saved_to} without it"
            if saved_to is not None
            else "the trained model, without it, is this error's .model"
        )
        super().__init__(f"{step} failed after training ({why}); {kept}")


def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into training and validation indices."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(validation_fraction * n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _record(history: dict, prefix: str, recon: float, kl: float, beta: float) -> None:
    history.setdefault(f"{prefix}_recon", []).append(recon)
    history.setdefault(f"{prefix}_kl", []).append(kl)
    history.setdefault(f"{prefix}_elbo", []).append(-(recon + kl))
    history.setdefault(f"{prefix}_loss", []).append(recon + beta * kl)


def _split_seed(tc: TrainConfig) -> int:
    return tc.seed if tc.split_seed is None else tc.split_seed


def _prepare_run(n_frames: int, config: VAEConfig, tc: TrainConfig, params=None):
    """Validation split, PRNG keys and initial parameters, the same for every trainer.

    Returns
    -------
    train_idx, val_idx, key, k_val, params
    """
    train_idx, val_idx = split_indices(n_frames, tc.validation_fraction, _split_seed(tc))
    if train_idx.size < tc.batch_size:
        raise ValueError(
            f"batch_size={tc.batch_size} is larger than the {train_idx.size} training frames left "
            f"after the validation split of {n_frames} frames; use a smaller batch_size or more frames"
        )
    key, k_init, k_val = jax.random.split(jax.random.PRNGKey(tc.seed), 3)
    if params is None:
        params = init_params(config, key=k_init)
    return train_idx, val_idx, key, k_val, params


REPEAT_SIGNAL_S = 0.5
"""A signal this soon after the first is the same request (Ctrl-C reaches the command's
process group and is also passed on by its supervising process); a later one interrupts
at once."""

INTERRUPT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""The signals that stop training after the epoch under way, with its state saved."""


_LAST_SIGNAL = [-math.inf]


def repeated_signal() -> bool:
    """Whether a signal arriving now repeats the last one (within
    :data:`REPEAT_SIGNAL_S`); a signal that does not is noted as the last."""
    now = time.monotonic()
    if now - _LAST_SIGNAL[0] < REPEAT_SIGNAL_S:
        return True
    _LAST_SIGNAL[0] = now
    return False


@contextmanager
def _interrupt_flag():
    """A flag set by SIGINT, SIGTERM or SIGHUP (main thread only): the epoch loop checks
    it after each epoch and stops there. A second signal, later than
    :data:`REPEAT_SIGNAL_S`, interrupts at once."""
    flag = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if repeated_signal():
            return
        if flag["signal"] is not None:
            raise KeyboardInterrupt
        flag["signal"] = signum

    old = {sig: signal.signal(sig, handler) for sig in INTERRUPT_SIGNALS}
    try:
        yield flag
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _run_epochs(
    run_epoch,
    params,
    opt_state,
    config: VAEConfig,
    tc: TrainConfig,
    key,
    val_data,
    k_val,
    progress,
    val_weights=None,
    start: TrainState | None = None,
    history: dict | None = None,
    on_state=None,
) -> tuple[dict, dict]:
    """The epoch loop of :func:`fit`, in memory or streamed.

    ``run_epoch(params, opt_state, key) -> (params, opt_state, recon, kl, finite)``
    runs one epoch; this loop keys it, records the history, evaluates the validation
    rows, shows progress, and stops with :class:`TrainingDivergedError` (carrying the
    last finite parameters) when the loss or the parameters stop being finite.
    ``start`` continues a run from its :class:`TrainState` (and ``history``); the state
    after the last epoch goes to ``on_state``, also when SIGINT, SIGTERM or SIGHUP stops the
    loop after an epoch, which then raises :class:`TrainingInterrupted`.
    """
    history = {k: list(v) for k, v in (history or {}).items() if isinstance(v, list)}
    first = 1
    best = (math.inf, 0, params)  # validation loss, epoch, parameters
    if start is not None:
        first = start.epoch + 1
        key = start.key
        if start.best_epoch:
            best = (start.best_loss, start.best_epoch, start.best_params)
    bar = tqdm(
        range(first, tc.epochs + 1),
        desc="training",
        unit="epoch",
        disable=not progress,
        mininterval=1.0,
    )
    epoch = first - 1

    def state():
        if val_data is None:
            return TrainState(epoch, params, opt_state, key)
        # the best epoch's parameters are needed again only where they are returned
        loss, at, kept = best
        return TrainState(
            epoch, params, opt_state, key, loss, at, kept if tc.patience is not None else None
        )

    with _interrupt_flag() as flag:
        for epoch in bar:  # noqa: B007 (the state names the last epoch run)
            t0 = time.perf_counter()
            key, k_epoch = jax.random.split(key)
            new_params, new_state, recon, kl, finite = run_epoch(params, opt_state, k_epoch)
            if not (finite and math.isfinite(recon) and math.isfinite(kl)):
                bar.close()
                raise TrainingDivergedError(epoch, params, history)
            params, opt_state = new_params, new_state
            _record(history, "train", recon, kl, config.beta)
            if val_data is not None:
                val = evaluate(params, val_data, config, key=k_val, weights=val_weights)
                _record(history, "val", *val, config.beta)
                if history["val_loss"][-1] < best[0]:
                    best = (history["val_loss"][-1], epoch, params)
            history.setdefault("epoch_time_s", []).append(time.perf_counter() - t0)
            if progress:
                bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}", refresh=False)
            if flag["signal"] is not None:
                bar.close()
                saved = on_state(state(), history, True) if on_state else None
                raise TrainingInterrupted(epoch, saved)
            if val_data is not None and tc.patience is not None and epoch - best[1] >= tc.patience:
                bar.close()
                logger.info(
                    "early stop after epoch %d: no better validation loss for %d epochs",
                    epoch,
                    tc.patience,
                )
                break
    if on_state is not None:
        on_state(state(), history, False)
    if val_data is None:
        return params, history
    _, best_epoch, best_params = best
    history["best_epoch"] = best_epoch
    history["kept_epoch"] = epoch if tc.patience is None else best_epoch
    _report_overfitting(history, best_epoch, tc.patience)
    return (params if tc.patience is None else best_params), history


def training_summary(history: dict, patience: int | None) -> dict:
    """A run in figures: epochs run, the best validation epoch and the epoch kept, the ELBOs
    there (nats per frame), the train/validation gap at the kept epoch (train ELBO minus
    validation ELBO) and whether the validation -ELBO rose clearly past its best."""
    n = len(history["train_elbo"])
    best = history.get("best_epoch")
    if not best:
        return {"epochs_run": n, "kept_epoch": n, "train_elbo": history["train_elbo"][-1]}
    kept = best if patience is not None else n
    val = history["val_elbo"]
    return {
        "epochs_run": n,
        "best_epoch": best,
        "kept_epoch": kept,
        "train_elbo": history["train_elbo"][kept - 1],
        "val_elbo": val[kept - 1],
        "best_val_elbo": val[best - 1],
        "train_val_gap": history["train_elbo"][kept - 1] - val[kept - 1],
        "overfitting": _overfitting(history, best, patience) is not None,
    }


def _overfitting(history: dict, best_epoch: int, patience: int | None) -> float | None:
    """How far (nats per frame) the validation -ELBO ended above its best epoch's, when it
    rose by more than :data:`OVERFIT_NATS` and the best epoch lies well before the end
    (``patience`` epochs, or a fifth of the run); None otherwise."""
    n = len(history["val_elbo"])
    window = max(10, n // 5) if patience is None else patience
    rise = history["val_elbo"][best_epoch - 1] - history["val_elbo"][-1]  # last minus best -ELBO
    return rise if n - best_epoch >= window and rise > OVERFIT_NATS else None


def _report_overfitting(history: dict, best_epoch: int, patience: int | None) -> None:
    """A warning when :func:`_overfitting` finds the validation -ELBO well past its best."""
    rise = _overfitting(history, best_epoch, patience)
    if rise is not None:
        gap = history["train_elbo"][-1] - history["val_elbo"][-1]
        logger.warning(
            "the model overfits: validation -ELBO rose by %.2f nats per frame after its best "
            "epoch %d of %d (train/validation gap %.2f nats at the end); %s",
            rise,
            best_epoch,
            len(history["val_elbo"]),
            gap,
            "the parameters of the last epoch are kept; early stopping (patience=N, polyvae "
            "train --patience N) keeps the best epoch"
            if patience is None
            else f"the parameters of epoch {best_epoch} are kept",
        )


def _split_weights(weights, n_frames: int, train_idx, val_idx):
    """Checked weights scaled to mean 1 over the training rows, and the validation rows'."""

    w = check_weights(weights, n_frames)
    if not w[train_idx].any():
        raise ValueError("weights: every training frame has weight 0; no frame would count")
    if val_idx.size and not w[val_idx].any():
        raise ValueError(
            "weights: every validation frame has weight 0; change seed or validation_fraction"
        )
    w = w / w[train_idx].mean()
    logger.info(
        "frame weights: effective sample size %.1f of %d frames",
        effective_sample_size(w),
        n_frames,
    )
    return w, (w[val_idx] if val_idx.size else None)


def _weights_record(weights, n_frames: int) -> dict:
    """What the model file keeps of the frame weights: their count and effective sample size."""

    w = check_weights(weights, n_frames)
    return {"n_frames": n_frames, "effective_sample_size": effective_sample_size(w)}


def _host_matrix(a: Any, name: str, n_rows: int | None, n_cols: int, config: VAEConfig):
    """``a`` as a 2D real NumPy array (T, n_cols); a memmap is kept as it is."""
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must be a real-valued array; got dtype {a.dtype}")
    if name == "features" and config.likelihood == "categorical" and a.ndim == 2:
        if a.shape[1] != n_cols:
            raise ValueError(f"features have {a.shape[1]} classes but the model expects {n_cols}")
    if a.ndim != 2 or a.shape[1] != n_cols or n_rows not in (None, a.shape[0]):
        rows = "T" if n_rows is None else n_rows
        what = "n_features" if name == "features" else "n_inputs"
        raise ValueError(
            f"{name} must have shape ({rows}, {n_cols}) to match the model's {what}; got {a.shape}"
        )
    return a


def _check_rows(array: np.ndarray, name: str, block: int, onehot: bool) -> None:
    """Finite (and, if ``onehot``, one-hot) rows, checked ``block`` rows at a time."""
    for start in range(0, array.shape[0], block):
        x = np.asarray(array[start : start + block], dtype=np.float32)
        ensure_finite_rows(x, name, offset=start)
        if onehot:
            ensure_onehot(x, name, offset=start)


def _check_inputs_given(config: VAEConfig, inputs) -> bool:
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


def _wants_stream(arrays: list, stream: bool | None) -> bool:
    if stream is not None:
        if not isinstance(stream, bool):
            raise TypeError(f"stream must be True, False or None (automatic); got {stream!r}")
        return stream
    if any(isinstance(a, np.memmap) for a in arrays):
        return True
    return sum(a.shape[0] * a.shape[1] * 4 for a in arrays) > STREAM_ABOVE_BYTES


def fit(
    features,
    config: VAEConfig,
    train_config: TrainConfig | None = None,
    *,
    inputs=None,
    params: dict | None = None,
    stream: bool | None = None,
    block_frames: int = 65536,
    weights=None,
    progress: bool = True,
    resume: TrainState | None = None,
    history: dict | None = None,
    on_state=None,
) -> tuple[dict, dict]:
    """Train a VAE on a feature matrix, in memory or streamed from host memory.

    Parameters
    ----------
    features : array or numpy.memmap (T, F)
        Training rows (standardized coordinates, or one-hot rows); any real dtype.
        Streamed, it is read ``block_frames`` rows at a time and never copied whole.
    config : VAEConfig
    train_config : TrainConfig, optional
        Default ``TrainConfig()``.
    inputs : array (T, n_inputs), optional
        Encoder inputs when they differ from the reconstructed features
        (``config.n_inputs`` set), e.g. standardized interatomic distances.
    params : dict, optional
        Starting parameters (default: a fresh seeded initialization).
    stream : bool, optional
        Keep the rows in host memory and move ``block_frames`` at a time to the
        device. Default: when the arrays are memmaps or hold more than
        :data:`STREAM_ABOVE_BYTES` as float32.
    block_frames : int
        Rows per streamed block (rounded down to a multiple of ``batch_size``; at
        least ``batch_size``). Peak device memory is then about
        ``2 * block_frames * (F + n_inputs) * 4`` bytes plus the model and optimizer.
    weights : array (T,), optional
        Per-frame weights (e.g. from a biased run, :mod:`polyvae.measures.weights`): each frame's
        loss counts in proportion, in training and in the validation loss.
    progress : bool
        Show a tqdm progress bar.
    resume : TrainState, optional
        Continue a run (same rows, config and ``train_config`` but ``epochs``) from its
        state to ``train_config.epochs`` epochs in total; ``history`` is its history.
    on_state : callable, optional
        ``on_state(state, history, interrupted)`` receives the :class:`TrainState` after
        the last epoch, or after the epoch at which SIGINT, SIGTERM or SIGHUP arrived (then
        :class:`TrainingInterrupted` is raised with what it returns, a saved path).

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
    ValueError
        Shapes that do not match the model, NaN/inf rows (the first one is named),
        rows that are not one-hot for a categorical likelihood, fewer training rows
        than one batch.
    """
    if not isinstance(config, VAEConfig):
        raise TypeError(f"config must be a VAEConfig; got {type(config).__name__}")
    tc = TrainConfig() if train_config is None else train_config
    if not isinstance(tc, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig; got {type(tc).__name__}")
    ensure_int(block_frames, "block_frames", 1)
    block_frames = max(int(block_frames), tc.batch_size)  # a block holds whole batches
    x = _host_matrix(features, "features", None, config.n_features, config)
    arrays = [x]
    if _check_inputs_given(config, inputs):
        arrays.append(_host_matrix(inputs, "inputs", x.shape[0], config.n_inputs, config))
    for a, name in zip(arrays, ("features", "inputs"), strict=False):
        _check_rows(a, name, block_frames, config.likelihood == "categorical" and a is x)
    streamed = _wants_stream(arrays, stream)
    if not streamed:
        arrays = [np.asarray(a, dtype=np.float32) for a in arrays]

    train_idx, val_idx, key, k_val, params = _prepare_run(x.shape[0], config, tc, params)
    if resume is not None:
        params = resume.params
    w_all = w_val = None
    if weights is not None:
        w_all, w_val = _split_weights(weights, x.shape[0], train_idx, val_idx)
    mesh = data_mesh(tc.batch_size) if not streamed else None
    if mesh is not None and mesh.size > 1:
        logger.info("data-parallel training on %d devices", mesh.size)
    optimizer, steps = make_steps(config, float(tc.learning_rate), mesh)
    per_block = block_frames // tc.batch_size
    if streamed:
        opt_state = optimizer.init(params) if resume is None else resume.bind(optimizer)
        val_data = tuple(HostRows(a, val_idx) for a in arrays) if val_idx.size else None

        def run_epoch(params, opt_state, key):
            plan = epoch_plan(key, train_idx.size, tc.batch_size, config.latent_dim)
            return streamed_epoch(
                steps, params, opt_state, arrays, train_idx, plan, per_block, w_all
            )

    else:
        replicated = NamedSharding(mesh, P())
        params = jax.device_put(params, replicated)
        opt_state = jax.device_put(
            optimizer.init(params) if resume is None else resume.bind(optimizer), replicated
        )
        train_data = tuple(jax.device_put(a[train_idx], replicated) for a in arrays)
        val_data = (
            tuple(jax.device_put(a[val_idx], replicated) for a in arrays) if val_idx.size else None
        )

        w_train = None
        if w_all is not None:
            w_train = jax.device_put(jnp.asarray(w_all[train_idx], jnp.float32), replicated)

        def run_epoch(params, opt_state, key):
            plan = jax.device_put(
                epoch_plan(key, train_idx.size, tc.batch_size, config.latent_dim), replicated
            )
            new_params, new_state, metrics, finite = steps(
                params, opt_state, train_data, *plan, w_train
            )
            recon, kl = (float(v) for v in np.asarray(metrics))
            return new_params, new_state, recon, kl, bool(finite)

    params, history = _run_epochs(
        run_epoch,
        params,
        opt_state,
        config,
        tc,
        key,
        val_data,
        k_val,
        progress,
        w_val,
        start=resume,
        history=history,
        on_state=on_state,
    )
    how = f", streamed in blocks of {per_block * tc.batch_size} rows" if streamed else ""
    logger.info(
        "trained %d epochs on %d frames%s: train -ELBO %.4f%s",
        tc.epochs,
        x.shape[0],
        how,
        -history["train_elbo"][-1],
        f", validation -ELBO {-history['val_elbo'][-1]:.4f}" if "val_elbo" in history else "",
    )
    return params, history


def training_stats(
    aligned: np.ndarray, masses: np.ndarray, bonds: np.ndarray | None = None
) -> TrainingStats:
    """Structural statistics of aligned training frames (T, N, D), kept in the model file.

    ``bonds`` (B, 2) are the molecule's bonds (:func:`polyvae.features.topology.model_bonds`);
    default a linear chain in atom order. The closest non-bonded contact of each frame
    (pairs that are not bonds) comes from a neighbour list
    (:func:`polyvae.geometry.closest_contact`): memory grows with N, not N².
    """
    x = np.asarray(aligned, dtype=np.float64)
    n = x.shape[1]
    w = geometry.mass_weights(masses, n)
    rg = geometry.radius_of_gyration(x, w)
    bonds = geometry.chain_bonds(n) if bonds is None else np.asarray(bonds, dtype=np.int64)
    closest = geometry.closest_contact(x, bonds)
    lengths = geometry.pair_distances(x, bonds)
    return TrainingStats(
        rg_min=float(rg.min()),
        rg_mean=float(rg.mean()),
        min_nonbonded_p01=float(np.percentile(closest, 1.0)),
        bond_mean=float(lengths.mean()),
        bond_std=float(lengths.std()),
    )


def _structure_checks(aligned: np.ndarray, bonds: np.ndarray | None = None, names=None):
    """Validity checks fitted on the training frames with the model's bonds (and, in 3D,
    the handedness of the chiral centres found from ``names``), or None for molecules
    too small to have pairs beyond the excluded ones."""

    try:
        return StructureChecks.from_training(aligned, bonds, names=names)
    except ValueError:
        return None


SCAN_ATOMS = 200_000
"""Atoms in all of the structures :func:`choose_cartesian_weight` refines per weight."""


def choose_cartesian_weight(model, aligned: np.ndarray, *, n: int | None = None, seed: int = 0):
    """The internal decoder's model with the Cartesian weight whose structures fit best.

    ``n`` decoder draws (default 256, fewer for large molecules: about
    :data:`SCAN_ATOMS` atoms in all, at least 32; 59 for all-atom AdK's 3341 atoms,
    where each refined structure costs about a second on 2 cores) are turned into
    structures with each
    weight of :data:`polyvae.features.layout.CARTESIAN_WEIGHTS`, and their pair-distance
    marginals compared with the frames ``aligned`` (mean W1/σ over all pairs); the
    lowest wins. The figures are kept in ``metadata["cartesian_weight_scan"]``.

    Returns
    -------
    VAEModel
        A model sharing ``model``'s parameters, with the chosen weight.
    """
    from dataclasses import replace

    if n is None:
        n = int(min(256, max(32, SCAN_ATOMS // model.n_atoms)))
    k_z, k_x = jax.random.split(jax.random.PRNGKey(seed))
    codes = model.latent_codes  # the latent points generate draws, where the model has them
    z = None if codes is None else codes.draw(n, k_z)
    draws, z = sample(model.params, n, model.config, key=k_x, z=z)
    means, _ = sample(model.params, n, model.config, key=k_x, z=z, mean_only=True)
    draws, sigma = np.asarray(draws), model.decoder_sigma
    scan = {}
    quiet = logging.getLogger("polyvae.measures.marginals")  # its notes are the scan's own
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for weight in CARTESIAN_WEIGHTS:
            generated = model.pipeline.inverse_transform(
                draws, sigma, cartesian_weight=weight, start=np.asarray(means)
            )
            w1 = distance_marginals(aligned, generated).to_dict()["mean_w1_normalized"]
            scan[str(weight)] = round(float(w1), 4)
    finally:
        quiet.setLevel(level)
    best = float(min(scan, key=scan.get))
    logger.info("internal decoder: Cartesian weight scan (mean W1/sigma) %s", scan)
    layout = replace(model.pipeline.layout, cartesian_weight=best)
    return VAEModel(
        replace(model.config, layout=layout),
        model.params,
        replace(model.pipeline, layout=layout),
        model.train_config,
        model.history,
        {**model.metadata, "cartesian_weight_scan": scan},
    )


LARGEST_COORDINATE = 1e6
"""Positions beyond this (in the frames' unit) are refused: float32 distances lose their
digits long before (1e6 Å is 0.1 mm), and squares overflow near 1e19."""


def _check_trainable(frames: Frames) -> None:
    """Refuse, before any work, frames no model can be trained on: absurd coordinates."""
    largest = float(np.abs(frames.positions).max())
    if largest > LARGEST_COORDINATE:
        raise ValueError(
            f"frames: positions reach {largest:.3g} {frames.unit}, beyond "
            f"{LARGEST_COORDINATE:.0e}, which float32 training cannot use; check the unit "
            "and the file"
        )


def _check_varies(frames: Frames, aligned: np.ndarray) -> None:
    """Refuse frames that are all one structure (up to a rigid motion): nothing to learn."""
    spread = float(np.max(np.std(aligned, axis=0))) if len(aligned) > 1 else 0.0
    size = float(np.max(np.abs(aligned))) if aligned.size else 0.0
    if spread <= 1e-6 * max(size, 1e-30):
        what = "one frame shows" if frames.n_frames == 1 else f"all {frames.n_frames} frames show"
        raise ValueError(
            f"frames: {what} one structure (after alignment no coordinate varies "
            f"by more than {spread:.2g} {frames.unit}): there is nothing to learn; train on "
            "a trajectory whose frames differ"
        )


def _resolve_decoder(decoder: str | None, n_atoms: int, dim: int) -> str:
    """The decoder to train: ``decoder``, or the default for a molecule of this size."""
    smallest = 4 if dim == 3 else 3
    if decoder is None:
        if n_atoms >= smallest:
            return "internal"
        logger.info(
            "%d atoms in %dD are too few for internal coordinates: the decoder is cartesian",
            n_atoms,
            dim,
        )
        return "cartesian"
    decoder = ensure_choice(decoder, "decoder", DECODERS)
    if decoder == "internal" and n_atoms < smallest:
        raise ValueError(
            f'decoder="internal" needs at least {smallest} atoms in {dim}D; got {n_atoms}: '
            'use decoder="cartesian"'
        )
    return decoder


def _diverged_path(output: str | os.PathLike) -> Path:
    """Where a diverged run keeps its last finite parameters: ``NAME.diverged.SUFFIX``."""
    out = Path(output)
    return out.with_name(f"{out.stem}.diverged{out.suffix}")


def train(
    frames: Frames | Any,
    *,
    latent_dim: int = 2,
    hidden: tuple[int, ...] = (128, 128, 128),
    activation: str = "relu",
    sigma: float | None = None,
    beta: float = 1.0,
    epochs: int = 250,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    validation_fraction: float = 0.1,
    patience: int | None = DEFAULT_PATIENCE,
    align: str = "principal",
    reference: Any = None,
    features: str = "positions",
    pairs: Any = None,
    angles: Any = None,
    dihedrals: Any = None,
    decoder: str | None = None,
    bonds: Any = None,
    stream: bool | None = None,
    weights: Any = None,
    output: str | os.PathLike | None = None,
    progress: bool = True,
    resume: Any = None,
):
    """Center, align and standardize frames, then train a VAE on them.

    Parameters
    ----------
    frames : Frames or array (T, N, D)
        Training trajectory, lengths in Å (or the Frames' unit).
    latent_dim, hidden, activation, sigma, beta
        Architecture and objective, see :class:`polyvae.nn.model.VAEConfig`. ``sigma=None``
        learns the decoder's per-feature noise (recommended); a number fixes it, in
        units of each feature's training standard deviation.
    epochs, batch_size, learning_rate, seed, validation_fraction, patience
        See :class:`TrainConfig`. With a validation split, training stops after
        ``patience`` epochs (default 50) without a better validation loss and the model
        holds the parameters of its best validation epoch (``history["best_epoch"]``);
        ``patience=None`` trains all ``epochs`` and keeps the last.
    align : {"principal", "kabsch", "none"}
        Alignment before flattening; ``reference`` is the Kabsch target (N, D).
    features : {"positions", "distances", "torsions"}
        Encoder input: aligned coordinates; interatomic distances (``pairs``: (P, 2)
        atom pairs, or k for every k-th pair; default all); or the sine and cosine of
        dihedrals, by default the backbone φ/ψ that the atom names and bonds define
        (:func:`polyvae.features.topology.backbone_dihedrals`). MD engines compute the last two
        without alignment.
    angles : array (A, 3) of int, optional
        Bond angles (0-based atom indices into the frames) the encoder also reads, with
        distance or torsion features.
    dihedrals : array (Q, 4) of int, optional
        Dihedrals the encoder reads as sine and cosine: added to distance features, or
        replacing the backbone φ/ψ of torsion features.
    decoder : {"internal", "cartesian"}, optional
        What the decoder reconstructs: aligned Cartesian coordinates with internal
        coordinates (bond lengths, angles, dihedrals) along a Z-matrix of ``bonds``, so
        generated bonds, angles and chiral centres stay physical (see
        :mod:`polyvae.features.layout`); or aligned Cartesian coordinates alone.
        Default: ``"internal"``, or ``"cartesian"`` for molecules too small for a
        Z-matrix (fewer than 3 atoms in 2D, 4 in 3D).
    bonds : array (B, 2) of int, or {"auto", "topology", "guess"}, optional
        The molecule's bonds (0-based, in the frames' atom order), or how to find them
        (:func:`polyvae.features.topology.model_bonds`). ``"auto"`` (the default): the topology's
        bonds (``frames.bonds``) where they join the atoms; completed from distances and
        covalent radii where they do not (a PDB with ``CONECT`` records for some
        residues only); guessed from distances for an all-atom molecule without any;
        else (a Cα trace, beads) a chain in atom order. ``"topology"``: the topology's
        bonds only; ``"guess"``: from distances only. They fix the Z-matrix, the
        structure checks and training statistics and are kept in
        ``metadata["atoms"]["bonds"]``.
    stream : bool, optional
        Stream the training rows from host memory (see :func:`fit`); default: above
        :data:`STREAM_ABOVE_BYTES`.
    weights : array (T,), optional
        Per-frame weights, e.g. ``exp(V/kT)`` of a biased run's bias
        (:func:`polyvae.measures.weights.bias_weights`): each frame's loss counts in proportion,
        in training and validation. Their effective sample size is logged and kept in
        ``metadata["weights"]``.
    output : path, optional
        Save the trained model here: as soon as the fit ends, and again once the steps
        after it (the internal decoder's Cartesian weight) are done; if such a step
        fails, :class:`PostTrainingError` names it and the file holds the trained model
        without it. If training diverges, this file is left as it
        was; the last finite parameters go to ``NAME.diverged.SUFFIX`` next to it and
        the error names that file. SIGINT, SIGTERM or SIGHUP stops training after the current
        epoch and saves the model with its training state here, then raises
        :class:`polyvae.nn.train_state.TrainingInterrupted` naming the file.
    progress : bool
        Show a progress bar.
    resume : path or VAEModel, optional
        Continue the run that wrote this model (its architecture, preprocessing and
        settings) on the same ``frames`` and ``weights``, to ``epochs`` epochs in total;
        the other settings given here are not used. This gives the same parameters, bit
        for bit on one CPU, as one run of ``epochs`` epochs.

    Returns
    -------
    VAEModel

    Raises
    ------
    TrainingDivergedError
        The loss became NaN or inf; it carries the last finite parameters.
    PostTrainingError
        A step after the fit failed (e.g. out of memory while choosing the Cartesian
        weight); its ``.model`` is the trained model without that step, also saved to
        ``output`` when given.
    """

    if not isinstance(frames, Frames):
        frames = Frames(frames)
    if output is not None:  # before any work: a model that cannot be written is not trained
        check_output(output, name="output")
        _refuse_a_source(frames, output)
    if resume is not None:
        given = {k: v for k, v in locals().items() if k in RESUMED_SETTINGS}
        previous = _resumable(resume, frames, epochs, weights, given)
        metadata = {k: v for k, v in previous.metadata.items() if k != "cartesian_weight_scan"}
        return _train(
            frames,
            previous.config,
            previous.pipeline,
            replace(previous.train_config, epochs=epochs),
            previous.pipeline.training_arrays(frames),
            metadata,
            weights,
            stream,
            output,
            progress,
            previous,
        )
    tconfig = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        validation_fraction=validation_fraction,
        patience=patience,
    )
    config, pipeline, prepared, metadata = _prepare_training(
        frames,
        latent_dim=latent_dim,
        hidden=hidden,
        activation=activation,
        sigma=sigma,
        beta=beta,
        align=align,
        reference=reference,
        features=features,
        pairs=pairs,
        angles=angles,
        dihedrals=dihedrals,
        decoder=decoder,
        bonds=bonds,
    )
    return _train(
        frames, config, pipeline, tconfig, prepared, metadata, weights, stream, output, progress
    )


def _prepare_training(
    frames: Frames,
    *,
    latent_dim: int = 2,
    hidden: tuple[int, ...] = (128, 128, 128),
    activation: str = "relu",
    sigma: float | None = None,
    beta: float = 1.0,
    align: str = "principal",
    reference: Any = None,
    features: str = "positions",
    pairs: Any = None,
    angles: Any = None,
    dihedrals: Any = None,
    decoder: str | None = None,
    bonds: Any = None,
):
    """What :func:`train` sets up before fitting: the fitted pipeline and the model.

    Arguments as in :func:`train`.

    Returns
    -------
    config : VAEConfig
    pipeline : Pipeline
        Fitted on ``frames``.
    prepared : PreparedFrames
        The aligned frames, the training targets and the encoder inputs.
    metadata : dict
        Units, atoms and bonds, training statistics and structure checks.
    """
    _check_trainable(frames)
    if isinstance(latent_dim, int) and latent_dim > frames.n_atoms * frames.dim:
        raise ValueError(
            f"latent_dim must be at most the {frames.n_atoms * frames.dim} coordinates of a "
            f"frame; got {latent_dim}"
        )
    model_bonds = resolve_bonds(frames, bonds=bonds)
    decoder = _resolve_decoder(decoder, frames.n_atoms, frames.dim)
    if features == "torsions" and dihedrals is None:
        dihedrals = backbone_dihedrals(frames.names, model_bonds)
        if len(dihedrals) == 0:
            if angles is None:
                raise ValueError(
                    'features="torsions" found no backbone phi/psi: they need atoms named N, '
                    "CA and C, bonded (a peptide with its topology); pass dihedrals=[...] "
                    "(0-based atom quads) instead"
                )
            dihedrals = None
        else:
            logger.info("torsion features: %d backbone phi/psi dihedrals", len(dihedrals))
    pipeline = Pipeline(
        align=align,
        reference=reference,
        features=features,
        pairs=pairs,
        angles=angles,
        dihedrals=dihedrals,
        decoder=decoder,
        bonds=model_bonds if decoder == "internal" else None,
    )
    prepared = pipeline.fit_transform(frames)
    _check_varies(frames, prepared.aligned)
    config = VAEConfig(
        n_features=pipeline.n_features,
        latent_dim=latent_dim,
        hidden=hidden,
        activation=activation,
        sigma=sigma,
        beta=beta,
        n_inputs=pipeline.n_inputs if pipeline.separate_inputs else None,
        decoder=decoder,
        layout=pipeline.layout,
    )
    atoms = frames.metadata.get("atoms") or {
        "names": list(frames.names),
        "masses": frames.masses.tolist(),
    }
    metadata = {
        "unit": frames.unit,
        "names": list(frames.names),
        "n_frames_trained": frames.n_frames,
        "data_fingerprint": data_fingerprint(frames),
        **{k: frames.metadata[k] for k in ("source",) if k in frames.metadata},
        "atoms": {**atoms, "bonds": model_bonds.tolist()},
        "train_stats": training_stats(prepared.aligned, pipeline.masses, model_bonds).to_dict(),
    }
    checks = _structure_checks(prepared.aligned, model_bonds, frames.names)
    if checks is not None:
        metadata["structure_checks"] = checks.to_dict()
    return config, pipeline, prepared, metadata


def _refuse_a_source(frames: Frames, output) -> None:
    """ValueError when ``output`` is one of the files the frames were read from
    (``metadata["source"]``): saving the model would replace them."""
    if not os.path.exists(output):
        return
    for source in str(frames.metadata.get("source") or "").split(", "):
        try:
            same = bool(source) and os.path.samefile(source, output)
        except (OSError, ValueError):
            continue
        if same:
            raise ValueError(
                f"output {str(output)!r} is a file the frames were read from, which saving "
                "the model would replace; choose another output path"
            )


FINGERPRINT_FRAMES = 64
"""Frames (evenly spaced) whose positions make up a training data fingerprint."""


def data_fingerprint(frames: Frames) -> str:
    """A short hash of the training frames: their shape and the positions of up to
    :data:`FINGERPRINT_FRAMES` evenly spaced frames (constant cost for any length)."""
    import hashlib

    x = frames.positions
    pick = np.unique(np.linspace(0, len(x) - 1, min(len(x), FINGERPRINT_FRAMES)).astype(int))
    h = hashlib.sha256(repr(x.shape).encode())
    h.update(np.ascontiguousarray(x[pick], np.float32).tobytes())
    return h.hexdigest()[:16]


# train()'s settings that a resumed run keeps, and where the model holds them
RESUMED_SETTINGS = {
    "latent_dim": lambda m: m.config.latent_dim,
    "hidden": lambda m: tuple(m.config.hidden),
    "activation": lambda m: m.config.activation,
    "beta": lambda m: m.config.beta,
    "batch_size": lambda m: m.train_config.batch_size,
    "learning_rate": lambda m: m.train_config.learning_rate,
    "seed": lambda m: m.train_config.seed,
    "validation_fraction": lambda m: m.train_config.validation_fraction,
    "patience": lambda m: m.train_config.patience,
    "align": lambda m: m.pipeline.align,
    "features": lambda m: m.pipeline.features,
}


def _conflicting_settings(model, name: str, given: dict) -> None:
    """ValueError for the first setting given (not train()'s default) that differs from
    the resumed ``model``'s: a resumed run keeps its own."""
    import inspect

    defaults = inspect.signature(train).parameters
    for key, value in given.items():
        if key not in RESUMED_SETTINGS or value == defaults[key].default:
            continue
        kept = RESUMED_SETTINGS[key](model)
        if (tuple(value) if key == "hidden" else value) != kept:
            raise ValueError(
                f"resume: {name} was trained with {key}={kept!r}; got {key}={value!r}: a "
                f"resumed run keeps its settings; leave {key} out, or train anew"
            )


def _resumable(
    resume: Any, frames: Frames, epochs: int, weights: Any = None, given: dict | None = None
):
    """The model a run continues from, checked against the frames, ``epochs`` and the
    other settings ``given``."""
    model = resume if isinstance(resume, VAEModel) else VAEModel.load(resume)
    name = "the model" if isinstance(resume, VAEModel) else str(resume)
    state = model.train_state
    if state is None or model.train_config is None or model.pipeline is None:
        raise ValueError(
            f"resume: {name} holds no training state (written by an earlier polyvae, or not by "
            "polyvae.train); train it anew"
        )
    ensure_int(epochs, "epochs", 1)
    if epochs <= state.epoch:
        raise ValueError(
            f"resume: {name} has trained {state.epoch} epochs already; epochs is the total to "
            f"reach, so it must exceed {state.epoch}; got {epochs}"
        )
    if "weights" in model.metadata and weights is None:
        raise ValueError(
            f"resume: {name} was trained with frame weights; pass the same weights to continue"
        )
    n = model.metadata.get("n_frames_trained")
    if n != frames.n_frames:
        raise ValueError(
            f"resume: {name} was trained on {n} frames; got {frames.n_frames}: continue on the "
            "same frames"
        )
    stored = model.metadata.get("data_fingerprint")
    if stored is not None and stored != data_fingerprint(frames):
        raise ValueError(
            f"resume: {name} was trained on other frames (as many, {n}, but other positions); "
            "continue on the same frames"
        )
    _conflicting_settings(model, name, given or {})
    return model


def _train(
    frames,
    config,
    pipeline,
    tconfig,
    prepared,
    metadata,
    weights,
    stream,
    output,
    progress,
    previous=None,
):
    """Fit the model, or continue ``previous``, and keep the training state in it."""
    if weights is not None:
        metadata["weights"] = _weights_record(weights, frames.n_frames)
    kept = {}
    existed = output is not None and os.path.exists(output)

    def keep(state, history, interrupted):
        kept["state"] = state
        if interrupted and output is not None:
            model = VAEModel(config, state.params, pipeline, tconfig, history, metadata, state)
            return model.save(output)
        return None

    try:
        params, history = fit(
            prepared.targets,
            config,
            tconfig,
            inputs=prepared.inputs,
            stream=stream,
            weights=weights,
            progress=progress,
            resume=None if previous is None else previous.train_state,
            history=None if previous is None else previous.history,
            on_state=keep,
        )
    except TrainingDivergedError as err:
        if output is None:
            raise
        last = VAEModel(config, err.params, pipeline, tconfig, err.history, metadata)
        saved = last.save(_diverged_path(output))
        raise TrainingDivergedError(
            err.epoch, err.params, err.history, saved_to=saved, output=output,
            output_existed=existed,
        ) from None  # fmt: skip
    return _finished_model(
        config,
        params,
        pipeline,
        tconfig,
        history,
        metadata,
        prepared.aligned,
        kept.get("state"),
        output,
        weights,
    )


def _finished_model(
    config,
    params,
    pipeline,
    tconfig,
    history,
    metadata,
    aligned,
    state=None,
    output=None,
    weights=None,
):
    """The trained :class:`~polyvae.vae.VAEModel`: for the internal decoder with the
    Cartesian weight chosen on the training frames ``aligned``, with its training state
    and, for a coordinate model, the latent codes of ``aligned`` (weighted by
    ``weights``) that :meth:`~polyvae.vae.VAEModel.generate` draws from.

    With ``output``, the model is saved there as soon as it is trained, before any step
    that follows (which may run out of memory on a large molecule), and again once they
    are done. A failing step raises :class:`PostTrainingError`, which names it and
    carries the trained model.
    """
    result = VAEModel(config, params, pipeline, tconfig, history, metadata)
    result.train_state = state
    saved = None if output is None else result.save(output)
    step = "keeping the latent codes of the training frames"
    try:
        if pipeline is not None:
            try:
                result.latent_codes = LatentCodes.of(result, aligned, weights)
                if config.likelihood == "gaussian":
                    rmsd = result.reconstruction_rmsd(aligned[evenly_spaced(len(aligned), 256)])
                    result.metadata["reconstruction_rmsd"] = {
                        "median": round(float(np.median(rmsd)), 6),
                        "p99": round(float(np.percentile(rmsd, 99)), 6),
                    }
            except Exception as exc:  # MemoryError, XLA's RESOURCE_EXHAUSTED, ...
                raise PostTrainingError(step, exc, result, saved) from exc
        if config.decoder != "internal":
            if output is not None and result.latent_codes is not None:
                result.save(output)
            return result
        step = "choosing the Cartesian weight"
        try:
            chosen = choose_cartesian_weight(result, aligned)
        except Exception as exc:  # MemoryError, XLA's RESOURCE_EXHAUSTED, ...
            raise PostTrainingError(step, exc, result, saved) from exc
        chosen.train_state = state
        chosen.latent_codes = result.latent_codes
        if output is not None:
            chosen.save(output)
        return chosen
    except KeyboardInterrupt:
        epoch = len(history.get("train_loss", ()))
        raise InterruptedAfterTraining(step, epoch, saved) from None
