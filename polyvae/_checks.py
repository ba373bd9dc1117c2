"""One family of validators for the public boundary.

Every public function that takes user data checks it here, once, and hands trusted
arrays to the kernels (:mod:`polyvae.geometry`, :mod:`polyvae.nn.model`), which check
nothing. Each error names the argument, says what was expected and what came.

- :func:`ensure_array`: dtype kind, ndim, shape (``None`` entries are free), finiteness,
  value range; returns a NumPy array of the requested dtype.
- :func:`ensure_positions`: coordinates (T, N, D) with D = 2 or 3.
- :func:`ensure_masses`, :func:`ensure_pairs`, :func:`ensure_onehot`.
- :func:`ensure_int`, :func:`ensure_number`, :func:`ensure_choice`: scalars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "ensure_array",
    "ensure_positions",
    "ensure_frames",
    "ensure_same_atoms",
    "ensure_masses",
    "ensure_pairs",
    "ensure_onehot",
    "ensure_finite_rows",
    "ensure_int",
    "ensure_number",
    "ensure_choice",
]


def _shape_text(shape: Sequence[int | None]) -> str:
    parts = ["any" if s is None else str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def ensure_finite_rows(x: np.ndarray, name: str, what: str = "row", offset: int = 0) -> None:
    """Raise ValueError naming the first row (index along axis 0) holding NaN or inf.

    ``offset`` is added to the row number (for blocks of a larger array).
    """
    finite = np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        count = "" if offset else f" ({bad.size} of {x.shape[0]} {what}s affected)"
        raise ValueError(
            f"{name} contains NaN or inf: first bad {what} is {offset + bad[0]}{count}"
        )


def ensure_array(
    value: Any,
    name: str,
    *,
    dtype: Any = np.float64,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    finite: bool = True,
    minimum: float | None = None,
    exclusive_minimum: bool = False,
    integer: bool = False,
) -> np.ndarray:
    """Validate an array and return it as NumPy ``dtype``.

    Parameters
    ----------
    value : array_like
    name : str
        Argument name for messages.
    dtype : numpy dtype
        Result dtype (after the checks).
    ndim : int or sequence of int, optional
        Accepted numbers of dimensions.
    shape : sequence of int or None, optional
        Expected shape; ``None`` entries accept any length.
    finite : bool
        Reject NaN and inf (the first bad row is named).
    minimum : float, optional
        Smallest accepted value (strict with ``exclusive_minimum``).
    integer : bool
        Require an integer dtype (bool excluded).

    Returns
    -------
    ndarray
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):  # ragged sequences
        raise TypeError(
            f"{name} must be a numeric array; got {type(value).__name__} that is not array-like"
        ) from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array; got dtype {arr.dtype}")
    if integer and (arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must hold integers; got dtype {arr.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(map(str, allowed))
            raise ValueError(f"{name} must have {want} dimensions; got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(
            s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)
        ):
            raise ValueError(f"{name} must have shape {_shape_text(shape)}; got {arr.shape}")
    if finite and arr.size and np.issubdtype(arr.dtype, np.floating):
        if arr.ndim == 0:
            if not np.isfinite(arr):
                raise ValueError(f"{name} must be finite; got {arr.item()!r}")
        else:
            ensure_finite_rows(arr, name)
    if minimum is not None and arr.size:
        low = arr.min()
        if low < minimum or (exclusive_minimum and low == minimum):
            rel = ">" if exclusive_minimum else ">="
            raise ValueError(f"{name} must be {rel} {minimum:g}; got a minimum of {low!r}")
    return np.asarray(arr, dtype=dtype)


def ensure_positions(
    value: Any,
    name: str = "positions",
    *,
    min_atoms: int = 1,
    allow_single: bool = True,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Coordinates as a C-contiguous ``dtype`` array (T, N, D), D = 2 or 3, all finite.

    A single frame (N, D) becomes (1, N, D) when ``allow_single``. A :class:`Frames`
    gives its positions.
    """
    positions = getattr(value, "positions", value)
    try:
        arr = np.asarray(positions)
    except (ValueError, TypeError):
        raise TypeError(
            f"{name} must be an array of shape (T, N, D); got {type(value).__name__}"
        ) from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a numeric array of shape (T, N, D); got dtype {arr.dtype}")
    if arr.ndim == 2 and allow_single:
        arr = arr[None]
    if arr.ndim != 3:
        want = "(T, N, D) or (N, D)" if allow_single else "(T, N, D)"
        raise ValueError(
            f"{name} must have shape {want} (frames, atoms, dimensions); got shape {arr.shape}"
        )
    if arr.shape[2] not in (2, 3):
        raise ValueError(
            f"{name} must have D = 2 or 3 spatial dimensions (last axis); got D={arr.shape[2]}"
        )
    if arr.shape[1] < min_atoms:
        raise ValueError(
            f"{name} must hold at least {min_atoms} atoms per frame; got N={arr.shape[1]}"
        )
    if arr.shape[0] < 1:
        raise ValueError(f"{name} holds no frames (T=0)")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    ensure_finite_rows(arr, f"{name}", what="frame")
    return arr


def ensure_frames(
    value: Any, name: str = "positions", *, min_atoms: int = 2, allow_single: bool = True
) -> tuple[np.ndarray, bool]:
    """Coordinates as float64 (T, N, D) and whether a single frame (N, D) came."""
    single = allow_single and np.ndim(getattr(value, "positions", value)) == 2
    x = ensure_positions(
        value, name, min_atoms=min_atoms, allow_single=allow_single, dtype=np.float64
    )
    return x, single


def ensure_same_atoms(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    """Two coordinate sets (T, N, D) with the same N and D."""
    for axis, what in ((1, "number of atoms"), (2, "dimension D")):
        if a.shape[axis] != b.shape[axis]:
            raise ValueError(
                f"{names[0]} and {names[1]} must have the same {what}; "
                f"got {a.shape[axis]} ({names[0]}) and {b.shape[axis]} ({names[1]})"
            )


def ensure_masses(value: Any, n_atoms: int, name: str = "masses") -> np.ndarray:
    """Positive finite masses (N,), float64; ``None`` gives equal masses (ones)."""
    if value is None:
        return np.ones(n_atoms)
    m = ensure_array(value, name, shape=(n_atoms,))
    if np.any(m <= 0):
        raise ValueError(f"{name} must be positive; got min={m.min():g}")
    return m


def ensure_pairs(value: Any, n_atoms: int, name: str = "pairs", width: int = 2) -> np.ndarray:
    """Atom index tuples (P, width) into ``range(n_atoms)``, distinct within a row; int64."""
    arr = np.asarray(value)
    if arr.size == 0:
        return np.zeros((0, width), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{name} must have shape (P, {width}); got shape {arr.shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer atom indices; got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n_atoms:
        raise ValueError(
            f"{name} must index atoms 0 .. {n_atoms - 1}; "
            f"got indices from {arr.min()} to {arr.max()}"
        )
    srt = np.sort(arr, axis=1)
    same = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
    if same.size:
        raise ValueError(
            f"{name} must join different atoms (i != j); row {same[0]} is {arr[same[0]].tolist()}"
        )
    return arr.astype(np.int64)


def ensure_onehot(x: Any, name: str, n_classes: int | None = None, offset: int = 0) -> np.ndarray:
    """One-hot rows (T, C) of zeros and ones summing to 1, float32; the first bad row is named."""
    arr = ensure_array(x, name, dtype=np.float32, ndim=2)
    if n_classes is not None and arr.shape[1] != n_classes:
        raise ValueError(f"{name} has {arr.shape[1]} classes but the model expects {n_classes}")
    binary = (arr == 0) | (arr == 1)
    good = binary.all(axis=1) & (arr.sum(axis=1) == 1)
    if not good.all():
        row = int(np.flatnonzero(~good)[0])
        if binary[row].all():
            why = f"sum {float(arr[row].sum())}"
        else:
            col = int(np.flatnonzero(~binary[row])[0])
            why = f"entry {float(arr[row, col])} in column {col}"
        raise ValueError(
            f"{name} must be one-hot rows for the categorical likelihood: row {offset + row} "
            f"is not ({why})"
        )
    return arr


def ensure_int(value: Any, name: str, minimum: int | None = None, what: str | None = None) -> int:
    """An integer (not bool) >= ``minimum``; ``what`` explains the bound in the message."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        why = f" ({what})" if what else ""
        raise ValueError(f"{name} must be >= {minimum}{why}; got {value}")
    return int(value)


def ensure_number(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    exclusive: bool = False,
    maximum: float | None = None,
    exclusive_maximum: bool = False,
) -> float:
    """A finite real number (not bool) in the given range, as float."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number; got {value!r} ({type(value).__name__})")
    v = float(value)
    low_bad = minimum is not None and (v < minimum or (exclusive and v == minimum))
    high_bad = maximum is not None and (v > maximum or (exclusive_maximum and v == maximum))
    if not math.isfinite(v) or low_bad or high_bad:
        lo = "" if minimum is None else f"{'>' if exclusive else '>='} {minimum:g}"
        hi = "" if maximum is None else f"{'<' if exclusive_maximum else '<='} {maximum:g}"
        rng = " and ".join(s for s in (lo, hi) if s)
        raise ValueError(f"{name} must be a finite number{' ' + rng if rng else ''}; got {value!r}")
    return v


def ensure_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value


def ensure_frames_selected(n_frames: int, start, stop, step) -> range:
    """The frames ``range(n_frames)[start:stop:step]``; ValueError naming the arguments
    given when it is empty."""
    chosen = range(n_frames)[slice(start, stop, step)]
    if len(chosen) == 0:
        given = [f"{k}={v!r}" for k, v in (("start", start), ("stop", stop), ("step", step))]
        given = [g for g in given if not g.endswith("=None")]
        raise ValueError(
            f"{', '.join(given) or 'the frame range'} "
            f"{'select' if len(given) > 1 else 'selects'} no frames of the {n_frames}-frame trajectory"
        )
    return chosen
