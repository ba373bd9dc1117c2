"""Per-frame weights: frames of a biased run count by how likely they are without the bias.

A biased simulation (metadynamics, umbrella sampling) visits states in proportions that
its bias V changed; frame t counts ``w_t ∝ exp(V_t / kT)`` in an average over the
unbiased ensemble (with a static bias, or the final bias of a converged well-tempered
run). :func:`bias_weights` computes these with log-sum-exp, :func:`check_weights`
validates any weights against a trajectory, :func:`effective_sample_size` says how many
independent frames they are worth, and :func:`read_weights` reads them as the command
line names them: a file of one weight per frame, or a bias column of a PLUMED COLVAR.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from polyvae.io.colvar import read_colvar

__all__ = [
    "KB_KJ_PER_MOL_K",
    "bias_weights",
    "check_temperature",
    "check_weights",
    "effective_sample_size",
    "read_weights",
]

KB_KJ_PER_MOL_K = 0.0083144626
"""Boltzmann's constant in kJ/mol/K (PLUMED's default energy unit is kJ/mol)."""


def check_weights(weights: Any, n_frames: int, name: str = "weights") -> np.ndarray:
    """``weights`` as float64 (n_frames,), normalized to mean 1; one clear error each for
    a wrong shape or count, NaN/inf, negative values, and all zero."""
    w = np.asarray(weights)
    if w.dtype == object or not (np.issubdtype(w.dtype, np.number) or w.dtype == bool):
        raise TypeError(f"{name} must be numbers, one per frame; got dtype {w.dtype}")
    w = w.astype(np.float64)
    if w.ndim != 1:
        raise ValueError(f"{name} must be one number per frame, shape ({n_frames},); got {w.shape}")
    if w.size != n_frames:
        raise ValueError(f"{name} must hold one weight per frame ({n_frames}); got {w.size}")
    bad = np.flatnonzero(~np.isfinite(w))
    if bad.size:
        raise ValueError(f"{name} must be finite; frame {bad[0]} has {w[bad[0]]}")
    neg = np.flatnonzero(w < 0)
    if neg.size:
        raise ValueError(f"{name} must be >= 0; frame {neg[0]} has {w[neg[0]]}")
    if not w.any():
        raise ValueError(f"{name} are all zero: no frame would count")
    return w / w.mean()


def effective_sample_size(weights: Any) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2``: between 1 and the count."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / np.sum(w**2))


def check_temperature(temperature: Any) -> float:
    """A temperature in kelvin: a finite number > 0, else one error naming it."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float | np.number)
        or not np.isfinite(temperature)
        or temperature <= 0
    ):
        raise ValueError(f"temperature must be a finite number > 0 (kelvin); got {temperature!r}")
    return float(temperature)


def bias_weights(bias: Any, temperature: float, name: str = "bias") -> np.ndarray:
    """Weights ``∝ exp(V / kT)`` of frames with bias energies ``V`` (kJ/mol) at
    ``temperature`` (K), normalized to mean 1 with log-sum-exp (no overflow)."""
    v = np.asarray(bias, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one energy per frame; got shape {v.shape}")
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise ValueError(f"{name} must be finite; frame {bad[0]} has {v[bad[0]]}")
    check_temperature(temperature)
    a = v / (KB_KJ_PER_MOL_K * float(temperature))
    log_w = a - (np.log(np.mean(np.exp(a - a.max()))) + a.max())
    return np.exp(log_w)


def split_weights_spec(spec: str | os.PathLike) -> tuple[str, str]:
    """``(path, column)`` of ``COLVAR:COLUMN``, or ``(path, "")`` for a weights file (an
    existing file whose name holds a colon stays a file)."""
    text = str(spec)
    if ":" in text and not Path(text).exists():
        path, _, column = text.rpartition(":")
        return path, column
    return text, ""


def read_weights(
    spec: str | os.PathLike, n_frames: int, temperature: float | None = None
) -> np.ndarray:
    """Weights as the command line gives them, checked against ``n_frames``.

    ``spec`` is a file of one weight per frame (``.npy``, or text with one number per
    line), or ``COLVAR:COLUMN``: the named column of a PLUMED COLVAR file holds the bias
    in kJ/mol (e.g. ``metad.bias``), turned into ``exp(V / kT)`` at ``temperature`` (K).
    """
    path, column = split_weights_spec(spec)
    if column:
        if temperature is None:
            raise ValueError(
                f"weights from the COLVAR column {column!r} need the temperature (kelvin) "
                "of the run: pass temperature (--temperature)"
            )
        if not Path(path).is_file():
            raise FileNotFoundError(f"weights: COLVAR file {path!r} does not exist")
        fields, data = read_colvar(path)
        if column not in fields:
            raise ValueError(f"weights: {path} has no column {column!r}; it has {fields}")
        bias = data[:, fields.index(column)]
        if bias.size != n_frames:
            raise ValueError(
                f"weights: {path} has {bias.size} rows but the trajectory has {n_frames} frames"
            )
        return check_weights(bias_weights(bias, temperature, name=f"{path}:{column}"), n_frames)
    if temperature is not None:
        raise ValueError(
            "temperature is used only with weights from a COLVAR bias column (COLVAR:COLUMN); "
            f"got a weights file {path!r}"
        )
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file {path!r} does not exist")
    try:
        w = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, dtype=np.float64, ndmin=1)
    except ValueError as exc:
        raise ValueError(f"weights file {path}: not one number per line ({exc})") from None
    return check_weights(np.ravel(w) if np.ndim(w) == 2 and 1 in np.shape(w) else w, n_frames)
