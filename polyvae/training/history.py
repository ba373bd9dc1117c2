"""A run's per-epoch history: recording an epoch, the overfitting check and the run in
figures (:func:`training_summary`)."""

from __future__ import annotations

import logging

__all__ = ["OVERFIT_NATS", "record", "report_overfitting", "training_summary"]

logger = logging.getLogger(__name__)


OVERFIT_NATS = 1.0
"""Validation -ELBO that rose by more than this (nats per frame) past its best epoch is
reported as overfitting."""


def record(history: dict, prefix: str, recon: float, kl: float, beta: float) -> None:
    history.setdefault(f"{prefix}_recon", []).append(recon)
    history.setdefault(f"{prefix}_kl", []).append(kl)
    history.setdefault(f"{prefix}_elbo", []).append(-(recon + kl))
    history.setdefault(f"{prefix}_loss", []).append(recon + beta * kl)


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


def report_overfitting(history: dict, best_epoch: int, patience: int | None) -> None:
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
