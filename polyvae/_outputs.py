"""Checks of an output path before any work is done.

:func:`check_output` answers, before training or reading a trajectory, whether the
result could be written: the folder exists or can be made, it is writable, the
suffix names a format the command writes, and a file output is not an existing
folder (or a folder output an existing file). Nothing is created.

Writability is ``os.access(folder, W_OK | X_OK)`` on the nearest existing folder.
For root that is true even for read-only folders; what fails for root too is a path
whose folder is a regular file (``model.polyvae/x.npz`` when ``model.polyvae`` is a
file), which is checked by looking at the path, not by permissions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["check_output", "check_suffix"]


def _nearest_existing(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if os.path.lexists(parent):
            return parent
    return Path(".")


def check_suffix(path: str | os.PathLike, suffixes: Sequence[str], name: str = "path") -> str:
    """The lower-case suffix of ``path``, one of ``suffixes``; ValueError naming ``name``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in suffixes:
        raise ValueError(
            f"{name} {str(p)!r}: unknown format {suffix or '(no suffix)'!r}; "
            f"expected a file ending in {', '.join(suffixes)}"
        )
    return suffix


def check_output(
    path: str | os.PathLike,
    *,
    name: str = "output",
    kind: str = "file",
    suffixes: Sequence[str] | None = None,
) -> Path:
    """Check that ``path`` can be written as a file (or folder) and return it as a Path.

    Parameters
    ----------
    path : str or os.PathLike
        Where the output goes.
    name : str
        Argument name for messages (``"-o"`` on the command line).
    kind : {"file", "dir"}
        Whether the output is one file or a folder of files.
    suffixes : sequence of str, optional
        Lower-case suffixes the writer knows (files only); None accepts any.

    Raises
    ------
    ValueError
        Unknown suffix, a folder where a file is expected or the reverse, a parent that
        is a file, or a folder that is not writable.
    """
    p = Path(path)
    if kind == "file":
        if p.is_dir():
            raise ValueError(f"{name} {str(p)!r} is an existing directory; expected a file name")
        if suffixes is not None:
            check_suffix(p, suffixes, name)
        folder = p.parent
    elif kind == "dir":
        if p.exists() and not p.is_dir():
            raise ValueError(f"{name} {str(p)!r} is an existing file; expected a folder")
        folder = p
    else:
        raise ValueError(f"kind must be 'file' or 'dir'; got {kind!r}")
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise ValueError(
            f"{name} {str(p)!r} cannot be written: {str(existing)!r} is a file, not a folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "folder" if existing == folder else "folder above it"
        raise ValueError(
            f"{name} {str(p)!r} cannot be written: {what} {str(existing)!r} is not writable"
        )
    return p
