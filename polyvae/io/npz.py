"""NumPy ``.npz`` trajectories: the chapter's format and polyvae's own.

The chapter's format holds one array under key ``arr`` with shape (T, N, D).
polyvae's own format holds ``positions`` (T, N, D) and optionally ``masses`` (N,),
``names`` (N,), ``times`` (T,), ``unit`` (a 0-d string array) and ``bonds`` (B, 2)
(0-based bonded atom pairs). Both are read with
``allow_pickle=False``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from polyvae._outputs import savez
from polyvae.frames import Frames

__all__ = ["read_npz", "write_npz"]


def read_npz(path: str | os.PathLike, *, unit: str | None = None) -> Frames:
    """Read a trajectory from an ``.npz`` file.

    Parameters
    ----------
    path : str or os.PathLike
        File in the chapter's format (key ``arr``) or polyvae's (key ``positions``).
    unit : str, optional
        Length unit of the file's coordinates; overrides the unit stored in the file.
        Files without a stored unit are taken to be in Å.

    Returns
    -------
    Frames
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path {str(path)!r}: no such file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"path {str(path)!r} is not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            content = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"path {str(path)!r} is not a readable .npz file ({exc})") from exc
    except ValueError as exc:  # object arrays refused by allow_pickle=False
        raise ValueError(
            f"path {str(path)!r} holds pickled objects, which polyvae does not load"
        ) from exc
    if "positions" in content:
        positions = content["positions"]
    elif "arr" in content:
        positions = content["arr"]
    else:
        raise ValueError(
            f"path {str(path)!r}: expected an array under key 'positions' (polyvae) or 'arr' "
            f"(chapter format); found keys {sorted(content)}"
        )
    stored_unit = str(content["unit"]) if "unit" in content else "Å"
    return Frames(
        positions,
        masses=content.get("masses"),
        names=None if "names" not in content else [str(s) for s in content["names"]],
        times=content.get("times"),
        unit=unit or stored_unit,
        bonds=content.get("bonds"),
    )


def write_npz(path: str | os.PathLike, frames: Frames) -> Path:
    """Write ``frames`` in polyvae's ``.npz`` format (no pickled objects).

    Parameters
    ----------
    path : str or os.PathLike
        Output file; ``.npz`` is appended by NumPy if missing.
    frames : Frames
        Its bonds, if known, are written under ``bonds``.

    Returns
    -------
    Path of the written file.
    """
    if not isinstance(frames, Frames):
        raise TypeError(f"frames must be a polyvae Frames; got {type(frames).__name__}")
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    bonds = {} if frames.bonds is None else {"bonds": frames.bonds}
    savez(
        path,
        compressed=True,
        positions=frames.positions,
        masses=frames.masses,
        names=np.array(frames.names, dtype=str),
        times=frames.times,
        unit=np.array(frames.unit),
        **bonds,
    )
    return path
