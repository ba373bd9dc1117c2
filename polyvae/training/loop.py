"""The epoch loop: keys, validation, history, early stopping, divergence and the signals
(SIGINT, SIGTERM, SIGHUP) that stop training after the epoch under way."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from contextlib import contextmanager

import jax
from tqdm.auto import tqdm

from polyvae.config import TrainConfig, VAEConfig
from polyvae.nn.steps import evaluate
from polyvae.nn.train_state import TrainingInterrupted, TrainState
from polyvae.training.history import record, report_overfitting

__all__ = [
    "INTERRUPT_SIGNALS",
    "REPEAT_SIGNAL_S",
    "TrainingDivergedError",
    "interrupt_flag",
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


def run_epochs(
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
    """The epoch loop of :func:`~polyvae.training.trainer.fit`, in memory or streamed.

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

    with interrupt_flag() as flag:
        for epoch in bar:  # noqa: B007 (the state names the last epoch run)
            t0 = time.perf_counter()
            key, k_epoch = jax.random.split(key)
            new_params, new_state, recon, kl, finite = run_epoch(params, opt_state, k_epoch)
            if not (finite and math.isfinite(recon) and math.isfinite(kl)):
                bar.close()
                raise TrainingDivergedError(epoch, params, history)
            params, opt_state = new_params, new_state
            record(history, "train", recon, kl, config.beta)
            if val_data is not None:
                val = evaluate(params, val_data, config, key=k_val, weights=val_weights)
                record(history, "val", *val, config.beta)
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
    report_overfitting(history, best_epoch, tc.patience)
    return (params if tc.patience is None else best_params), history
