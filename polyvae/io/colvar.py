"""PLUMED COLVAR files: the text tables of CVs and biases that PLUMED's ``PRINT`` and
:func:`polyvae.export.write_colvar` write."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["read_colvar"]


def read_colvar(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a PLUMED COLVAR file (written here or by PLUMED's ``PRINT``).

    Comment lines (``#`` ...) other than the ``#! FIELDS`` header are skipped; a
    repeated header (a restarted run appending to the file) must name the same fields.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    fields : list of str
        Column names, ``fields[0]`` usually ``"time"``.
    data : ndarray (T, len(fields)), float64
    """
    path = Path(path)
    fields: list[str] | None = None
    rows: list[list[float]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            words = line.split()
            if not words:
                continue
            if words[0] == "#!" and len(words) > 1 and words[1] == "FIELDS":
                if fields is not None and words[2:] != fields:
                    raise ValueError(
                        f"{path}:{lineno}: a second FIELDS header names other fields "
                        f"({words[2:]}) than the first ({fields})"
                    )
                fields = words[2:]
                continue
            if words[0].startswith("#"):
                continue
            if fields is None:
                raise ValueError(f"{path}:{lineno}: data before the '#! FIELDS' header")
            if len(words) != len(fields):
                raise ValueError(
                    f"{path}:{lineno}: expected {len(fields)} values ({' '.join(fields)}); "
                    f"got {len(words)}"
                )
            try:
                rows.append([float(w) for w in words])
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: not a row of numbers: {line.strip()!r}"
                ) from None
    if fields is None:
        raise ValueError(f"{path} has no '#! FIELDS' header: not a PLUMED COLVAR file")
    data = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(fields))
    return fields, data
