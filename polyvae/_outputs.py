"""Checks of an output path before any work is done.

:func:`check_output` answers, before training or reading a trajectory, whether the
result could be written: the folder exists or can be made, it is writable, the
suffix names a format the command writes, and a file output is not an existing
folder (or a folder output an existing file). Nothing is left behind.

Writability is ``os.access(folder, W_OK | X_OK)`` on the nearest existing folder.
For root that is true even for read-only folders; what fails for root too is a path
whose folder is a regular file (``model.polyvae/x.npz`` when ``model.polyvae`` is a
file), which is checked by looking at the path, not by permissions; and a folder
where no file can be made although permissions say yes (``/proc``, a read-only mount
for root) is found by :func:`probe_output`, which creates and removes a file there.

:func:`atomic_output` writes every file polyvae makes: into a temporary file of a
unique name in the destination's folder, moved onto the destination by one
``os.replace`` when the writing has finished. A reader sees the old file or the new
one, never a part; two writers to one path each finish, and the last one's file stays.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "atomic_output",
    "atomic_path",
    "check_output",
    "check_suffix",
    "probe_output",
    "savefig",
    "savez",
    "write_text",
]

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path``, with its suffix, for writers that take a file
    name; it becomes ``path`` when the block ends without error (as :func:`atomic_output`)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.tmp.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """A file object open for writing whose contents become ``path`` when the block ends.

    The data go into a temporary file of a unique name beside ``path`` (so the rename
    stays on one file system), which replaces ``path`` with ``os.replace`` once the
    block has finished without error; on error it is removed and ``path`` is left as
    it was. The file gets the permissions of a file made with ``open``.

    Parameters
    ----------
    path : str or os.PathLike
        The destination; its folder must exist.
    mode : str
        ``"wb"`` or ``"w"``.
    **kwargs
        Passed to :func:`open` (``encoding``, ``newline``).
    """
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """``Path.write_text`` through :func:`atomic_output` (newlines as given)."""
    with atomic_output(path, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
    return Path(path)


def savez(path: str | os.PathLike, compressed: bool = False, **arrays: Any) -> Path:
    """``numpy.savez`` (or ``savez_compressed``) to exactly ``path``, atomically."""

    with atomic_output(path) as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return Path(path)


def savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``fig.savefig`` to ``path`` atomically; the format from the suffix."""
    path = Path(path)
    with atomic_output(path) as fh:
        fig.savefig(fh, format=path.suffix.lstrip(".").lower() or "png", **kwargs)
    return path


def probe_output(path: str | os.PathLike, name: str = "output") -> None:
    """Make and remove a file in the nearest existing folder of ``path``'s folder:
    ValueError naming ``name`` where none can be made, whatever the permissions say."""
    p = Path(path)
    folder = _nearest_existing(p.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as exc:
        raise ValueError(
            f"{name} {str(p)!r} cannot be written: no file can be made in {str(folder)!r} "
            f"({exc.strerror or exc})"
        ) from None
    os.close(fd)
    os.unlink(tmp)


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
    probe_output(p if kind == "file" else p / "probe", name)
    return p
