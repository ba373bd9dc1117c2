"""Latent CVs as a PLUMED COLVAR file: write, read, and encode a trajectory into one.

Format facts (from PLUMED's own sources; reference only, no code taken):

* PLUMED's ``PRINT`` writes a header line ``#! FIELDS time <name> <name> ...`` and then
  one line per printed step: the time and the values, each preceded by a space
  (``PRINT`` prepends a blank to its ``FMT``, default ``%f``); other ``#!`` lines
  (``#! SET ...``) may follow the header. Example: the ANN regression test's
  ``colvar.reference`` begins ``#! FIELDS time ann.node-0``.
  https://github.com/plumed/plumed2/blob/master/src/generic/Print.cpp
  https://github.com/plumed/plumed2/blob/master/regtest/annfunc/rt-test/colvar.reference

Here the values are written with ``%.9g`` (about float32 resolution is what the
encoder gives; 9 significant digits keep every float32 exactly), times with ``%.9g``
too, so that ``numpy.loadtxt`` (which skips ``#`` lines) reads the file directly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyvae._outputs import atomic_output
from polyvae.frames import Frames
from polyvae.io.colvar import read_colvar  # noqa: F401  (importable here too)

__all__ = ["write_colvar", "colvar_for_model"]

_FMT = "%.9g"


def _names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        return [f"z{i}" for i in range(n)]
    names = [str(s) for s in names]
    if len(names) != n:
        raise ValueError(f"names must have one entry per CV column ({n}); got {len(names)}")
    for s in names:
        if not s or any(c.isspace() for c in s) or s == "time":
            raise ValueError(
                f"names must be non-empty, without whitespace and not 'time'; got {s!r}"
            )
    if len(set(names)) != n:
        raise ValueError(f"names must be unique; got {names}")
    return names


def write_colvar(
    path: str | os.PathLike,
    times: Any,
    cv: Any,
    *,
    names: Sequence[str] | None = None,
) -> Path:
    """Write CVs as a PLUMED COLVAR file.

    Parameters
    ----------
    path : str or path-like
        Output file; its folder is created.
    times : array_like (T,)
        Time of each frame (ps for MD trajectories).
    cv : array_like (T, L) or (T,)
        CV values, one column per latent dimension.
    names : sequence of str, optional
        Column names after ``time``; default ``z0, z1, ...``.

    Returns
    -------
    Path
        The file written.
    """
    values = np.asarray(cv, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(f"cv must have shape (T, L) or (T,); got shape {values.shape}")
    t = np.asarray(times, dtype=np.float64)
    if t.shape != (values.shape[0],):
        raise ValueError(
            f"times must have shape (T,) = ({values.shape[0]},) to match cv; got {t.shape}"
        )
    fields = ["time", *_names(names, values.shape[1])]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = np.column_stack([t, values])
    with atomic_output(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write("#! FIELDS " + " ".join(fields) + "\n")
        np.savetxt(fh, table, fmt=_FMT, delimiter=" ")
    return path


def colvar_for_model(
    model: Any,
    frames_or_chunks: Any,
    path: str | os.PathLike,
    *,
    names: Sequence[str] | None = None,
) -> Path:
    """Encode frames with a model and write the latent CV (encoder mean) as COLVAR.

    Parameters
    ----------
    model : VAEModel
    frames_or_chunks : Frames, array (T, N, D), or iterable of Frames
        One block of frames (encoded with ``model.encode``; times from the Frames, else
        0, 1, 2, ...) or chunks of a streamed trajectory (``model.encode_chunks``, e.g.
        from :func:`polyvae.io.mda.iter_chunks`).
    path : str or path-like
        Output COLVAR file.
    names : sequence of str, optional
        CV column names; default ``z0, z1, ...``.

    Returns
    -------
    Path
    """

    if isinstance(frames_or_chunks, Frames) or hasattr(frames_or_chunks, "shape"):
        mean, _ = model.encode(frames_or_chunks)
        times = getattr(frames_or_chunks, "times", None)
        if times is None:
            times = np.arange(mean.shape[0], dtype=np.float64)
    elif hasattr(frames_or_chunks, "__iter__") and not isinstance(frames_or_chunks, str | bytes):
        mean, _, times = model.encode_chunks(frames_or_chunks)
    else:
        raise TypeError(
            "frames_or_chunks must be Frames, an array (T, N, D) or an iterable of Frames; "
            f"got {type(frames_or_chunks).__name__}"
        )
    return write_colvar(path, times, mean, names=names)
