"""The epoch loop, for one model or several trained side by side: keys, validation,
history, early stopping, divergence and the signals (SIGINT, SIGTERM, SIGHUP) that stop
training after the epoch under way; and one model's epoch, in memory or streamed."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from polyvae.config import TrainConfig, VAEConfig
from polyvae.nn.keys import split_key
from polyvae.nn.steps import HostRows, epoch_plan, evaluate, streamed_epoch
from polyvae.nn.train_state import TrainingInterrupted, TrainState
from polyvae.training.history import record, report_overfitting

__all__ = [
    "INTERRUPT_SIGNALS",
    "REPEAT_SIGNAL_S",
    "MemberRun",
    "Members",
    "TrainingDivergedError",
    "interrupt_flag",
    "one_model_epochs",
    "repeated_signal",
    "run_epochs",
]

logger = logging.getLogger(__name__)


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
def interrupt_flag():
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


@jax.jit
def _take(tree, m):
    """Member ``m`` of stacked pytrees."""
    return jax.tree.map(lambda a: a[m], tree)


def _where_members(mask, new, old):
    """Per member (leading axis): ``new`` where ``mask``, else ``old``."""
    return _where_stacked(jnp.asarray(mask), new, old)


@jax.jit
def _where_stacked(mask, new, old):
    return jax.tree.map(
        lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old
    )


def _where_one(mask, new, old):
    return new if mask[0] else old


def _stack(trees):
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


@dataclass(frozen=True)
class Members:
    """How :func:`run_epochs` reaches each of the ``count`` models it trains.

    :meth:`one` is a single model (parameters as they are); :meth:`stacked` are
    ``count`` models whose parameters and optimizer states carry a leading model axis
    (trained by one vmapped step, :func:`polyvae.nn.steps.make_ensemble_steps`).
    ``take(tree, m)`` is member m's tree, ``where(mask, new, old)`` takes ``new`` for the
    members where ``mask`` (M,) is true, ``stack(trees)`` joins one tree per member.
    """

    count: int
    take: Callable[[Any, int], Any]
    where: Callable[[np.ndarray, Any, Any], Any]
    stack: Callable[[list], Any]

    @classmethod
    def one(cls) -> Members:
        return cls(1, lambda tree, m: tree, _where_one, lambda trees: trees[0])

    @classmethod
    def stacked(cls, count: int) -> Members:
        return cls(count, _take, _where_members, _stack)


@dataclass
class MemberRun:
    """What :func:`run_epochs` gives back for one member.

    Attributes
    ----------
    params
        The parameters kept: with early stopping those of the best validation epoch,
        otherwise the last; for a member that diverged, those of the epoch before.
    history : dict
        Per-epoch lists (see :func:`~polyvae.training.trainer.fit`), with ``best_epoch``
        and ``kept_epoch`` when there was a validation split (not for a member that
        diverged).
    state : TrainState or None
        The state after the last epoch, to continue from; None for a member that diverged.
    best_epoch : int
        The best validation epoch so far (0: none).
    diverged : int or None
        The epoch in which the loss or the parameters stopped being finite.
    """

    params: Any
    history: dict
    state: TrainState | None
    best_epoch: int = 0
    diverged: int | None = None


def run_epochs(
    run_epoch,
    params,
    opt_state,
    keys: list,
    tc: TrainConfig,
    betas: list,
    *,
    members: Members | None = None,
    validate=None,
    starts: list | None = None,
    histories: list | None = None,
    on_interrupt=None,
    progress: bool = True,
    names: list | None = None,
) -> list[MemberRun]:
    """The epoch loop for one model or several trained side by side, in memory or streamed.

    ``run_epoch(params, opt_state, epoch_keys) -> (params, opt_state, metrics, finite)``
    runs one epoch of every member, member m with its key ``epoch_keys[m]``; ``metrics``
    (M, 2) are each member's mean reconstruction loss and KL, ``finite`` (M,) whether its
    parameters are still finite. ``validate(params) -> (M, 2)`` gives the validation
    reconstruction loss and KL (None: no validation split). This loop keys the epochs
    (member m from ``keys[m]``), records each member's history (its KL weighed by
    ``betas[m]``), keeps its best validation epoch, stops it after ``tc.patience``
    epochs without a better one, and stops a member whose loss or parameters stop being
    finite (keeping the last finite parameters). It ends when ``tc.epochs`` are run or
    no member trains on; ``members`` (default: one model) says how to reach each one.

    ``starts`` (one :class:`TrainState` per member) and ``histories`` continue runs.
    SIGINT, SIGTERM or SIGHUP stops the loop after the epoch under way: then
    ``on_interrupt(states, histories)`` (states None for members that diverged) keeps
    them and :class:`TrainingInterrupted` is raised with what it returns, where they
    were saved. ``names`` (one per member) name the members in the log: a member that
    diverges is then reported and the others train on.
    """
    members = Members.one() if members is None else members
    count = members.count
    keys = list(keys)
    histories = [
        {k: list(v) for k, v in (h or {}).items() if isinstance(v, list)}
        for h in (histories or [None] * count)
    ]
    first = 1
    best_loss = [math.inf] * count
    best_epoch = [0] * count
    best_params = params
    if starts is not None:
        first = starts[0].epoch + 1
        keys = [s.key for s in starts]
        for m, s in enumerate(starts):
            if s.best_epoch:
                best_loss[m], best_epoch[m] = s.best_loss, s.best_epoch
        if tc.patience is not None:
            best_params = members.stack(
                [
                    s.best_params if s.best_epoch else members.take(params, m)
                    for m, s in enumerate(starts)
                ]
            )
    done: list[MemberRun | None] = [None] * count
    bar = tqdm(
        range(first, tc.epochs + 1),
        desc="training" if count == 1 else f"training {count} models",
        unit="epoch",
        disable=not progress,
        mininterval=1.0,
    )
    epoch = first - 1

    def state(m):
        p, s = members.take(params, m), members.take(opt_state, m)
        if validate is None:
            return TrainState(epoch, p, s, keys[m])
        # the best epoch's parameters are needed again only where they are returned
        kept = members.take(best_params, m) if tc.patience is not None else None
        return TrainState(epoch, p, s, keys[m], best_loss[m], best_epoch[m], kept)

    def finish(m):
        history, last = histories[m], state(m)
        if validate is None:
            done[m] = MemberRun(last.params, history, last)
            return
        history["best_epoch"] = best_epoch[m]
        history["kept_epoch"] = epoch if tc.patience is None else best_epoch[m]
        report_overfitting(history, best_epoch[m], tc.patience)
        kept = last.params if tc.patience is None else members.take(best_params, m)
        done[m] = MemberRun(kept, history, last, best_epoch[m])

    def running():
        return [m for m in range(count) if done[m] is None]

    with interrupt_flag() as flag:
        for epoch in bar:  # noqa: B007 (the states name the last epoch run)
            t0 = time.perf_counter()
            previous, epoch_keys = list(keys), []
            for m in range(count):
                keys[m], k_epoch = split_key(keys[m])
                epoch_keys.append(k_epoch)
            new_params, new_state, metrics, finite = run_epoch(params, opt_state, epoch_keys)
            metrics = np.asarray(metrics, dtype=np.float64)
            finite = np.asarray(finite) & np.all(np.isfinite(metrics), axis=1)
            val = None
            if validate is not None and finite[running()].any():
                val = np.asarray(validate(new_params), dtype=np.float64)
            seconds = (time.perf_counter() - t0) / count
            improved = np.zeros(count, dtype=bool)
            for m in running():
                if not finite[m]:
                    done[m] = MemberRun(
                        members.take(params, m), histories[m], None, best_epoch[m], epoch
                    )
                    keys[m] = previous[m]
                    if names is not None:
                        logger.warning(
                            "member %s diverged in epoch %d: its parameters of epoch %d are kept",
                            names[m],
                            epoch,
                            epoch - 1,
                        )
                    continue
                history = histories[m]
                record(history, "train", *map(float, metrics[m]), betas[m])
                if val is not None:
                    record(history, "val", *map(float, val[m]), betas[m])
                    if history["val_loss"][-1] < best_loss[m]:
                        best_loss[m], best_epoch[m] = history["val_loss"][-1], epoch
                        improved[m] = True
                history.setdefault("epoch_time_s", []).append(seconds)
            best_params = members.where(improved, new_params, best_params)
            params, opt_state = new_params, new_state
            if not running():  # every member diverged
                bar.close()
                break
            if progress and count == 1:
                bar.set_postfix(loss=f"{histories[0]['train_loss'][-1]:.3f}", refresh=False)
            if flag["signal"] is not None:
                bar.close()
                states = [state(m) if d is None else d.state for m, d in enumerate(done)]
                saved = on_interrupt(states, histories) if on_interrupt else None
                raise TrainingInterrupted(epoch, saved, several=names is not None)
            if validate is not None and tc.patience is not None:
                for m in running():
                    if epoch - best_epoch[m] >= tc.patience:
                        if names is None:
                            logger.info(
                                "early stop after epoch %d: no better validation loss for %d "
                                "epochs",
                                epoch,
                                tc.patience,
                            )
                        else:
                            logger.info("member %s: early stop after epoch %d", names[m], epoch)
                        finish(m)
            if not running():
                bar.close()
                break
    for m in running():
        finish(m)
    return done


def one_model_epochs(
    steps,
    config: VAEConfig,
    tc: TrainConfig,
    arrays,
    split,
    weights,
    k_val,
    *,
    mesh=None,
    per_block=None,
):
    """One model's epoch and validation for :func:`run_epochs`, with the compiled
    ``steps`` of :func:`polyvae.nn.steps.make_steps`.

    ``arrays`` are the feature matrices (and encoder inputs), ``split`` the training and
    validation row indices, ``weights`` the weights of all rows and of the validation
    rows (or None), ``k_val`` the key of the validation noise. With ``per_block`` the
    rows stay in host memory and ``per_block`` batches at a time are streamed to the
    device (:func:`polyvae.nn.steps.streamed_epoch`); otherwise they are copied once to
    the devices of ``mesh``.

    Returns
    -------
    run_epoch, validate
        As :func:`run_epochs` takes them (``validate`` None without validation rows).
    place
        Puts parameters or an optimizer state where the steps want them.
    """
    train_idx, val_idx = split
    w_all, w_val = weights
    if per_block is not None:
        val_data = tuple(HostRows(a, val_idx) for a in arrays) if val_idx.size else None

        def run_epoch(params, opt_state, keys):
            plan = epoch_plan(keys[0], train_idx.size, tc.batch_size, config.latent_dim)
            params, opt_state, recon, kl, finite = streamed_epoch(
                steps, params, opt_state, arrays, train_idx, plan, per_block, w_all
            )
            return params, opt_state, np.array([[recon, kl]]), np.array([finite])

        def place(tree):
            return tree

    else:
        replicated = NamedSharding(mesh, P())
        train_data = tuple(jax.device_put(a[train_idx], replicated) for a in arrays)
        val_data = (
            tuple(jax.device_put(a[val_idx], replicated) for a in arrays) if val_idx.size else None
        )
        w_train = None
        if w_all is not None:
            w_train = jax.device_put(np.asarray(w_all[train_idx], np.float32), replicated)

        def run_epoch(params, opt_state, keys):
            plan = jax.device_put(
                epoch_plan(keys[0], train_idx.size, tc.batch_size, config.latent_dim), replicated
            )
            new_params, new_state, metrics, finite = steps(
                params, opt_state, train_data, *plan, w_train
            )
            return new_params, new_state, np.asarray(metrics)[None], np.array([bool(finite)])

        def place(tree):
            return jax.device_put(tree, replicated)

    def validate(params):
        return np.array([evaluate(params, val_data, config, key=k_val, weights=w_val)])

    return run_epoch, (validate if val_data is not None else None), place
